"""The simulation report: one JSON document (and the same as Markdown, see markdown.py),
and every planning cycle as CSV."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from modelfleet.api.modelpool import ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet_testbed.sim.baselines import describe
from modelfleet_testbed.sim.daily import Hour
from modelfleet_testbed.sim.diurnal import Envelope
from modelfleet_testbed.sim.markdown import markdown
from modelfleet_testbed.sim.outcome import ReplayResult, ReplaySettings
from modelfleet_testbed.sim.replica_set import EngineConfig
from modelfleet_testbed.sim.summary import summarize
from modelfleet_testbed.sim.traces import Trace
from modelfleet_testbed.sim.workload import Workload

AZURE_CITATION = (
    "Azure LLM inference trace 2023 (Azure/AzurePublicDataset), CC-BY 4.0; Patel et al., "
    '"Splitwise: Efficient generative LLM inference using phase splitting", ISCA 2024'
)
SIGNIFICANT = 6


def assumptions(settings: ReplaySettings, pool: ModelPool) -> list[str]:
    refresh = pool.spec.metrics.refresh_seconds
    return [
        f"The operator's cycle (modelfleet.render.desired: its planner and router) runs "
        f"every {refresh} s (spec.metrics.refreshSeconds); the previous plan comes back "
        "from the pool's status, serialized and read again, as through the API server.",
        f"Queue metrics lag {settings.scrape_lag:g} s: each cycle sees vllm:num_requests_running"
        " and vllm:num_requests_waiting summed over the ready replicas as they were "
        f"{settings.scrape_lag:g} s earlier, and the finished-request rate over the "
        f"{settings.rate_window} s before that; ready replicas are current, as the operator "
        "reads them from the Deployments.",
        "The fleet starts warm: the first plan (no metrics yet) is ready at the start.",
        "A scale-up's replicas hold their GPUs at once and become ready startupSeconds later.",
        "A scale-down removes starting replicas first, then the most recently ready; they leave"
        " the Service at once and finish what they hold; requests still running "
        f"{settings.termination_grace:g} s later (the pod's termination grace period) are "
        "dropped as `terminated`. Draining replicas are not scraped.",
        "The routing table of the same cycle, planned from the same observations, takes "
        "effect at once.",
        (
            "Within a variant a request goes to a ready replica at random, as kube-proxy spreads"
            " connections over a Service."
            if settings.balance == "random"
            else "Within a variant requests wait in one queue at the gateway until a replica "
            "has a free batch slot (max_num_seqs), then go to the ready replica holding the "
            "fewest requests."
        ),
        "GPUs are assumed free when a replica is created; the planner keeps the plan within "
        "gpuBudget, replicas still draining come on top.",
        "Cost: the pool pays costPerReplicaHour for every replica-hour a replica holds GPUs "
        "(starting, ready or draining); every tenant is billed by the operator's ledger for "
        "its served requests and their prompt and completion tokens (from the trace): on a "
        "variant it holds a Reservation on by that Reservation, elsewhere at the variant's "
        "onDemandPrice. Budgets are not enforced in the simulation.",
        "SLO attainment counts a dropped request as a miss.",
    ]


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return float(f"{value:.{SIGNIFICANT}g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def _trace_json(trace: Trace | None) -> dict[str, Any]:
    if trace is None:
        return {"format": "synthetic"}
    out: dict[str, Any] = {
        "source": Path(trace.source).name,
        "format": trace.format,
        "requests": len(trace),
        "periodSeconds": trace.period,
        "meanRate": trace.mean_rate,
        "origin": trace.origin.isoformat() if trace.origin else None,
    }
    if trace.format == "azure":
        out["citation"] = AZURE_CITATION
    return out


def _envelope_statement(trace: Trace | None, shape: Envelope, days: float | None) -> str:
    curve = shape.profile.describe()
    if trace is None:
        return f"Synthetic arrivals shaped by the day curve {curve}, mean 1 over the replay."
    covers = f"The trace covers {trace.period / 3600:.3g} h"
    if shape.profile.name == "flat":
        if days is None:
            return f"{covers}; replayed as recorded (no day curve)."
        return f"{covers}; repeated end to end over {days:g} days at a flat rate (no day curve)."
    return (
        f"{covers}; repeated end to end over the replay, its arrival process modulated by the "
        f"day curve {curve} in the pool's time zone, scaled to a mean of 1 over the replay. "
        "This day curve is assumed, not observed."
    )


def build_report(
    *,
    options,
    pool: ModelPool,
    policy: RoutingPolicy,
    reservations: Sequence[Reservation],
    pools: Mapping[str, ModelPool],
    results: Mapping[str, ReplayResult],
    workload: Workload,
    configs: Mapping[str, EngineConfig],
    trace: Trace | None,
    shape: Envelope,
    settings: ReplaySettings,
    hours: Mapping[str, Sequence[Hour]],
) -> dict[str, Any]:
    start = settings.start
    requests = len(workload.arrivals)
    runs = [
        summarize(
            name,
            describe(name),
            result,
            workload,
            pools[name],
            reservations,
            policy,
            start,
            hours[name],
        )
        for name, result in results.items()
    ]
    report = {
        "kind": "modelfleet-simulate-report",
        "pool": f"{pool.namespace}/{pool.name}",
        "policy": f"{policy.namespace}/{policy.name}",
        "reservations": [r.name for r in reservations],
        "seed": options.seed,
        "trace": _trace_json(trace),
        "replay": {
            "start": start.isoformat(),
            "end": (start + timedelta(seconds=settings.duration)).isoformat(),
            "timezone": pool.spec.timezone,
            "durationSeconds": settings.duration,
            "requests": requests,
            "meanRate": requests / settings.duration,
            "arrivals": workload.arrivals.description,
            "diurnal": {
                "profile": shape.profile.name,
                "weekday": list(shape.profile.weekday),
                "weekend": list(shape.profile.weekend),
                "statement": _envelope_statement(trace, shape, options.days),
            },
        },
        "mix": {
            **workload.mix.as_json(),
            "classes": [c.describe() for c in workload.classes],
            "statement": (
                "Each request was given a route (and the task type or model that route "
                "matches), a tenant and an x-priority value, drawn with seed "
                f"{options.seed} from the shares above; where the trace names a task type, "
                "tenant or priority, that was used instead."
            ),
        },
        "model": {
            "speedModel": "modelfleet_testbed.sim.gpu + modelfleet_testbed.sim.batching",
            "speedModelSource": (
                "step times from PyPI vllm-sr-sim 0.1.0 (package fleet_sim, Apache-2.0) "
                "profiles; continuous batching as vLLM's v1 scheduler"
            ),
            "variants": {
                variant.name: {
                    "profile": configs[variant.name].profile.name,
                    "maxNumSeqs": configs[variant.name].max_num_seqs,
                    "maxNumBatchedTokens": configs[variant.name].max_num_batched_tokens,
                    "tokenLimit": configs[variant.name].token_limit,
                    "startupSeconds": variant.startup_seconds,
                    "gpusPerReplica": variant.gpus_per_replica,
                }
                for variant in pool.spec.variants
            },
            "balance": settings.balance,
            "scrapeLagSeconds": settings.scrape_lag,
            "terminationGraceSeconds": settings.termination_grace,
            "assumptions": assumptions(settings, pool),
        },
        "runs": runs,
    }
    return _rounded(report)


# -- files -------------------------------------------------------------------------


def write_series(path: Path, results: Mapping[str, ReplayResult], start) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(
            [
                "run",
                "t",
                "time",
                "variant",
                "desired",
                "replicas",
                "ready",
                "waiting",
                "running",
                "reason",
            ]
        )
        for name, result in results.items():
            for point in result.series:
                when = (start + timedelta(seconds=point.t)).isoformat()
                for v, variant in enumerate(result.variants):
                    out.writerow(
                        [
                            name,
                            f"{point.t:g}",
                            when,
                            variant,
                            point.desired[v],
                            point.allocated[v],
                            point.ready[v],
                            "" if point.waiting[v] is None else f"{point.waiting[v]:g}",
                            "" if point.running[v] is None else f"{point.running[v]:g}",
                            point.reasons[v],
                        ]
                    )


def write_report(out: Path, report: dict[str, Any], results, start) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "series.csv"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(report))
    write_series(paths[2], results, start)
    return paths
