"""`modelfleet demo --no-ui --duration 60`, as a new user runs it, judged by its JSON."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.e2e.operator_harness import BIN

pytestmark = pytest.mark.e2e


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in args:
                found.append(args)
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    shm_before = set(os.listdir("/dev/shm"))
    result = subprocess.run(
        [str(BIN / "modelfleet"), "demo", "--no-ui", "--duration", "60", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "demo.json").read_text())
    return summary, out, shm_before


def test_nothing_failed_but_the_intended_rate_limit(demo):
    summary, _, _ = demo
    requests = summary["requests"]
    assert requests["total"] > 300
    assert requests["failed_ordinary_count"] == 0, requests["failed_ordinary"]
    assert set(requests["by_status"]) <= {"200", "429"}
    assert requests["abusive"]["by_status"].get("429", 0) > 0
    assert requests["by_status"].get("429", 0) == requests["abusive"]["by_status"]["429"]


def test_the_235b_scaled_up_for_the_peak_and_back_to_its_night_count(demo):
    summary, _, _ = demo
    series = summary["qwen3_235b_desired"]
    night = [s["desired"] for s in series if 2 <= s["hour"] < 6]
    peak = [s["desired"] for s in series if 10 <= s["hour"] < 18]
    assert set(night) == {5}
    assert max(peak) == 20
    assert series[-1]["desired"] == 5 and series[-1]["hour"] > 24


def test_the_degrade_route_carried_low_priority_traffic_during_the_burst(demo):
    summary, _, _ = demo
    served = summary["requests"]["low_priority"]["served_by"]
    assert served.get("chat-qwen3-70b", 0) > 0, served
    degraded = [s for s in summary["timeline"] if "legal-medical-degraded-low" in s["routes"]]
    assert degraded and all(12 <= s["hour"] <= 19 for s in degraded)


def test_cost_lines_exist_for_each_billing_mode(demo):
    summary, _, _ = demo
    for mode in ("reserved", "onDemand", "hybrid", "pool"):
        assert summary["cost"]["by_mode"].get(mode, 0) > 0, summary["cost"]["by_mode"]
    assert set(summary["cost"]["by_tenant"]) >= {"fin-risk", "support", "research"}
    assert summary["gpu_hours"] > 0
    assert summary["scale_events"]


def test_outputs_and_a_clean_exit(demo):
    summary, out, shm_before = demo
    assert (out / "demo.png").stat().st_size > 10_000
    assert processes_mentioning(summary["settings"]["workdir"]) == []
    assert set(os.listdir("/dev/shm")) <= shm_before
    port = int(summary["settings"]["gateway"].rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not Path(summary["settings"]["workdir"]).exists()


def test_keep_running_serves_the_printed_curl_until_ctrl_c(tmp_path):
    import signal
    import time

    process = subprocess.Popen(
        [
            str(BIN / "modelfleet"),
            "demo",
            "--no-ui",
            "--duration",
            "30",
            "--keep-running",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 150
        curl = ""
        while time.monotonic() < deadline and not curl:
            line = process.stdout.readline()
            assert line or process.poll() is None, process.stderr.read()[-2000:]
            if line.strip().startswith("curl "):
                curl = line.strip()
        assert curl, "no curl command printed"
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        assert answer.stdout.startswith("{"), (curl, answer.stdout, answer.stderr)
        assert json.loads(answer.stdout)["choices"][0]["message"]["content"]
        workdir = json.loads((tmp_path / "demo.json").read_text())["settings"]["workdir"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
        assert processes_mentioning(workdir) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
