"""`make kube-schema`: the Kubernetes PodSpec schema the product validates pod templates
against, cut from PyPI kubernetes-validate (strict, the oldest Kubernetes the project
supports) down to the definitions a PodSpec reaches, descriptions dropped.

    python -m tests.kube_schema        # writes operator/modelfleet/api/schemas/...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

KUBERNETES = "1.29.0"
ROOT = "io.k8s.api.core.v1.PodSpec"
OUT = (
    Path(__file__).resolve().parents[1]
    / "operator"
    / "modelfleet"
    / "api"
    / "schemas"
    / f"podspec-v{KUBERNETES.rsplit('.', 1)[0]}.json"
)


def _definitions() -> dict[str, Any]:
    from importlib.resources import files

    path = files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{KUBERNETES}-local-strict/_definitions.json"
    )
    return json.loads(path.read_text())["$defs"]


def _refs(node: Any):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _bare(node: Any) -> Any:
    """Without descriptions, with local references."""
    if isinstance(node, dict):
        return {
            k: ("#/$defs/" + v.rsplit("/", 1)[-1] if k == "$ref" else _bare(v))
            for k, v in node.items()
            if k != "description"
        }
    if isinstance(node, list):
        return [_bare(v) for v in node]
    return node


def bundle() -> dict[str, Any]:
    definitions = _definitions()
    reached: set[str] = set()
    pending = [ROOT]
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(_refs(definitions[name]))
    return {
        "$comment": f"Kubernetes v{KUBERNETES} (strict) PodSpec, from PyPI kubernetes-validate "
        "by `make kube-schema`; do not edit by hand.",
        "$ref": f"#/$defs/{ROOT}",
        "$defs": {name: _bare(definitions[name]) for name in sorted(reached)},
    }


def text() -> str:
    return json.dumps(bundle(), indent=1, sort_keys=True) + "\n"


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text())
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
