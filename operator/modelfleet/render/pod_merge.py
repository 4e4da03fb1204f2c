"""Pure: a user's pod template merged onto the pod the operator renders.

Templates extend each other in order (a pool's, then a variant's): mappings merge key by
key, lists of named things (containers, env, volumes, volumeMounts, ports) merge entry by
name, other lists are added to. The result is then merged onto the operator's pod, where
what the operator owns wins: its labels, its containers' image, command, args, ports,
probes and GPU count (templates that set those were refused when loaded), and
`nvidia.com/gpu.product` when the variant names a gpuType.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from modelfleet.api.pod_template import PodTemplate

# Lists whose entries are identified by a key: merged entry by entry.
_KEYED_LISTS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "name",
    "imagePullSecrets": "name",
}


def combined(templates: Iterable[PodTemplate | None]) -> dict[str, Any]:
    """The templates merged in order, each extending the one before: {metadata, spec}."""
    merged: dict[str, Any] = {"metadata": {}, "spec": {}}
    for template in templates:
        if template is None:
            continue
        layer = {
            "metadata": template.metadata.model_dump(exclude_defaults=True),
            "spec": copy.deepcopy(template.spec),
        }
        merged = _merge(merged, layer)
    return merged


def apply_template(
    pod: Mapping[str, Any],
    template: Mapping[str, Any],
    owned_labels: Mapping[str, str],
    owned_node_labels: Mapping[str, str] = {},
) -> dict[str, Any]:
    """`pod` ({metadata, spec} the operator rendered) with `template` merged onto it; the
    operator's labels and node labels stay as it set them."""
    merged = _merge(dict(pod), dict(template))
    metadata = merged.setdefault("metadata", {})
    metadata["labels"] = {**metadata.get("labels", {}), **owned_labels}
    if owned_node_labels:
        spec = merged["spec"]
        spec["nodeSelector"] = {**spec.get("nodeSelector", {}), **owned_node_labels}
    return merged


def _merge(base: Any, extension: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(extension, dict):
        out = dict(base)
        for key, value in extension.items():
            out[key] = _merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(extension, list):
        key = _KEYED_LISTS.get(field)
        if key is None:
            return [*base, *(item for item in extension if item not in base)]
        out = list(base)
        index = {item.get(key): i for i, item in enumerate(out) if isinstance(item, dict)}
        for item in extension:
            name = item.get(key) if isinstance(item, dict) else None
            if name is not None and name in index:
                out[index[name]] = _merge(out[index[name]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(extension)
