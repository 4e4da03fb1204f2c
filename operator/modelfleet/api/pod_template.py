"""A pod template a platform team merges onto what the operator renders: Kubernetes' own
field names (PodSpec, plus labels and annotations), checked against Kubernetes' PodSpec
schema (v1.29, strict) when the resource is loaded, with the field path in each error.

In `spec.containers`, the entry named like the operator's container (`vllm` in a model
server, `envoy` or `gateway-sync` in a gateway) is merged onto it; other entries are added
as sidecars. What the operator owns is refused with the field to use instead (see
OWNED_CONTAINER_FIELDS and docs/operator.md, "What the operator owns").
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from typing import Any

import jsonschema
from pydantic import Field, model_validator

from modelfleet.api.common import FieldError, KubeModel

SCHEMA_FILE = "podspec-v1.29.json"
# The containers the operator renders: a template entry with one of these names is merged
# onto it (the rest are the user's sidecars).
OPERATOR_CONTAINERS = frozenset({"vllm", "envoy", "gateway-sync"})
GPU_RESOURCE = "nvidia.com/gpu"
# Fields of those containers the operator sets from the resource's own spec.
OWNED_CONTAINER_FIELDS = {
    "image": "spec.variants[].image",
    "command": "the operator (the vLLM server's entrypoint)",
    "args": "spec.variants[].args",
    "ports": "spec.variants[].port",
    "readinessProbe": "the operator (/health)",
    "livenessProbe": "the operator (/health)",
    "startupProbe": "spec.variants[].startupSeconds",
}


@lru_cache(maxsize=1)
def _validator() -> Any:
    schema = json.loads(files("modelfleet.api").joinpath("schemas", SCHEMA_FILE).read_text())
    name = "io.k8s.api.core.v1.PodSpec"
    spec = schema["$defs"][name]
    # A template need not list containers: the operator brings its own.
    relaxed = {**spec, "required": [r for r in spec.get("required", []) if r != "containers"]}
    return jsonschema.Draft202012Validator({**schema, "$defs": {**schema["$defs"], name: relaxed}})


def _path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown field {', '.join(map(repr, extra))}: check the spelling (camelCase)"
    if error.validator == "required":
        return f"{error.message.split(' is a required')[0]} is required here"
    shown = json.dumps(error.instance)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    if error.validator == "type":
        wanted = [w for w in _listed(error.validator_value) if w != "null"]
        return f"expected {' or '.join(wanted)} (got {shown})"
    if error.validator == "enum":
        return f"must be one of {', '.join(map(str, error.validator_value))} (got {shown})"
    if error.validator in ("oneOf", "anyOf"):
        return f"not a valid value here (got {shown})"
    return error.message[:200]


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def pod_spec_problems(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(path below the template's spec, message) for each way `spec` is no valid PodSpec."""
    problems = [
        (_path(e), _message(e))
        for e in sorted(_validator().iter_errors(spec), key=lambda e: str(list(e.absolute_path)))
    ]
    for index, container in enumerate(spec.get("containers") or []):
        if not isinstance(container, dict) or container.get("name") not in OPERATOR_CONTAINERS:
            continue  # a sidecar of the user's own: theirs entirely
        gpus = ((container.get("resources") or {}).get("limits") or {}).keys() | (
            (container.get("resources") or {}).get("requests") or {}
        ).keys()
        if GPU_RESOURCE in gpus:
            problems.append(
                (
                    f"containers[{index}].resources",
                    f"{GPU_RESOURCE} is owned by the operator: set "
                    "spec.variants[].gpusPerReplica instead",
                )
            )
        for field in sorted(set(container) & set(OWNED_CONTAINER_FIELDS)):
            problems.append(
                (
                    f"containers[{index}].{field}",
                    f"is owned by the operator: set {OWNED_CONTAINER_FIELDS[field]} instead",
                )
            )
    return problems


class PodTemplateMetadata(KubeModel):
    """Labels and annotations added to the pods (the operator's own labels win)."""

    labels: dict[str, str] = Field(default_factory=dict, description="Pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Pod annotations.")


class PodTemplate(KubeModel):
    """A pod template merged onto the pods the operator renders (Kubernetes field names)."""

    metadata: PodTemplateMetadata = Field(
        default_factory=PodTemplateMetadata, description="Pod labels and annotations."
    )
    spec: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
        description="PodSpec fields: env, envFrom, volumeMounts and resources under "
        "`containers: [{name: <the operator's container>, ...}]`, and volumes, "
        "imagePullSecrets, serviceAccountName, runtimeClassName, priorityClassName, "
        "nodeSelector, tolerations, affinity, topologySpreadConstraints, securityContext, "
        "terminationGracePeriodSeconds... Checked against Kubernetes' PodSpec (v1.29).",
    )

    @model_validator(mode="after")
    def _valid_pod_spec(self) -> PodTemplate:
        problems = pod_spec_problems(self.spec)
        if problems:
            path, message = problems[0]
            raise FieldError(f"spec.{path}" if path else "spec", message)
        return self
