"""Golden renders of the Helm chart, and the kustomize manifests made from it.

- tests/golden/chart/<case>.values.yaml -> <case>.out.yaml (every template, as `helm
  template` prints it) and <case>.NOTES.txt;
- manifests/base/ and manifests/components/monitoring/ hold the chart rendered with
  manifests/base/chart-values.yaml, so kustomize users get exactly what Helm users get.

`regenerate()` rewrites all of them; review the result as a diff.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.chart import CHART, ROOT, Render, load_values, render

CASES_DIR = Path(__file__).parent / "chart"
BASE_DIR = ROOT / "manifests" / "base"
MONITORING_DIR = ROOT / "manifests" / "components" / "monitoring"
BASE_VALUES = BASE_DIR / "chart-values.yaml"
MONITORING_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
# Labels only Helm can keep true; the kustomization sets its own managed-by.
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
GENERATED = (
    "# Generated from charts/modelfleet with manifests/base/chart-values.yaml by\n"
    "# tests/golden/chart_cases.py (`make golden`): edit the chart, not this file.\n"
)


def case_values() -> list[Path]:
    return sorted(CASES_DIR.glob("*.values.yaml"))


def case_name(values: Path) -> str:
    return values.name.removesuffix(".values.yaml")


def expected_manifests(values: Path) -> Path:
    return values.with_name(f"{case_name(values)}.out.yaml")


def expected_notes(values: Path) -> Path:
    return values.with_name(f"{case_name(values)}.NOTES.txt")


def render_case(values: Path) -> Render:
    return render(load_values(values))


def manifests_text(result: Render) -> str:
    """Every non-empty template, in file order, under a `# Source:` line."""
    parts = []
    for name, text in sorted(result.templates.items()):
        body = text.strip()
        if name.endswith(".yaml") and any(yaml.safe_load_all(body)):
            parts.append(f"---\n# Source: modelfleet/{name}\n{body}\n")
    return "".join(parts)


def _without_helm_labels(obj: dict[str, Any]) -> dict[str, Any]:
    def strip(labels: dict[str, str] | None) -> None:
        for key in HELM_ONLY_LABELS:
            (labels or {}).pop(key, None)

    strip(obj["metadata"].get("labels"))
    template = (obj.get("spec") or {}).get("template")
    if isinstance(template, dict):
        strip(template.get("metadata", {}).get("labels"))
    return obj


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (scripts, dashboards, PromQL) as readable `|` blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _documents(objects: list[dict[str, Any]]) -> str:
    return GENERATED + yaml.dump_all(objects, Dumper=_BlockDumper, sort_keys=False, width=100)


def kustomize_files() -> dict[Path, str]:
    """The chart as plain manifests: core objects in the base, monitoring as a component."""
    values = load_values(BASE_VALUES)
    values.setdefault("monitoring", {})
    for key in ("serviceMonitor", "prometheusRule"):
        values["monitoring"][key] = {"enabled": True}
    values["monitoring"]["podMonitors"] = {
        "gateway": {"enabled": True},
        "modelServers": {"enabled": True},
    }
    objects = [_without_helm_labels(obj) for obj in render(values).objects()]
    templated_crds = [obj for obj in objects if obj["kind"] == "CustomResourceDefinition"]
    core = [
        obj for obj in objects if obj["kind"] not in MONITORING_KINDS | {"CustomResourceDefinition"}
    ]
    monitoring = [obj for obj in objects if obj["kind"] in MONITORING_KINDS]
    # kopf's peering CRD (the chart's crds/) and modelfleet's, with their keep/Prune=false
    # annotations, so an Argo CD Application of the kustomize overlays never prunes them.
    kopf_crds = [
        doc
        for path in sorted((CHART / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    crds = kopf_crds + templated_crds
    return {
        BASE_DIR / "crds.yaml": _documents(crds),
        BASE_DIR / "modelfleet.yaml": _documents(core),
        MONITORING_DIR / "monitoring.yaml": _documents(monitoring),
    }


def regenerate() -> list[Path]:
    written = []
    for values in case_values():
        result = render_case(values)
        expected_manifests(values).write_text(manifests_text(result))
        expected_notes(values).write_text(result.notes)
        written += [expected_manifests(values), expected_notes(values)]
    for path, text in kustomize_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in regenerate():
        print(path)
