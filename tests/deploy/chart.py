"""The chart, rendered the way `helm template` does, by Helm's own engine (PyPI
helm-python-sdk: Helm v4's Go SDK behind a C ABI; no helm binary, no cluster)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml

from modelfleet.api.load import load_resources
from modelfleet.cli import build_parser
from modelfleet.cli.run import gateway_settings
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.gateway_workload import gateway_workloads

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelfleet"
ALL_FEATURES = ROOT / "tests" / "golden" / "chart" / "all-features.values.yaml"
OPENSHIFT = ROOT / "tests" / "golden" / "chart" / "openshift.values.yaml"
NAMESPACED = ROOT / "tests" / "golden" / "chart" / "namespaced.values.yaml"
RELEASE = "modelfleet"
NAMESPACE = "modelfleet-system"
NOTES = "templates/NOTES.txt"


def helm():
    try:
        import helm_python
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the chart tests need PyPI helm-python-sdk") from None
    return helm_python


@dataclass(frozen=True)
class Render:
    """One render: each template's text (keyed by its path in the chart) and the objects."""

    templates: dict[str, str]

    @property
    def notes(self) -> str:
        return self.templates.get(NOTES, "")

    @cached_property
    def _objects(self) -> tuple[dict[str, Any], ...]:
        return tuple(
            doc
            for name, text in sorted(self.templates.items())
            if name.endswith(".yaml")
            for doc in yaml.safe_load_all(text)
            if doc
        )

    def objects(self) -> list[dict[str, Any]]:
        """Fresh copies, in template order: callers may change them."""
        return copy.deepcopy(list(self._objects))

    def find(self, kind: str, name: str | None = None) -> list[dict[str, Any]]:
        return [
            obj
            for obj in self._objects
            if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
        ]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> Render:
    sdk = helm()
    with sdk.Chart.load(CHART) as chart:
        rendered = chart.render(
            dict(values) if values is not None else None,
            name=release,
            namespace=namespace,
            is_install=True,
        )
    prefix = f"{chart_name()}/"
    return Render({name.removeprefix(prefix): text for name, text in rendered.items()})


@cache
def chart_name() -> str:
    return yaml.safe_load((CHART / "Chart.yaml").read_text())["name"]


CRD_FILES = CHART / "files" / "crds"  # modelfleet's CRDs, rendered by templates/crds.yaml


def chart_crds() -> dict[str, str]:
    """Every CRD file the chart ships by name: modelfleet's in files/crds/ (templates, so
    upgrades upgrade them) and kopf's in crds/ (Helm installs it before the templates)."""
    paths = [*(CHART / "crds").glob("*.yaml"), *CRD_FILES.glob("*.yaml")]
    return {path.name: path.read_text() for path in sorted(paths)}


def crd_objects() -> Iterator[dict[str, Any]]:
    for text in chart_crds().values():
        yield from (doc for doc in yaml.safe_load_all(text) if doc)


def lint(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return helm().lint(CHART, dict(values) if values is not None else None, strict=True)


def container_args(container: Mapping[str, Any], fields: Mapping[str, str]) -> list[str]:
    """The container's args as the kubelet passes them: each `$(NAME)` replaced by the env
    var's value; `fields` gives the values of the downward-API ones (by fieldPath)."""
    env = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            env[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return [
        re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), arg)
        for arg in container.get("args", [])
    ]


def pod_fields(pod_name: str, ordinal: int, namespace: str = NAMESPACE) -> dict[str, str]:
    """Downward-API values of a StatefulSet pod."""
    return {
        "metadata.name": pod_name,
        "metadata.namespace": namespace,
        "metadata.labels['apps.kubernetes.io/pod-index']": str(ordinal),
    }


def operator_gateway_settings(result: Render) -> GatewaySettings:
    """What the operator the chart starts runs each RoutingPolicy's gateway with, parsed
    from its StatefulSet's args as `modelfleet run` parses them."""
    container = result.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args(container_args(container, pod_fields("op-0", 0)))
    return gateway_settings(args)


def sample_gateway(result: Render) -> list[dict[str, Any]]:
    """The objects that operator runs the sample RoutingPolicy's gateway with."""
    policy = load_resources([ROOT / "manifests" / "samples"]).policies[0]
    return gateway_workloads(policy, operator_gateway_settings(result))
