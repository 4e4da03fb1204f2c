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
from modelfleet_testbed.demo.scenario import KEYS

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


ENFORCED = ("Blocked", "Degraded")
# After a budget's state flips, the gateway's routes swap (sidecar watch, Envoy reload) and
# calls already in flight finish where they went: "after" starts this much later.
SETTLE_HOURS = 0.25


def budget_story(
    timeline: Timeline, outcomes: list[Outcome], tenant_of_key: dict[str, str]
) -> dict[str, Any]:
    """Per budget: when it was first hit (the first sample with the gateway enforcing it),
    its highest spend, its states in order, and where its tenant's calls went from then to
    midnight."""
    story: dict[str, Any] = {}
    for name in sorted({n for s in timeline.samples for n in s.budgets}):
        seen = [(s.hour, s.budgets[name]) for s in timeline.samples if name in s.budgets]
        hit = next((hour for hour, b in seen if b["state"] in ENFORCED), None)
        tenant = name.split("/")[0]
        after = [
            o
            for o in outcomes
            if hit is not None
            and hit + SETTLE_HOURS <= o.hour < 24
            and tenant_of_key.get(o.key_id) == tenant
        ]
        last = seen[-1][1]
        reset = next(
            (h for h, b in seen if hit is not None and h > hit and b["state"] not in ENFORCED),
            None,
        )
        enforced = [b for _, b in seen if b["state"] in ENFORCED]
        story[name] = {
            "action": last["action"],
            "amount": last["amount"],
            "currency": last["currency"],
            "hit_at_hour": None if hit is None else round(hit, 2),
            # When the period that was hit ends (status resetsAt), and when the demo saw the
            # state go back (the operator's next cycle after it; None: not within the run).
            "resets_at": enforced[0].get("resets_at") if enforced else None,
            "reset_seen_at_hour": None if reset is None else round(reset, 2),
            "max_spend": round(max((b["spend"] or 0.0) for _, b in seen), 4),
            "final_state": last["state"],
            # The states in the order they came (WithinBudget -> ... -> WithinBudget at reset).
            "states": [
                b["state"]
                for i, (_, b) in enumerate(seen)
                if i == 0 or b["state"] != seen[i - 1][1]["state"]
            ],
            "after_hit": {
                "by_status": dict(Counter(str(o.status) for o in after)),
                "by_error": dict(Counter(o.error_code for o in after if o.error_code)),
                # route -> the Deployment that answered: a degraded tenant's cheaper backends
                "served_by": {
                    route: dict(
                        Counter(
                            o.served_by
                            for o in after
                            if o.status == 200
                            and ROUTE_OF_TASK.get(o.task_type, o.task_type) == route
                        )
                    )
                    for route in sorted({ROUTE_OF_TASK.get(o.task_type, "") for o in after})
                    if route
                },
            },
        }
    return story


def tenant_lines(
    tokens: dict[str, dict[str, float]], cost_by_tenant: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Per tenant: what the gateway counted (calls with usage, tokens) and what it is
    billed (every billing mode of the operator's ledger)."""
    tenants = sorted((set(tokens) | set(cost_by_tenant)) - {"(pool)"})
    return {
        t: {
            "calls": tokens.get(t, {}).get("requests", 0.0),
            "prompt_tokens": tokens.get(t, {}).get("prompt_tokens", 0.0),
            "completion_tokens": tokens.get(t, {}).get("completion_tokens", 0.0),
            "billed": round(sum(cost_by_tenant.get(t, {}).values()), 4),
        }
        for t in tenants
    }


def summarize(
    outcomes: list[Outcome],
    timeline: Timeline,
    costs: list[dict[str, Any]],
    events: list[dict[str, Any]],
    settings: dict[str, Any],
    tokens: dict[str, dict[str, float]] | None = None,
    budget_events: list[dict[str, Any]] | None = None,
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
                "by_error": dict(Counter(o.error_code for o in abusive if o.error_code)),
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
        "tenants": tenant_lines(tokens or {}, cost_by_tenant),
        "budgets": budget_story(timeline, outcomes, {k["id"]: k["tenant"] for k in KEYS}),
        "budget_events": budget_events or [],
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
    tenants = Table(title="Tenants: tokens and spend", title_justify="left")
    for column in ("tenant", "calls", "prompt tokens", "completion tokens", "billed (USD)"):
        tenants.add_column(column)
    for tenant, line in summary["tenants"].items():
        tenants.add_row(
            tenant,
            f"{line['calls']:.0f}",
            f"{line['prompt_tokens']:.0f}",
            f"{line['completion_tokens']:.0f}",
            f"{line['billed']:.4f}",
        )
    console.print(tenants)
    budgets = Table(title="Budgets", title_justify="left")
    for column in ("budget", "action", "amount", "hit at", "max spend", "states"):
        budgets.add_column(column)
    for name, story in summary["budgets"].items():
        hit = story["hit_at_hour"]
        budgets.add_row(
            name,
            story["action"],
            f"{story['amount']:g} {story['currency']}",
            "-" if hit is None else f"{int(hit):02d}:{int(hit % 1 * 60):02d}",
            f"{story['max_spend']:.4f}",
            " > ".join(story["states"]),
        )
    console.print(budgets)
    for name, story in summary["budgets"].items():
        for route, served in story["after_hit"]["served_by"].items():
            console.print(
                f"{name} after its budget was hit, {route} served by: "
                + ", ".join(f"{d} {n}" for d, n in sorted(served.items())),
                soft_wrap=True,
            )
    events = Table(title="Scale events", title_justify="left")
    events.add_column("when")
    events.add_column("what")
    for event in summary["scale_events"][-15:]:
        events.add_row(str(event["time"]), event["message"][:110])
    console.print(events)
