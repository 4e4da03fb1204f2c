"""Does the policy meet the SLOs at the lowest cost? `modelfleet simulate` of two working days.

A Monday and a Tuesday (office day curve, 24 requests/s on average, seed 1) of the Azure
LLM 2023 conversation trace, replayed through the operator's own cycle with:

- `forecast-slo`: the sample pool with its schedules removed and `forecast: {}` on every
  variant (manifests/samples-forecast/ is that pool): forecast, slo and queue signals;
- `policy`: the samples as given (schedules, queue, and the slo signal on by default).

On the second day (the forecast has a day of history by then) each must serve at least 99%
of the requests within their route's TTFT SLO and 99% within its e2e SLO; the forecast pool
at most 40% of the static-peak GPU-hours (every variant at replicas.max, cut to the GPU
budget: what the planner plans for an always-open schedule, held all day).

The conversation trace's prompts are short, so end-to-end latency binds. Two synthetic
traces have long prompts (log-normal) and short answers, so time to first token binds:

- `long-prompts` (12 requests/s, the rate the issue measured its long-prompt trace at):
  prompts of about 3,000 tokens, none longer than the fleet can prefill within its
  routes' TTFT SLOs on an idle replica (the shortest such limit of every variant a route
  with a TTFT SLO sends to, the degrade rules' fallbacks included: the 7B's 0.5 s, about
  10,800 tokens). Every request can meet its SLO; whether it does is up to the policy,
  so both runs are held to the targets here too.
- `beyond-ceiling` (4 requests/s): prompts of about 6,000 tokens, up to 28,000, some longer
  than any replica prefills within the route's TTFT, however idle. It is reported, not
  held to the targets: no number of replicas can reach 99% on it.

Each run also reports `ttftCeiling`: the share of the requests on routes with a TTFT SLO
that one idle replica of the variant they went to answers within it. No number of replicas
beats it (all but a few requests in a million on the conversation trace, every one on
`long-prompts`, 98% beyond the ceiling); `ttftGapToCeiling` is what the policy loses on top
of it.

    python -m bench.policy       # writes bench/results/policy.json, prints a table
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import random
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from modelfleet.api.load import load_resources
from modelfleet.render.desired import desired
from modelfleet.render.inputs import FleetInputs
from modelfleet_testbed.sim.baselines import baseline_pool
from modelfleet_testbed.sim.batching import BatchEngine, FirstToken
from modelfleet_testbed.sim.replica_set import EngineConfig
from modelfleet_testbed.sim.run import Simulation, SimulationOptions, engine_configs, simulate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "policy.json"
SAMPLES = ROOT / "manifests" / "samples"
CONVERSATION = ROOT / "data" / "traces" / "azure-llm-2023-conv.csv"
MONDAY = datetime.fromisoformat("2026-01-05T00:00:00+08:00")  # in the pool's zone
DAYS = 2
SEED = 1
TARGETS = {"ttft": 0.99, "e2e": 0.99, "static_peak_share": 0.40}
# Log-normal prompt and answer lengths of the synthetic traces (a trace of `requests`
# arrivals at `rate`, which simulate stretches over the days). `prompt_max` None: the
# longest prompt every route's backends prefill within its TTFT SLO when idle.
LONG_PROMPTS = {"requests": 20_000, "rate": 5.0, "prompt_median": 3000, "prompt_sigma": 0.7,
                "prompt_max": None, "output_median": 13, "output_sigma": 1.0}  # fmt: skip
BEYOND_CEILING = {"requests": 20_000, "rate": 5.0, "prompt_median": 6000, "prompt_sigma": 0.5,
                  "prompt_max": 28_000, "output_median": 120, "output_sigma": 0.6}  # fmt: skip
CASES: dict[str, dict[str, Any]] = {
    "conversation": {"rate": 24.0, "trace": "the Azure LLM 2023 conversation trace",
                     "judged": True},
    "long-prompts": {"rate": 12.0, "trace": "synthetic long prompts, each servable within "
                     "its TTFT SLO (TTFT binds)", "prompts": LONG_PROMPTS, "judged": True},
    "beyond-ceiling": {"rate": 4.0, "trace": "synthetic longer prompts, some past what any "
                       "replica prefills within the TTFT SLO", "prompts": BEYOND_CEILING,
                       "judged": False},
}  # fmt: skip


def long_prompt_trace(path: Path, spec: dict[str, Any], prompt_max: int, seed: int = SEED) -> Path:
    """A CSV trace (timestamp, input_tokens, output_tokens) of Poisson arrivals with long,
    log-normal prompts (none over `prompt_max`) and short answers; simulate stretches it
    over the days."""
    rng = random.Random(f"long-prompts:{seed}")
    t = 0.0
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["timestamp", "input_tokens", "output_tokens"])
        for _ in range(spec["requests"]):
            t += rng.expovariate(spec["rate"])
            prompt = rng.lognormvariate(math.log(spec["prompt_median"]), spec["prompt_sigma"])
            output = rng.lognormvariate(math.log(spec["output_median"]), spec["output_sigma"])
            out.writerow([f"{t:.3f}", min(prompt_max, round(prompt)), max(1, round(output))])
    return path


def servable_prompt_limit() -> int:
    """The longest prompt every variant a route with a TTFT SLO sends to (its backends and
    the degrade rules' fallbacks for them) prefills within that SLO when idle."""
    resources = load_resources([SAMPLES])
    configs = engine_configs(resources.pools[0], {})
    policy = resources.policies[0]
    limits = []
    for route in policy.spec.routes:
        if route.slo is None or route.slo.ttft_seconds is None:
            continue
        variants = {backend.variant for backend in route.backends}
        variants |= {rule.fallback for rule in policy.spec.degrade if rule.variant in variants}
        limits += [longest_prompt_within(configs[v], route.slo.ttft_seconds) for v in variants]
    return min(limits)


def static_peak_gpus() -> int:
    """GPUs the static-peak baseline holds all the time: the planner's plan for it."""
    resources = load_resources([SAMPLES])
    pool = baseline_pool(resources.pools[0], "static-peak")
    result = desired(FleetInputs(now=MONDAY, pools=[pool], reservations=resources.reservations))
    return result.plans[(pool.namespace, pool.name)].gpus_planned


def idle_ttft(config: EngineConfig, prompt_tokens: int) -> float:
    """Time to first token of one request alone on an idle replica."""
    engine = BatchEngine(config.profile, config.max_num_seqs, config.max_num_batched_tokens)
    engine.submit("alone", prompt_tokens, 1, 0.0)
    return next(e.at for e in engine.advance_to(math.inf) if isinstance(e, FirstToken))


def longest_prompt_within(config: EngineConfig, seconds: float, limit: int = 1 << 17) -> int:
    """The longest prompt an idle replica answers within `seconds` (TTFT grows with it)."""
    low, high = 0, limit
    while low < high:
        middle = (low + high + 1) // 2
        if idle_ttft(config, middle) <= seconds:
            low = middle
        else:
            high = middle - 1
    return low


def ttft_ceiling(simulation: Simulation, run: str) -> float | None:
    """The TTFT attainment no scaling can beat with this run's routing: the share of the
    requests on routes with a TTFT SLO that one replica, idle, answers within it (a prompt
    longer than that misses however many replicas there are)."""
    pool = simulation.pools[run]
    result = simulation.results[run]
    configs = engine_configs(pool, {})
    policy = load_resources([SAMPLES]).policies[0]
    slos = [r.slo.ttft_seconds if r.slo else None for r in policy.spec.routes]
    limits: dict[tuple[int, int], int] = {}
    prompts = simulation.workload.arrivals.prompt_tokens
    held = within = 0
    for i in range(len(prompts)):
        route, variant = result.route_of[i], result.variant_of[i]
        if route < 0 or variant < 0 or slos[route] is None:
            continue
        key = (route, variant)
        if key not in limits:
            config = configs[result.variants[variant]]
            limits[key] = longest_prompt_within(config, slos[route])
        held += 1
        within += prompts[i] <= limits[key]
    return round(within / held, 6) if held else None


def _case(name: str, trace: Path, trace_format: str | None, static_gpus: int) -> dict[str, Any]:
    options = SimulationOptions(
        files=[SAMPLES],
        trace=trace,
        trace_format=trace_format,
        days=DAYS,
        diurnal="office",
        rate=CASES[name]["rate"],
        start=MONDAY,
        seed=SEED,
        compare=["forecast-slo"],
    )
    wall = time.perf_counter()
    simulation = simulate(options)
    wall = time.perf_counter() - wall
    runs = {}
    for run in simulation.report["runs"]:
        days = []
        for day in run["days"]:
            static = static_gpus * day["hours"]
            share = day["gpuHours"] / static
            attainment = day["sloAttainment"]
            days.append(
                {
                    "date": day["date"],
                    "requests": day["requests"],
                    "gpuHours": round(day["gpuHours"], 1),
                    "staticPeakGpuHours": round(static, 1),
                    "staticPeakShare": round(share, 4),
                    "sloAttainment": attainment,
                    "rampHours": [h["hour"] for h in day["rampHours"]],
                    "rampAttainment": day["rampAttainment"],
                }
            )
        second = days[-1]
        checks = {
            "ttft": second["sloAttainment"]["ttft"] >= TARGETS["ttft"],
            "e2e": second["sloAttainment"]["e2e"] >= TARGETS["e2e"],
        }
        ceiling = ttft_ceiling(simulation, run["name"])
        if run["name"] == "forecast-slo":
            checks["static_peak_share"] = second["staticPeakShare"] <= TARGETS["static_peak_share"]
        runs[run["name"]] = {
            "description": run["description"],
            "gpuHours": run["gpuHours"],
            "sloAttainment": run["sloAttainment"],
            "days": days,
            "secondDayMeets": checks,
            "ttftCeiling": ceiling,
            "ttftGapToCeiling": None
            if ceiling is None
            else round(ceiling - second["sloAttainment"]["ttft"], 6),
            "variants": {
                v: {"gpuHours": d["gpuHours"], "peakReplicas": d["peakReplicas"]}
                for v, d in run["variants"].items()
            },
        }
    return {
        "trace": CASES[name]["trace"],
        "rate": CASES[name]["rate"],
        "judged": CASES[name]["judged"],
        "requests": simulation.report["replay"]["requests"],
        "wall_seconds": round(wall, 1),
        "runs": runs,
    }


def run() -> dict[str, Any]:
    """Measure, write bench/results/policy.json, and return what was written."""
    static_gpus = static_peak_gpus()
    servable = servable_prompt_limit()
    traces: dict[str, Any] = {}
    cases = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            if "prompts" not in case:
                cases[name] = _case(name, CONVERSATION, None, static_gpus)
                continue
            spec = case["prompts"]
            prompt_max = spec["prompt_max"] or servable
            traces[name] = {**spec, "prompt_max": prompt_max}
            trace = long_prompt_trace(Path(tmp) / f"{name}.csv", spec, prompt_max)
            cases[name] = _case(name, trace, "csv", static_gpus)
    result = {
        "benchmark": "policy",
        "what": "modelfleet simulate of a Monday and Tuesday (office day curve, seed 1) with "
        "the samples as given (policy) and without schedules with forecast: {} on every "
        "variant (forecast-slo); targets on the second day, for the cases judged (a case "
        "whose TTFT ceiling is under the target is reported, not judged)",
        "targets": TARGETS,
        "static_peak_gpus": static_gpus,
        "servable_prompt_tokens": servable,
        "synthetic_traces": traces,
        "cases": cases,
        "all_met": all(
            all(run["secondDayMeets"].values())
            for case in cases.values()
            if case["judged"]
            for run in case["runs"].values()
        ),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def headline(result: dict[str, Any]) -> str:
    run = result["cases"]["conversation"]["runs"]["forecast-slo"]["days"][-1]
    return (
        f"forecast-slo day 2: TTFT {_pct(run['sloAttainment']['ttft'])}, e2e "
        f"{_pct(run['sloAttainment']['e2e'])} at {_pct(run['staticPeakShare'])} of static "
        f"peak; all targets {'met' if result['all_met'] else 'NOT met'}"
    )


def print_table(result: dict[str, Any]) -> None:
    row = "{:<14} {:<14} {:<11} {:>10} {:>9} {:>9} {:>9}  {}"
    print(row.format("case", "run", "date", "GPU-hours", "of peak", "TTFT", "e2e", "meets"))
    for case_name, case in result["cases"].items():
        for run_name, run in case["runs"].items():
            for day in run["days"]:
                meets = (
                    ", ".join(k for k, ok in run["secondDayMeets"].items() if not ok) or "yes"
                    if day is run["days"][-1]
                    else ""
                )
                if meets and meets != "yes":
                    meets = "NO: " + meets
                if meets and not case["judged"]:
                    meets = f"not judged: TTFT ceiling {_pct(run['ttftCeiling'])}"
                print(
                    row.format(
                        case_name,
                        run_name,
                        day["date"],
                        f"{day['gpuHours']:,.0f}",
                        _pct(day["staticPeakShare"]),
                        _pct(day["sloAttainment"]["ttft"]),
                        _pct(day["sloAttainment"]["e2e"]),
                        meets,
                    )
                )


if __name__ == "__main__":
    print_table(run())
    print(RESULTS)
