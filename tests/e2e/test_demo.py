"""`modelfleet demo`, as a new user runs it: the compressed day judged by its JSON, then
`--keep-running` driven like a cluster (kubectl, `modelfleet plan`, the gateway) and
stopped by SIGINT or SIGTERM with nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import openai
import pytest
import yaml

from modelfleet_testbed.local.processes import free_port
from tests.e2e.operator_harness import BIN, eventually

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
    (out / "stdout.log").write_text(result.stdout)
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
    # The schedule asks 20 for the day; the queue and the routes' latency SLOs may ask more
    # during the burst, up to the variant's max of 24.
    assert 20 <= max(peak) <= 24
    assert series[-1]["hour"] > 24
    # The schedule lets go at 20:00. How far the 235B is down by the end of the run depends
    # on the machine: replicas on a busy one drain their backlog slower, and the queue
    # signal rightly keeps them; what holds them late in the evening is never the schedule.
    late = [s["variants"]["qwen3-235b"] for s in summary["timeline"] if s["hour"] > 22.5]
    assert late and all(v["reason"] != "schedule" for v in late), late


def test_the_degrade_route_carried_low_priority_traffic_during_the_burst(demo):
    summary, _, _ = demo
    served = summary["requests"]["low_priority"]["served_by"]
    assert served.get("chat-qwen25-72b", 0) > 0, served
    degraded = [s for s in summary["timeline"] if "legal-medical-degraded-low" in s["routes"]]
    # The route appears only once the burst has built the 235B's queue, and goes when that
    # backlog has drained: some demo hours after the burst ends at 17:00, how many depends
    # on how fast the machine's simulated replicas drain it.
    assert degraded and all(s["hour"] >= 12 for s in degraded)
    assert all(s["variants"]["qwen3-235b"]["waiting"] > 0 for s in degraded[:1])


def test_cost_lines_exist_for_each_billing_mode(demo):
    summary, _, _ = demo
    for mode in ("reserved", "onDemand", "hybrid", "pool"):
        assert summary["cost"]["by_mode"].get(mode, 0) > 0, summary["cost"]["by_mode"]
    assert set(summary["cost"]["by_tenant"]) >= {"fin-risk", "support", "research"}
    assert summary["gpu_hours"] > 0
    assert summary["scale_events"]


def test_tokens_and_spend_per_tenant_and_a_budget_hit_that_degrades_until_midnight(demo):
    summary, out, _ = demo
    tenants = summary["tenants"]
    for tenant in ("fin-risk", "support", "research"):
        line = tenants[tenant]
        assert line["calls"] > 0 and line["billed"] > 0, (tenant, line)
        assert line["prompt_tokens"] > line["calls"] and line["completion_tokens"] > 0, line
    # research has no Reservation on most variants: billed on demand, by its tokens too.
    assert summary["cost"]["by_tenant"]["research"]["onDemand"] > 0
    budget = summary["budgets"]["research/day"]
    assert budget["action"] == "degrade" and budget["hit_at_hour"] is not None, budget
    assert budget["hit_at_hour"] < 24 and budget["max_spend"] >= budget["amount"]
    # Hit during the day; its period ends exactly at the next midnight in the pool's zone,
    # and the state goes back only then (seen within the run unless the machine is slow).
    assert "Degraded" in budget["states"], budget["states"]
    midnight = datetime.fromisoformat(summary["settings"]["day"]) + timedelta(days=1)
    assert datetime.fromisoformat(budget["resets_at"].replace("Z", "+00:00")) == midnight
    reasons = [e["reason"] for e in summary["budget_events"]]
    assert "BudgetExceeded" in reasons, reasons
    if budget["reset_seen_at_hour"] is not None:
        # Back within at the reset (the tenant may spend the new day's small budget again).
        states = budget["states"]
        assert budget["reset_seen_at_hour"] >= 24
        assert "WithinBudget" in states[states.index("Degraded") :], states
        assert reasons.index("BudgetExceeded") < reasons.index("BudgetReset")
    # Degraded, its chat and summary requests go to the route's cheaper backend (80/20
    # between qwen3-30b-moe and qwen25-7b otherwise).
    served = budget["after_hit"]["served_by"].get("chat-summary", {})
    if sum(served.values()) >= 5:  # hit late on a loaded machine: too few to judge
        assert served.get("chat-qwen25-7b", 0) / sum(served.values()) >= 0.7, served
    printed = (out / "stdout.log").read_text()
    assert "Tenants: tokens and spend" in printed and "Budgets" in printed
    assert re.search(r"research/day\s+.\s*degrade\s+.\s*0\.03 USD", printed), printed[-3000:]


def test_outputs_and_a_clean_exit(demo):
    summary, out, shm_before = demo
    assert (out / "demo.png").stat().st_size > 10_000
    assert processes_mentioning(summary["settings"]["workdir"]) == []
    assert set(os.listdir("/dev/shm")) <= shm_before
    port = int(summary["settings"]["gateway"].rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    assert not Path(summary["settings"]["workdir"]).exists()


class DemoProcess:
    """`modelfleet demo --keep-running` in the background, its output read as it comes."""

    def __init__(self, out: Path, *, duration: int = 30, ignore_sigint: bool = False):
        def inherit_ignored_sigint() -> None:
            # What `modelfleet demo --keep-running &` in a script gets from its shell.
            signal.signal(signal.SIGINT, signal.SIG_IGN)

        self.out = out
        self.stderr = (out / "stderr.log").open("w")
        self.process = subprocess.Popen(
            [str(BIN / "modelfleet"), "demo", "--no-ui", "--duration", str(duration),
             "--keep-running", "--out", str(out)],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            preexec_fn=inherit_ignored_sigint if ignore_sigint else None,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            assert self.process.poll() is None, self.output()
            time.sleep(0.2)
        raise AssertionError(
            f"no line matching {pattern!r} within {timeout:.0f} s:\n{self.output()}"
        )

    def output(self) -> str:
        errors = (self.out / "stderr.log").read_text()[-3000:]
        return "\n".join(self.lines[-60:]) + "\n--- stderr ---\n" + errors

    def stop(self, signum: int, timeout: float = 90) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout)

    def close(self) -> None:
        """After a failed test: stop it the clean way (SIGKILL would leave its children)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stderr.close()


@pytest.fixture
def kept_running(tmp_path):
    demo = DemoProcess(tmp_path, ignore_sigint=True)
    try:
        yield demo
    finally:
        demo.close()


def utc_cron(moment: datetime) -> str:
    return f"{moment.minute} {moment.hour} * * *"


def user_pool(now: datetime) -> dict:
    """A pool of one's own: `day` has a schedule open around now (real time, UTC), `night`
    one that opens in three hours. On a fast clock their counts would flip within seconds."""

    def variant(name: str, opens: timedelta, closes: timedelta) -> dict:
        return {
            "name": name,
            "model": "org/tiny-7b",
            "gpusPerReplica": 1,
            "startupSeconds": 2,
            "replicas": {"min": 1, "max": 4},
            "schedules": [
                {
                    "name": f"{name}-window",
                    "start": utc_cron(now + opens),
                    "end": utc_cron(now + closes),
                    "replicas": 3,
                }
            ],
        }

    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "mine", "namespace": "team-a"},
        "spec": {
            "gpuBudget": 16,
            "timezone": "UTC",
            "variants": [
                variant("day", timedelta(minutes=-5), timedelta(minutes=40)),
                variant("night", timedelta(hours=3), timedelta(hours=4)),
            ],
        },
    }


USER_KEY = "sk-team-a-walk-0123456789"


def user_policy(listener_port: int) -> list[dict]:
    """A RoutingPolicy of one's own over the pool `mine`, and its API key Secret."""
    keys = {"keys": [{"id": "walker", "key": USER_KEY, "tenant": "team-a"}]}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mine-keys", "namespace": "team-a"},
        "stringData": {"keys.yaml": yaml.safe_dump(keys)},
    }
    policy = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "mine", "namespace": "team-a"},
        "spec": {
            "pool": "mine",
            "gateway": {
                "configMap": "mine-gateway-config",
                "apiKeySecret": "mine-keys",
                "listenerPort": listener_port,
                "replicas": 1,
                "service": {"port": 8080},
            },
            "routes": [
                {
                    "name": "all",
                    "backends": [
                        {"variant": "day", "weight": 80},
                        {"variant": "night", "weight": 20},
                    ],
                }
            ],
        },
    }
    return [secret, policy]


def planned_replicas(pool_file: Path) -> dict[str, int]:
    planned = subprocess.run(
        [str(BIN / "modelfleet"), "plan", "-f", str(pool_file), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (pool,) = json.loads(planned.stdout)["pools"]
    return {v["name"]: v["desiredReplicas"] for v in pool["variants"]}


def real_time_since(start: datetime, stamp: str) -> bool:
    """A status time on the wall clock: after `start` (a second's slack), not ahead of now
    (on the demo's day clock it would be days ahead)."""
    moment = datetime.fromisoformat(stamp)
    return start - timedelta(seconds=1) <= moment <= datetime.now(UTC) + timedelta(seconds=1)


# The demo's day, a minute on the wall clock, a policy's gateway started: past the default
# 300 s on a busy machine.
@pytest.mark.timeout(540)
def test_after_its_day_the_demo_is_a_cluster_a_user_drives(kept_running, tmp_path):
    demo = kept_running
    kubeconfig = demo.wait_for(r"^\s*export KUBECONFIG=(\S+)$", 300).group(1)
    demo.wait_for(r"Stop: Ctrl-C here", 60)
    api_server = demo.wait_for(r"API server:\s+(\S+)", 1).group(1)
    prometheus = demo.wait_for(r"Prometheus:\s+(\S+)", 1).group(1)
    demo.wait_for(r"Gateway:\s+http://127\.0\.0\.1:\d+", 1)
    for key in ("sk-demo-fin-risk-5b1d", "sk-demo-support-8c2e", "sk-demo-research-3f9a"):
        demo.wait_for(re.escape(key), 1)
    curl = demo.wait_for(r"^\s*(curl .*)$", 1).group(1)
    env = {**os.environ, "KUBECONFIG": kubeconfig}

    def kubectl(*args: str, stdin: str | None = None, check: bool = True):
        result = subprocess.run(
            [str(BIN / "kubectl"), *args], input=stdin, capture_output=True, text=True,
            timeout=60, env=env,
        )  # fmt: skip
        assert result.returncode == 0 or not check, f"kubectl {' '.join(args)}: {result.stderr}"
        return result

    server = kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    assert server.stdout == api_server
    with urllib.request.urlopen(f"{prometheus}/-/ready", timeout=10) as ready:
        assert ready.status == 200
    answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=60)
    assert json.loads(answer.stdout)["choices"][0]["message"]["content"], answer
    # That gateway is the one the operator runs for the sample policy, owned by it.
    gateway = json.loads(kubectl("get", "deploy", "chat-gateway", "-n", "llm", "-o", "json").stdout)
    assert [o["kind"] for o in gateway["metadata"]["ownerReferences"]] == ["RoutingPolicy"]
    assert gateway["status"]["readyReplicas"] == gateway["spec"]["replicas"] == 1

    # A namespace and a pool of one's own, applied with validation on.
    now = datetime.now(UTC)
    pool_file = tmp_path / "mine.yaml"
    pool_file.write_text(yaml.safe_dump(user_pool(now)))
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(namespace))
    applied = kubectl("apply", "-f", str(pool_file))
    assert "modelpool.modelfleet.io/mine created" in applied.stdout
    expected = planned_replicas(pool_file)
    assert expected == {"day": 3, "night": 1}

    def deployments() -> dict[str, int]:
        listing = json.loads(kubectl("get", "deploy", "-n", "team-a", "-o", "json").stdout)
        return {d["metadata"]["name"]: d["spec"]["replicas"] for d in listing["items"]}

    wanted = {f"mine-{variant}": count for variant, count in expected.items()}
    eventually(lambda: deployments() == wanted, 60, f"Deployments at the planned {wanted}")
    columns = kubectl("get", "mp", "-n", "team-a").stdout.splitlines()
    assert columns[0].split() == ["NAME", "READY", "DESIRED", "GPUS", "BUDGET", "AGE"]
    assert columns[1].split()[:1] == ["mine"]
    assert "16" in columns[1].split()

    # On the wall clock the counts hold: on the demo's day clock (a day in 30 s) `day`'s
    # window closes within a second and `night`'s opens within four.
    held_until = time.monotonic() + 20
    while time.monotonic() < held_until:
        assert deployments() == wanted
        assert planned_replicas(pool_file) == expected
        time.sleep(5)

    def status() -> dict:
        return json.loads(kubectl("get", "mp", "mine", "-n", "team-a", "-o", "json").stdout)[
            "status"
        ]

    def sampled() -> list[str]:
        observed = [v.get("observed") or {} for v in status()["variants"]]
        stamps = [o.get("sampledAt") for o in observed]
        return stamps if all(stamps) else []

    assert status()["desiredReplicas"] == 4
    assert real_time_since(now, status()["plannedAt"]), status()["plannedAt"]
    stamps = eventually(sampled, 60, "the pool's replicas scraped")
    assert all(real_time_since(now, stamp) for stamp in stamps), stamps

    # A RoutingPolicy of one's own: the operator runs its gateway (the demo's node agent
    # starts its pod: gateway-sync and Envoy), reached with the OpenAI SDK at its Service.
    policy_file = tmp_path / "mine-policy.yaml"
    policy_file.write_text(yaml.safe_dump_all(user_policy(free_port())))
    applied = kubectl("apply", "-f", str(policy_file))
    assert "routingpolicy.modelfleet.io/mine created" in applied.stdout

    def policy_ready() -> str:
        jsonpath = '{.status.conditions[?(@.type=="Ready")].status}'
        return kubectl("get", "rp", "mine", "-n", "team-a", "-o", f"jsonpath={jsonpath}").stdout

    eventually(lambda: policy_ready() == "True", 90, "the policy's gateway serving")
    assert deployments()["mine-gateway"] == 1
    service = json.loads(kubectl("get", "svc", "mine-gateway", "-n", "team-a", "-o", "json").stdout)
    address = f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    client = openai.OpenAI(
        base_url=f"http://{address}/v1", api_key=USER_KEY, max_retries=0, timeout=30
    )
    answer = client.chat.completions.create(
        model="mine", messages=[{"role": "user", "content": "Hello!"}], max_tokens=8
    )
    assert answer.choices[0].message.content
    assert answer.model == "mine"

    broken = user_pool(now)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["variants"][0]["replicas"] = {"min": 4, "max": 2}
    refused = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(broken), check=False)
    assert refused.returncode == 1
    assert 'The ModelPool "broken" is invalid' in refused.stderr
    assert "spec.variants[0].replicas.min: Invalid value" in refused.stderr

    kubectl("delete", "-f", str(policy_file), "-f", str(pool_file))
    eventually(lambda: deployments() == {}, 60, "the Deployments gone with the pool and policy")
    leftovers = kubectl(
        "get", "svc,sa,role,rolebinding,pdb,netpol,cm", "-n", "team-a", "-o", "name"
    )
    assert "mine-gateway" not in leftovers.stdout

    # Ctrl-C reaches it although it started with SIGINT ignored, and nothing is left.
    workdir = json.loads((tmp_path / "demo.json").read_text())["settings"]["workdir"]
    assert workdir in kubeconfig
    assert demo.stop(signal.SIGINT) == 130
    assert processes_mentioning(workdir) == []
    assert not Path(workdir).exists()


def test_sigterm_stops_the_demo_like_ctrl_c(tmp_path):
    demo = DemoProcess(tmp_path)
    try:
        kubeconfig = demo.wait_for(r"KUBECONFIG=(\S+)", 120).group(1)
        workdir = str(Path(kubeconfig).parents[1])
        demo.wait_for(r"the day begins", 120)
        time.sleep(3)  # well into the day: the event loop, the load, the live operator
        assert demo.stop(signal.SIGTERM) == 143
        assert processes_mentioning(workdir) == []
        assert not Path(workdir).exists()
        assert "stopped (SIGTERM)" in (tmp_path / "stderr.log").read_text()
    finally:
        demo.close()
