"""The demo's end: the numbers as JSON, a summary table and a PNG of the day."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from modelfleet_testbed.demo.day import ABUSIVE_KEY, LOW_PRIORITY
from modelfleet_testbed.demo.loadgen import Outcome
from modelfleet_testbed.demo.monitor import Timeline

# The sample RoutingPolicy's routes by task type (see manifests/samples/).
ROUTE_OF_TASK = {
    "legal": "legal-medical",
    "medical": "legal-medical",
    "chat": "chat-summary",
    "summary": "chat-summary",
    "code-simple": "code-simple",
    "code-complex": "code-complex",
}


def _p99(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3)


def gpu_hours(timeline: Timeline) -> float:
    """GPUs planned, integrated over the demo's (virtual) hours."""
    total = 0.0
    for before, after in zip(timeline.samples, timeline.samples[1:], strict=False):
        total += before.gpus_planned * max(0.0, after.hour - before.hour)
    return round(total, 1)


def summarize(
    outcomes: list[Outcome],
    timeline: Timeline,
    costs: list[dict[str, Any]],
    events: list[dict[str, Any]],
    settings: dict[str, Any],
) -> dict[str, Any]:
    statuses = Counter(o.status for o in outcomes)
    abusive = [o for o in outcomes if o.key_id == ABUSIVE_KEY]
    ordinary = [o for o in outcomes if o.key_id != ABUSIVE_KEY]
    low = [o for o in outcomes if o.priority == LOW_PRIORITY]
    latencies: dict[str, list[float]] = defaultdict(list)
    for outcome in ordinary:
        if outcome.status == 200:
            latencies[ROUTE_OF_TASK.get(outcome.task_type, outcome.task_type)].append(
                outcome.latency
            )
    cost_by_mode: dict[str, float] = defaultdict(float)
    cost_by_tenant: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in costs:
        cost_by_mode[row["mode"]] += row["amount"]
        tenant = row.get("tenant") or "(pool)"
        cost_by_tenant[tenant][row["mode"]] += row["amount"]
    big = [
        {"hour": round(s.hour, 2), "desired": s.variants.get("qwen3-235b", {}).get("desired")}
        for s in timeline.samples
    ]
    return {
        "settings": settings,
        "requests": {
            "total": len(outcomes),
            "by_status": {str(k): v for k, v in sorted(statuses.items())},
            "served_by": dict(Counter(o.served_by for o in outcomes if o.status == 200)),
            "abusive": {
                "total": len(abusive),
                "by_status": dict(Counter(str(o.status) for o in abusive)),
            },
            "failed_ordinary": [asdict(o) for o in ordinary if o.status != 200][:50],
            "failed_ordinary_count": sum(1 for o in ordinary if o.status != 200),
            "low_priority": {
                "total": len(low),
                "served_by": dict(Counter(o.served_by for o in low if o.status == 200)),
            },
        },
        "p99_latency_seconds_by_route": {k: _p99(v) for k, v in sorted(latencies.items())},
        "gpu_hours": gpu_hours(timeline),
        "cost": {
            "by_mode": {k: round(v, 2) for k, v in sorted(cost_by_mode.items())},
            "by_tenant": {
                t: {m: round(a, 2) for m, a in modes.items()}
                for t, modes in sorted(cost_by_tenant.items())
            },
            "lines": costs,
        },
        "scale_events": events,
        "qwen3_235b_desired": big,
        "timeline": [asdict(s) for s in timeline.samples],
    }


def write_outputs(summary: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "demo.json"
    data.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return [data, plot(summary, out / "demo.png")]


def plot(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = summary["timeline"]
    hours = [s["hour"] for s in samples]
    variants = sorted({v for s in samples for v in s["variants"]})
    # The task-type routes tell the story; the by-model routes never change weight.
    routes = sorted({r for s in samples for r in s["routes"] if not r.startswith("by-model")})
    figure, (replicas, waiting, weights) = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    for variant in variants:
        replicas.plot(
            hours,
            [s["variants"].get(variant, {}).get("desired", 0) for s in samples],
            label=variant,
        )
        waiting.plot(
            hours,
            [s["variants"].get(variant, {}).get("waiting", 0) for s in samples],
            label=variant,
        )
    for route in routes:
        for variant in variants:
            series = [s["routes"].get(route, {}).get(variant) for s in samples]
            if any(w for w in series if w):
                weights.plot(hours, [w or 0 for w in series], label=f"{route} -> {variant}")
    replicas.set_ylabel("desired replicas")
    waiting.set_ylabel("waiting requests")
    weights.set_ylabel("route weight")
    weights.set_xlabel("hour of the (compressed) day")
    for axis in (replicas, waiting, weights):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    figure.suptitle("modelfleet demo: one weekday of the sample fleet")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def print_summary(summary: dict[str, Any], console: Console) -> None:
    requests = summary["requests"]
    table = Table(title="Requests", title_justify="left")
    for column in ("total", "by status", "abusive key", "low-priority served by"):
        table.add_column(column)
    table.add_row(
        str(requests["total"]),
        ", ".join(f"{k}: {v}" for k, v in requests["by_status"].items()),
        ", ".join(f"{k}: {v}" for k, v in requests["abusive"]["by_status"].items()),
        ", ".join(f"{k}: {v}" for k, v in requests["low_priority"]["served_by"].items()),
    )
    console.print(table)
    latency = Table(title="p99 latency by route (s)", title_justify="left")
    latency.add_column("route")
    latency.add_column("p99")
    for route, value in summary["p99_latency_seconds_by_route"].items():
        latency.add_row(route, str(value))
    console.print(latency)
    cost = Table(title=f"Cost (GPU-hours planned: {summary['gpu_hours']})", title_justify="left")
    cost.add_column("tenant")
    cost.add_column("by billing mode")
    for tenant, modes in summary["cost"]["by_tenant"].items():
        cost.add_row(tenant, ", ".join(f"{m}: {a:.2f}" for m, a in modes.items()))
    console.print(cost)
    events = Table(title="Scale events", title_justify="left")
    events.add_column("when")
    events.add_column("what")
    for event in summary["scale_events"][-15:]:
        events.add_row(str(event["time"]), event["message"][:110])
    console.print(events)
