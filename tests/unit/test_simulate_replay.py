"""The replay: conservation, determinism, startup delay, and the queueing model against
closed forms (Erlang C, and the exact first-come-first-served recursion)."""

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from modelfleet.api.load import load_resources
from modelfleet_testbed.sim.arrivals import from_trace
from modelfleet_testbed.sim.outcome import (
    DROP_REASONS,
    NO_READY,
    NO_ROUTE,
    PENDING,
    SERVED,
    TERMINATED,
    TOO_LONG,
    ReplaySettings,
)
from modelfleet_testbed.sim.replay import replay
from modelfleet_testbed.sim.run import SimulationOptions, engine_configs, simulate
from modelfleet_testbed.sim.traces import Trace
from modelfleet_testbed.sim.workload import build_workload, default_mix

from .simulate_support import (
    MINI_FLEET,
    SMALL_TRACE,
    erlang_c_wait,
    fifo_waits,
    linear_prefill_profile,
)

QUEUE_FLEET = """
apiVersion: modelfleet.io/v1alpha1
kind: ModelPool
metadata: {name: queue, namespace: sim}
spec:
  gpuBudget: 2
  metrics: {refreshSeconds: 3600}
  variants:
    - name: server
      model: test/exponential-server
      args: ["--max-num-seqs", "1", "--max-num-batched-tokens", "100000000"]
      gpusPerReplica: 1
      replicas: {min: 2, max: 2}
---
apiVersion: modelfleet.io/v1alpha1
kind: RoutingPolicy
metadata: {name: queue, namespace: sim}
spec:
  pool: queue
  gateway: {configMap: gw, apiKeySecret: keys}
  routes:
    - name: all
      backends: [{variant: server, weight: 1}]
"""
SERVICE_TOKENS_P = 0.002  # geometric prompt tokens: mean 500
SECONDS_PER_TOKEN = 0.002  # so the mean service time is 1 s


def _queue_replay(tmp_path, count: int, arrival_rate: float, seed: int):
    """M/M/2 on simulated replicas: Poisson arrivals, one request at a time per replica,
    service = geometric prompt tokens x a constant per token (exponential in the limit)."""
    path = tmp_path / "queue.yaml"
    path.write_text(QUEUE_FLEET)
    resources = load_resources([path])
    pool, policy = resources.pools[0], resources.policies[0]
    rng = random.Random(seed)
    times, tokens, at = [], [], 0.0
    import math

    log_keep = math.log(1 - SERVICE_TOKENS_P)
    for _ in range(count):
        times.append(at)
        tokens.append(1 + int(math.log(1 - rng.random()) / log_keep))
        at += rng.expovariate(arrival_rate)
    trace = Trace("memory", "csv", times, tokens, [1] * count)
    requests = from_trace(trace, trace.period, None, None)
    workload = build_workload(requests, policy, default_mix(policy, []), seed)
    configs = engine_configs(pool, {"server": linear_prefill_profile(SECONDS_PER_TOKEN)})
    settings = ReplaySettings(
        start=datetime(2026, 1, 5, tzinfo=UTC), duration=trace.period, balance="gateway-queue"
    )
    result = replay(pool, [], policy, workload, configs, settings)
    services = [t * SECONDS_PER_TOKEN for t in requests.prompt_tokens]
    return requests, services, result


def test_gateway_queue_is_exactly_a_fifo_multi_server_queue(tmp_path):
    requests, services, result = _queue_replay(tmp_path, 5000, 1.6, seed=11)
    expected = fifo_waits(list(requests.times), services, servers=2)
    assert set(result.status) == {SERVED}
    assert sum(w > 0 for w in expected) > 1000  # the queue really builds up
    for i, wait in enumerate(expected):
        assert result.queued[i] == pytest.approx(wait, abs=1e-6)
        assert result.e2e[i] == pytest.approx(wait + services[i], abs=1e-6)


def test_mean_wait_of_m_m_2_matches_erlang_c(tmp_path):
    arrival_rate = 1.0  # two servers at 1/s each: utilisation 0.5
    requests, services, result = _queue_replay(tmp_path, 200_000, arrival_rate, seed=0)
    mean_service = sum(services) / len(services)
    assert mean_service == pytest.approx(1.0, rel=0.01)
    simulated = sum(result.queued) / len(result.queued)
    closed_form = erlang_c_wait(2, arrival_rate, 1.0)
    assert simulated == pytest.approx(closed_form, rel=0.05)


DROPS_FLEET = """
apiVersion: modelfleet.io/v1alpha1
kind: ModelPool
metadata: {name: drops, namespace: sim}
spec:
  gpuBudget: 8
  timezone: UTC
  metrics: {refreshSeconds: 30}
  variants:
    - name: main
      model: Qwen/Qwen2.5-7B-Instruct
      args: ["--max-model-len", "3000"]
      gpusPerReplica: 1
      startupSeconds: 30
      replicas: {min: 1, max: 4}
      queue:
        targetPerReplica: 4
        scaleDown: {maxStep: 3, stabilizationSeconds: 0}
    - name: spare
      model: Qwen/Qwen2.5-7B-Instruct
      gpusPerReplica: 1
      startupSeconds: 600
      replicas: {min: 0, max: 1}
      schedules:
        - {name: later, start: "2 12 * * *", end: "0 13 * * *", replicas: 1}
---
apiVersion: modelfleet.io/v1alpha1
kind: RoutingPolicy
metadata: {name: drops, namespace: sim}
spec:
  pool: drops
  gateway: {configMap: gw, apiKeySecret: keys}
  routes:
    - name: chat
      match: {taskType: [chat]}
      backends: [{variant: main, weight: 1}]
    - name: batch
      match: {taskType: [batch]}
      backends: [{variant: spare, weight: 1}]
"""


def _drops_trace(path):
    """From 12:00 UTC: 50 s of chat requests that scale `main` up to 4; once those replicas
    are ready, long generations land on them, and a later cycle scales down to 2 while
    they run; batch requests for `spare`, which is not ready for minutes;
    unknown task types; prompts over --max-model-len."""
    rng = random.Random(5)
    rows = ["timestamp,input_tokens,output_tokens,task_type"]
    for i in range(100):
        task = rng.choice(["chat"] * 6 + ["batch", "unknown"])
        prompt = 3500 if i % 20 == 0 else rng.randint(200, 800)
        rows.append(f"{i * 0.5:.3f},{prompt},{rng.randint(300, 600)},{task}")
    rows += [f"{62 + i:.3f},300,2500,chat" for i in range(8)]
    rows.append("300.0,100,10,chat")  # a late one, after the scale-down
    path.write_text("\n".join(rows) + "\n")


def test_every_request_is_served_or_dropped_with_a_reason(tmp_path):
    fleet = tmp_path / "drops.yaml"
    fleet.write_text(DROPS_FLEET)
    trace = tmp_path / "drops.csv"
    _drops_trace(trace)
    simulation = simulate(
        SimulationOptions(
            files=[fleet],
            trace=trace,
            start=datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
            termination_grace=5,
        )
    )
    result = simulation.results["policy"]
    counts = Counter(result.status)
    assert PENDING not in counts
    assert sum(counts.values()) == len(simulation.workload.arrivals)
    for code in (SERVED, NO_ROUTE, NO_READY, TOO_LONG, TERMINATED):
        assert counts[code] > 0, f"no request ended as {DROP_REASONS.get(code, 'served')}"
    requests = simulation.report["runs"][0]["requests"]
    assert requests["served"] + sum(requests["dropped"].values()) == requests["total"]
    assert requests["dropped"]["terminated"] == counts[TERMINATED]


def _mini(seed: int, **extra):
    return simulate(
        SimulationOptions(
            files=[MINI_FLEET], trace=SMALL_TRACE, seed=seed, compare=["queue-only"], **extra
        )
    )


def test_same_seed_same_report_other_seed_other_draws():
    first, second, other = _mini(3), _mini(3), _mini(4)
    assert first.report == second.report
    for name in first.results:
        assert first.results[name].status == second.results[name].status
        assert first.results[name].e2e == second.results[name].e2e
    assert list(first.workload.class_of) != list(other.workload.class_of)
    assert first.report["runs"] != other.report["runs"]


def test_a_scale_up_is_never_ready_before_its_startup_seconds():
    simulation = _mini(1, keep_replica_of_request=True)
    result = simulation.results["policy"]
    pool = simulation.pools["policy"]
    startup = {i: v.startup_seconds for i, v in enumerate(pool.spec.variants)}
    added = [r for r in result.replicas if r.created > 0]
    assert added, "the burst should scale up"
    assert any(e.after > e.before for e in result.scale_events)
    for replica in added:
        assert replica.ready_at == pytest.approx(replica.created + startup[replica.fleet])
    ready_at = {r.ident: r.ready_at for r in result.replicas}
    times = simulation.workload.arrivals.times
    served_by_added = 0
    for i, status in enumerate(result.status):
        if status != SERVED:
            continue
        admitted = times[i] + result.queued[i]
        assert admitted >= ready_at[result.replica_of[i]] - 1e-9
        served_by_added += result.replica_of[i] in {r.ident for r in added}
    assert served_by_added > 0
    for point in result.series:
        ready_by_now = Counter(r.fleet for r in result.replicas if r.ready_at <= point.t)
        for index, ready in enumerate(point.ready):
            assert ready <= ready_by_now[index]
