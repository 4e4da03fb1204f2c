"""`modelfleet render envoy` as a user runs it: the sample fleet rendered by the installed
command, then served by `envoy -c DIR/envoy.yaml`; and its answers to bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelfleet.cli import main

from .processes import REPO, EchoBackends, EnvoyProcess, free_port, http_get
from .traffic import CHAT, MESSAGES, bearer, call

SAMPLES = REPO / "manifests" / "samples"
KEYS = Path(__file__).parent / "keys.yaml"
SAMPLE_VARIANTS = ["qwen3-235b", "qwen25-72b", "qwen3-30b-moe", "qwen25-7b"]
MODELFLEET = Path(sys.executable).parent / "modelfleet"


@pytest.mark.envoy
def test_rendered_samples_serve_through_envoy(tmp_path):
    out = tmp_path / "gw"
    echo = EchoBackends(SAMPLE_VARIANTS)
    envoy = None
    try:
        argv = [
            str(MODELFLEET),
            "render",
            "envoy",
            "-f",
            f"{SAMPLES}/",
            "--api-keys",
            str(KEYS),
            *(
                arg
                for v, port in echo.ports.items()
                for arg in ("--backend", f"{v}=127.0.0.1:{port}")
            ),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            f"127.0.0.1:{free_port()}",
            "--stats-port",
            "0",
            "--access-log",
            str(tmp_path / "access.log"),
            "--out",
            str(out),
        ]
        rendered = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert rendered.returncode == 0, rendered.stderr
        assert sorted(Path(line).name for line in rendered.stdout.split()) == [
            "cds.yaml",
            "envoy.yaml",
            "lds.yaml",
            "rds.yaml",
        ]
        assert (out / "rds.yaml").stat().st_mode & 0o077 == 0, "the file with keys is private"

        envoy = EnvoyProcess.start(out, tmp_path / "envoy")
        key = bearer("sk-test-app-5f2c9d1e7a")
        for fields, headers, variant in [
            ({"task_type": "legal"}, {}, "qwen3-235b"),
            ({"model": "Qwen/Qwen2.5-7B-Instruct"}, {}, "qwen25-7b"),
            ({}, {"x-task-type": "code-complex"}, "qwen25-72b"),
        ]:
            reply = call(envoy.url, CHAT, {**fields, "messages": MESSAGES}, {**key, **headers})
            assert reply.status == 200, reply.text
            assert reply.variant == variant
        assert call(envoy.url, CHAT, {"task_type": "legal", "messages": MESSAGES}).status == 401
        # Probes and scrapes: the stats listener, not admin.
        assert http_get(f"{envoy.stats_url}/ready").strip() == "LIVE"
        assert "envoy_cluster_upstream_rq_completed" in http_get(
            f"{envoy.stats_url}/stats/prometheus"
        )

        again = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert again.returncode == 0 and again.stdout == "" and "unchanged" in again.stderr
    finally:
        if envoy is not None:
            envoy.stop()
        echo.stop()


def run_cli(capsys, *args: str) -> tuple[int, str]:
    status = main(["render", "envoy", *args])
    return status, capsys.readouterr().err


def test_several_policies_need_policy_flag(tmp_path, capsys):
    policy = (SAMPLES / "routingpolicy-chat.yaml").read_text()
    second = policy.replace("name: chat\n", "name: chat-canary\n", 1)
    shutil.copytree(SAMPLES, tmp_path / "in")
    (tmp_path / "in" / "canary.yaml").write_text(second)
    status, err = run_cli(capsys, "-f", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert status == 2
    assert "several RoutingPolicies (llm/chat, llm/chat-canary)" in err
    assert "--policy NS/NAME" in err
    status, err = run_cli(
        capsys, "-f", str(tmp_path / "in"), "--policy", "llm/nope", "--out", str(tmp_path / "out")
    )
    assert status == 2 and "no RoutingPolicy 'llm/nope'" in err
    assert not (tmp_path / "out").exists()


def test_an_admin_port_left_to_chance_exits_2(tmp_path, capsys):
    status, err = run_cli(
        capsys,
        "-f",
        str(SAMPLES),
        "--api-keys",
        str(KEYS),
        "--admin",
        "127.0.0.1:0",
        "--out",
        str(tmp_path / "out"),
    )
    assert status == 2
    assert "--admin" in err and "fixed" in err
    assert not (tmp_path / "out").exists()


def test_bad_keys_and_backends_exit_2_naming_the_field(tmp_path, capsys):
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        "keys:\n"
        "  - {id: app, key: sk-secret-1, tenant: acme}\n"
        "  - {id: app, key: sk-secret-1, tenant: acme}\n"
        "  - {id: under_score, key: 'has space', tenant: acme}\n"
    )
    status, err = run_cli(
        capsys,
        "-f",
        str(SAMPLES),
        "--api-keys",
        str(keys),
        "--backend",
        "qwen3-8b=127.0.0.1:1",
        "--out",
        str(tmp_path / "out"),
    )
    assert status == 2
    assert "keys[1].id: 'app' is already used by keys[0]" in err
    assert "keys[1].key: the same key as keys[0]" in err
    assert "keys[2].id: 'under_score' is not a valid id" in err
    assert "keys[2].key: must be a non-empty string of visible ASCII" in err
    assert "sk-secret-1" not in err and "has space" not in err
    assert not (tmp_path / "out").exists()
