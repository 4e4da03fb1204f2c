"""`modelfleet simulate` speed: a week of the sample fleet at 2 requests/s on one core.

The Azure LLM 2023 conversation trace is stretched over 7 days by the office day curve at
a mean of 2 requests/s (about 1.2 M requests) and replayed through the planner and router
of the sample ModelPool and RoutingPolicy, with the report built (its files and plots are
not written). The target is under 60 s; the replay is single-threaded.

    python -m bench.simulate      # writes bench/results/simulate.json, prints a table
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from modelfleet_testbed.sim.run import SimulationOptions, simulate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "simulate.json"
TARGET_SECONDS = 60.0
DAYS = 7
RATE = 2.0


def run() -> dict[str, Any]:
    """Measure, write bench/results/simulate.json, and return what was written."""
    options = SimulationOptions(
        files=[ROOT / "manifests" / "samples"],
        trace=ROOT / "data" / "traces" / "azure-llm-2023-conv.csv",
        days=DAYS,
        diurnal="office",
        rate=RATE,
        seed=0,
    )
    wall, cpu = time.perf_counter(), time.process_time()
    simulation = simulate(options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = simulation.report
    policy = report["runs"][0]
    result = {
        "benchmark": "simulate",
        "what": f"modelfleet simulate of manifests/samples on the Azure LLM 2023 conversation "
        f"trace over {DAYS} days (office day curve, {RATE:g} requests/s), policy only, "
        "report built, no files written",
        "requests": report["replay"]["requests"],
        "virtual_seconds": report["replay"]["durationSeconds"],
        "planning_cycles": len(simulation.results["policy"].series),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "requests_per_wall_second": round(report["replay"]["requests"] / wall),
        "target_seconds": TARGET_SECONDS,
        "within_target": wall < TARGET_SECONDS,
        "served": policy["requests"]["served"],
        "gpu_hours": policy["gpuHours"],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        # Other work on the machine slows the replay; this says how busy it was.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    return result


def headline(result: dict[str, Any]) -> str:
    verdict = "within" if result["within_target"] else "OVER"
    return (
        f"{result['requests']:,} requests over {result['virtual_seconds'] / 86400:g} days in "
        f"{result['wall_seconds']:.1f} s ({verdict} the {result['target_seconds']:g} s target)"
    )


def print_table(result: dict[str, Any]) -> None:
    row = "{:<28} {:>14}"
    for key in (
        "requests",
        "planning_cycles",
        "wall_seconds",
        "cpu_seconds",
        "requests_per_wall_second",
        "within_target",
        "load_average_1m_at_end",
    ):
        print(row.format(key, str(result[key])))


if __name__ == "__main__":
    print_table(run())
    print(RESULTS)
