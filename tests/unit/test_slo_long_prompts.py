"""Long prompts, where time to first token binds: the slo signal scales on the p99 TTFT the
simulated replicas' histograms show, learns what a replica carries, and the route meets
its SLO once the replicas are there (a replay through the operator's own cycle)."""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

import yaml

from modelfleet_testbed.sim.outcome import SERVED
from modelfleet_testbed.sim.run import SimulationOptions, simulate

TTFT_SLO = 1.5


def write_fleet(directory: Path) -> Path:
    pool = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": "docs", "namespace": "ns"},
        "spec": {
            "gpuBudget": 64,
            "variants": [
                {
                    "name": "big",
                    "model": "org/large-70b",
                    "gpusPerReplica": 4,
                    "startupSeconds": 60,
                    "replicas": {"min": 1, "max": 12},
                }
            ],
        },
    }
    policy = {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": "docs", "namespace": "ns"},
        "spec": {
            "pool": "docs",
            "gateway": {"configMap": "docs", "apiKeySecret": "docs-keys"},
            "routes": [
                {
                    "name": "summarize",
                    "match": {"taskType": ["summarize"]},
                    "backends": [{"variant": "big", "weight": 100}],
                    "slo": {"ttftSeconds": TTFT_SLO},
                }
            ],
        },
    }
    path = directory / "fleet.yaml"
    path.write_text(yaml.safe_dump_all([pool, policy]))
    return path


def write_trace(directory: Path) -> Path:
    """Half an hour at 0.5 requests/s, then 90 minutes at 6: prompts of about 6,000
    tokens (log-normal), answers of about 100."""
    rng = random.Random(7)
    path = directory / "long.csv"
    t = 0.0
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["timestamp", "input_tokens", "output_tokens", "task_type"])
        while t < 7200:
            t += rng.expovariate(0.5 if t < 1800 else 6.0)
            prompt = min(20_000, round(rng.lognormvariate(math.log(6000), 0.35)))
            output = max(1, round(rng.lognormvariate(math.log(100), 0.5)))
            out.writerow([f"{t:.3f}", prompt, output, "summarize"])
    return path


def test_the_slo_signal_scales_on_ttft_for_long_prompts_and_meets_it(tmp_path):
    options = SimulationOptions(
        files=[write_fleet(tmp_path)],
        trace=write_trace(tmp_path),
        trace_format="csv",
        seed=1,
        log_plans=True,
    )
    simulation = simulate(options)
    result = simulation.results["policy"]
    times = simulation.workload.arrivals.times
    # The step comes at 30 minutes; after ten minutes more, the replicas are there.
    settled = [
        i for i in range(len(times)) if times[i] >= 2400 and times[i] < result.duration - 300
    ]
    met = sum(1 for i in settled if result.status[i] == SERVED and result.ttft[i] <= TTFT_SLO)
    assert met / len(settled) >= 0.99, met / len(settled)
    # It was the slo signal, on time to first token, that added the replicas.
    ups = [e for e in result.scale_events if e.after > e.before]
    assert ups and all(e.reason in ("slo", "stabilizing") for e in ups), ups
    late = [p for p in result.plans if p["at"] >= "2026-01-05T01:30"]
    slo_details = [
        s["detail"]
        for p in late
        for v in p["plan"]["pools"][0]["variants"]
        for s in v["signals"]
        if s["reason"] == "slo"
    ]
    assert any("per replica (learned)" in d for d in slo_details), slo_details[-5:]
    capacity = late[-1]["plan"]["pools"][0]["variants"][0]["capacity"]
    assert capacity["basis"] in ("learned", "exploring") and capacity["points"], capacity
    # Long prompts cost a replica far more than the conversation trace's: the capacity
    # learned is a few requests per second at most.
    assert capacity["requestsPerSecondPerReplica"] < 5
    peak = max(p.allocated[0] for p in result.series)
    assert 2 <= peak <= 12
    json.dumps(simulation.report)  # the report stays JSON
