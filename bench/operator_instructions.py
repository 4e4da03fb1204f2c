"""Operator cycle cost in instructions: bench/operator.py's cycles, counted by valgrind
instead of timed.

The CPU seconds of bench/operator.py are as much the host's as the operator's: on these
shared machines the same commit measures tens of percent apart minutes apart. The number of
instructions a cycle executes does not move with the host (the same code on the same
inputs counts the same to a few parts in a thousand), so a change to the core can be judged
on it alone, before a timed run says what it is in seconds.

The operator's work only: the cycles run without bench/operator.py's diff and counts.
Each count is the difference of two whole processes' counts (valgrind's cachegrind, no
cache simulation), each process loading the same fleet (built once, here, and pickled:
built under valgrind it would take many minutes), running the first cycle and one steady
one, then:

    base      nothing more
    steady    three steady refreshes (10% of the observations moved each)
    unready   the worst cycle's first half: a variant every policy routes to is unready
              in every pool (every gateway's routes change)
    back      that, then the variant back (every gateway's routes change again)

so that a steady cycle is (steady - base) / 3 and the worst cycles are unready - base and
back - unready. Every process does the same work outside the counted cycles (the
observations of every mode are made in each), hash randomization is off, and so is the
cycle collector (whether a collection falls in a counted cycle would make the count jump).

    python -m bench.operator_instructions    # writes bench/results/operator-instructions.json

Needs valgrind (Debian: apt-get install valgrind); `python -m bench` skips it without.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import MissingTool

from .operator import (
    CHANGED_SHARE,
    REPO,
    SEED,
    WORST_VARIANT,
    CycleOutput,
    OperatorMemory,
    fresh_python_environment,
    machine,
    run_cycle,
    stored_fleet,
    unready_everywhere,
)
from .operator_fleet import REFRESH_SECONDS, next_observations, usage_reads

RESULTS = REPO / "bench" / "results" / "operator-instructions.json"
# Under valgrind a cycle runs some 40 times slower: 100 pools count in about a minute a
# process. (Counts compare at the same scale: caches shared between pools, the gateway
# parts' store among them, make a pool's share of a cycle depend on how many there are.)
POOLS = 100
STEADY_CYCLES = 3
MODES = ("base", "steady", "unready", "back")
CHILD_TIMEOUT_SECONDS = 3600
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def valgrind_binary() -> str:
    found = shutil.which("valgrind")
    if found is None:
        raise MissingTool("valgrind not found: install it (Debian: apt-get install valgrind)")
    return found


def cycles(fleet_file: Path, mode: str, seed: int) -> None:
    """What one counted process runs (see the module doc)."""
    gc.disable()
    fleet = pickle.loads(fleet_file.read_bytes())
    memory = OperatorMemory()
    before, _, _ = run_cycle(
        fleet, memory, fleet.observations, fleet.now, CycleOutput(), bookkeeping=False
    )
    at = fleet.now
    moved = [fleet.observations]
    for number in range(1 + STEADY_CYCLES):
        later = at + timedelta(seconds=REFRESH_SECONDS * (number + 1))
        moved.append(next_observations(moved[-1], CHANGED_SHARE, seed + 1 + number, later)[0])
    warm = moved[1]
    unready = unready_everywhere(warm, WORST_VARIANT)
    plan = {
        "base": [],
        "steady": moved[2:],
        "unready": [unready],
        "back": [unready, warm],
    }[mode]
    # The usage every mode reads, made in every process (not the operator's work).
    read = {id(observations): usage_reads(fleet, observations) for observations in moved}
    read[id(unready)] = usage_reads(fleet, unready)
    for observations in [warm, *plan]:
        at += timedelta(seconds=REFRESH_SECONDS)
        usage = read[id(observations)]
        before, _, _ = run_cycle(
            fleet, memory, observations, at, before, bookkeeping=False, usage=usage
        )


def instructions_of(valgrind_output: str) -> int:
    """The instruction count in cachegrind's summary."""
    found = _REFS.search(valgrind_output)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{valgrind_output[-2000:]}")
    return int(found.group(1).replace(",", ""))


def _counted(valgrind: str, fleet_file: Path, mode: str, seed: int) -> int:
    command = [
        valgrind,
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.operator_instructions",
        "--cycles",
        mode,
        "--fleet",
        str(fleet_file),
        "--seed",
        str(seed),
    ]
    env = {**fresh_python_environment(), "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS
    )
    if done.returncode != 0:
        raise RuntimeError(f"the counted {mode} process failed:\n{done.stderr[-4000:]}")
    return instructions_of(done.stderr)


def per_cycle(counts: dict[str, int], pools: int) -> dict[str, Any]:
    """Each kind of cycle's instructions from the processes' counts (see the module doc)."""
    steady = round((counts["steady"] - counts["base"]) / STEADY_CYCLES)
    unready = counts["unready"] - counts["base"]
    back = counts["back"] - counts["unready"]
    worst = max(unready, back)
    return {
        "steady": {"instructions": steady, "per_pool": round(steady / pools)},
        "worst": {"instructions": worst, "per_pool": round(worst / pools)},
        "worst_directions": {"unready": unready, "back": back},
    }


def run(pools: int = POOLS, seed: int = SEED, results: Path = RESULTS) -> dict[str, Any]:
    """Count each mode in its own process under valgrind (as many at once as there are
    processors), write `results` and return it."""
    valgrind = valgrind_binary()
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelfleet-bench-") as scratch:
        fleet_file = Path(scratch) / "fleet.pickle"
        fleet_file.write_bytes(pickle.dumps(stored_fleet(pools, seed)))
        with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as workers:
            counted = {
                mode: workers.submit(_counted, valgrind, fleet_file, mode, seed) for mode in MODES
            }
            counts = {mode: future.result() for mode, future in counted.items()}
    version = subprocess.run(
        [valgrind, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    result = {
        "benchmark": "operator-instructions",
        "what": "instructions of the operator's refreshes (bench/operator.py's cycles: "
        "parse, desired, write; not that benchmark's diff and counts) counted by valgrind, "
        "independent of the host's speed; `steady`: a refresh with "
        f"{CHANGED_SHARE:.0%} of the observations moved; `worst`: the slower of the two "
        "cycles in which every gateway's routes change",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        "valgrind": version,
        "scale": {"pools": pools, "seed": seed},
        "process_counts": counts,
        **per_cycle(counts, pools),
        "process_wall_seconds": round(time.perf_counter() - wall, 2),
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator_instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pools", type=int, default=POOLS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--cycles", choices=MODES, help="run one counted process (internal)")
    parser.add_argument("--fleet", type=Path, help="the pickled fleet (internal)")
    args = parser.parse_args(argv)
    if args.cycles:
        cycles(args.fleet, args.cycles, args.seed)
        return 0
    try:
        result = run(args.pools, args.seed)
    except MissingTool as missing:
        print(missing, file=sys.stderr)
        return 2
    steady, worst = result["steady"], result["worst"]
    print(
        f"{args.pools} pools: steady {steady['instructions'] / 1e6:,.1f} M instructions "
        f"({steady['per_pool'] / 1e6:.2f} M a pool), worst {worst['instructions'] / 1e6:,.1f} M "
        f"({worst['per_pool'] / 1e6:.2f} M a pool)"
    )
    print(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
