"""The simulation report as Markdown, for people: the same numbers as report.json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(report: dict[str, Any]) -> str:
    replay = report["replay"]
    trace = report["trace"]
    lines = [
        f"# What would it cost? ModelPool {report['pool']}, RoutingPolicy {report['policy']}",
        "",
        f"Replay from {replay['start']} to {replay['end']} ({replay['timezone']}): "
        f"{replay['requests']:,} requests, {replay['meanRate']:.3g}/s on average, seed "
        f"{report['seed']}.",
        "",
        f"- Arrivals: {replay['arrivals']}.",
        f"- Day curve: {replay['diurnal']['statement']}",
    ]
    if trace.get("citation"):
        lines.append(f"- Trace: {trace['citation']}.")
    lines += ["", "## Runs", ""]
    rows = []
    for run in report["runs"]:
        cost = run["cost"]
        billing = ", ".join(f"{m} {_num(a, 2)}" for m, a in cost["byMode"].items()) or "-"
        dropped = sum(run["requests"]["dropped"].values())
        rows.append(
            [
                run["name"],
                _num(run["gpuHours"]),
                _num(cost["poolTotal"], 2),
                billing,
                _num(run["requests"]["served"]),
                _num(dropped),
                _pct(run["sloAttainment"]["ttft"]),
                _pct(run["sloAttainment"]["e2e"]),
                _num(run["peakGpus"]),
            ]
        )
    lines += _table(
        [
            "run",
            "GPU-hours",
            "pool cost",
            "tenant billing",
            "served",
            "dropped",
            "TTFT SLO",
            "e2e SLO",
            "peak GPUs",
        ],
        rows,
    )
    lines += [""]
    lines += [f"- **{run['name']}**: {run['description']}." for run in report["runs"]]
    lines += _days_section(report["runs"])
    for run in report["runs"]:
        lines += _run_section(run)
    lines += ["", "## Request mix", ""]
    mix = report["mix"]
    lines.append(mix["statement"])
    lines.append("")
    for key in ("routes", "tenants", "priorities"):
        shares = ", ".join(f"{name} {_pct(share)}" for name, share in mix[key].items())
        lines.append(f"- {key}: {shares}")
    lines += ["", "## Model", ""]
    model = report["model"]
    lines.append(f"Speed model: {model['speedModel']} ({model['speedModelSource']}).")
    lines.append("")
    lines += _table(
        ["variant", "profile", "max seqs", "batched tokens", "token limit", "startup s"],
        [
            [
                name,
                v["profile"],
                _num(v["maxNumSeqs"]),
                _num(v["maxNumBatchedTokens"]),
                _num(v["tokenLimit"]),
                _num(v["startupSeconds"]),
            ]
            for name, v in model["variants"].items()
        ],
    )
    lines += ["", "Assumptions:", ""]
    lines += [f"- {line}" for line in model["assumptions"]]
    lines += [
        "",
        "Plots: `replicas.png`, `queue.png`, `attainment.png`; every cycle: `series.csv`.",
        "",
    ]
    return "\n".join(lines)


def _days_section(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Each run day by day, with the ramp hours (demand climbing fast) on their own."""
    peak = next((r for r in runs if r["name"] == "static-peak"), None)
    peak_hours = {d["date"]: d["gpuHours"] for d in peak["days"]} if peak else {}
    header = ["run", "date", "GPU-hours"]
    header += ["of static-peak"] if peak else []
    header += ["TTFT SLO", "e2e SLO", "ramp hours", "TTFT / e2e SLO in ramp hours"]
    rows = []
    for run in runs:
        for day in run.get("days", []):
            row = [run["name"], day["date"], _num(day["gpuHours"])]
            if peak:
                reference = peak_hours.get(day["date"])
                row.append(_pct(day["gpuHours"] / reference) if reference else "-")
            ramps = day["rampHours"]
            row += [
                _pct(day["sloAttainment"]["ttft"]),
                _pct(day["sloAttainment"]["e2e"]),
                ", ".join(h["hour"] for h in ramps) or "-",
                f"{_pct(day['rampAttainment']['ttft'])} / {_pct(day['rampAttainment']['e2e'])}"
                if ramps
                else "-",
            ]
            rows.append(row)
    if not rows:
        return []
    lines = ["", "## Day by day", ""]
    lines.append(
        "In the pool's time zone. Ramp hours bring at least a quarter more requests than the "
        "hour before (and a climb of at least 5% of the day's busiest hour): a fleet that "
        "scales only after demand arrives misses there. `attainment.png` plots every hour."
    )
    lines.append("")
    return lines + _table(header, rows)


def _run_section(run: dict[str, Any]) -> list[str]:
    lines = ["", f"## {run['name']}", ""]
    dropped = ", ".join(f"{k} {v:,}" for k, v in run["requests"]["dropped"].items() if v)
    lines.append(
        f"{run['requests']['served']:,} of {run['requests']['total']:,} requests served"
        + (f"; dropped: {dropped}" if dropped else "; none dropped")
        + f". {_num(run['gpuHours'])} GPU-hours, peak {run['peakGpus']} of "
        f"{run['gpuBudget']} GPUs."
    )
    lines.append("")
    lines += _table(
        [
            "variant",
            "served",
            "replica-h",
            "GPU-h",
            "replicas min-peak",
            "max waiting",
            "ups",
            "downs",
        ],
        [
            [
                name,
                _num(v["served"]),
                _num(v["replicaHours"]),
                _num(v["gpuHours"]),
                f"{v['minReplicas']}-{v['peakReplicas']}",
                _num(v["maxWaiting"], 0),
                _num(v["scaleUps"]),
                _num(v["scaleDowns"]),
            ]
            for name, v in run["variants"].items()
        ],
    )
    lines.append("")
    lines += _table(
        ["route", "requests", "TTFT p50/p99 s", "TTFT SLO", "e2e p50/p99 s", "e2e SLO", "degraded"],
        [
            [
                name,
                _num(r["requests"]),
                f"{_seconds(r['ttft']['p50'])} / {_seconds(r['ttft']['p99'])}",
                _slo_cell(r["ttft"]),
                f"{_seconds(r['e2e']['p50'])} / {_seconds(r['e2e']['p99'])}",
                _slo_cell(r["e2e"]),
                _num(r["degraded"]),
            ]
            for name, r in run["slo"].items()
        ],
    )
    cost = run["cost"]
    lines += ["", f"Pool cost {_num(cost['poolTotal'], 2)}", ""]
    lines += _table(
        ["tenant", "requests", "served", "prompt tokens", "completion tokens", "billed"],
        [
            [
                tenant,
                _num(t["requests"]),
                _num(t["served"]),
                _num(t["promptTokens"]),
                _num(t["completionTokens"]),
                _num(t["billed"], 2),
            ]
            for tenant, t in run["tenants"].items()
        ],
    )
    if cost["billing"]:
        lines += [""]
        lines += _table(
            ["tenant", "variant", "mode", "item", "quantity", "unit price", "amount"],
            [
                [
                    b["tenant"],
                    b["variant"],
                    b["mode"],
                    b["item"],
                    _num(b["quantity"], 2),
                    # Tokens are priced per thousand, as the spec writes them.
                    f"{_num(b['unitPrice'] * 1000, 4)} /1K"
                    if b["item"].endswith("tokens")
                    else _num(b["unitPrice"], 4),
                    f"{_num(b['amount'], 2)} {b['currency']}",
                ]
                for b in cost["billing"]
            ],
        )
    events = run["scaleEvents"]
    lines += ["", f"{len(events)} scale events" + (":" if events else "."), ""]
    shown = events[:20]
    lines += [f"- {e['at']} {e['variant']} {e['from']} -> {e['to']} ({e['reason']})" for e in shown]
    if len(events) > len(shown):
        lines.append(f"- ... {len(events) - len(shown)} more in report.json")
    return lines


def _slo_cell(latency: dict[str, Any]) -> str:
    if latency.get("targetSeconds") is None:
        return "-"
    return f"{_pct(latency['attainment'])} <= {latency['targetSeconds']:g} s"
