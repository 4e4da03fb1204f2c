"""Run the benchmarks: `python -m bench [NAME...]` (all of them by default).

A benchmark is a module in bench/ with a `run() -> dict` that writes
bench/results/<name>.json and returns what it wrote. A module names the external programs
it needs as functions `<tool>_binary()` that return the program's path or raise; they are
called first, and a benchmark whose program is missing is skipped with their message (as
is one whose run() raises bench.MissingTool). Exit status 1 if a benchmark failed.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import bench
from bench import MissingTool

RESULTS = Path(bench.__file__).parent / "results"


@dataclass
class Outcome:
    name: str
    status: str  # ok | skipped | failed
    seconds: float
    detail: str


def discover() -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Every bench module with a run() function by name, and the traceback of each module
    that could not be imported (one broken benchmark does not stop the others)."""
    found, broken = {}, {}
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"bench.{info.name}")
        except Exception:
            broken[info.name] = traceback.format_exc()
            continue
        if callable(getattr(module, "run", None)):
            found[info.name] = module
    return found, broken


def missing_tool(module: ModuleType) -> str | None:
    """The message of the first `<tool>_binary()` lookup that fails, if any."""
    for name in sorted(vars(module)):
        lookup = getattr(module, name)
        if name.endswith("_binary") and callable(lookup):
            try:
                lookup()
            except (RuntimeError, OSError) as err:
                return f"{name.removesuffix('_binary')} is missing: {err}"
    return None


# For modules that do not define their own headline(result).
HEADLINES: dict[str, Callable[[dict[str, Any]], str]] = {}


def headline(name: str, module: ModuleType, result: dict[str, Any]) -> str:
    describe = getattr(module, "headline", None) or HEADLINES.get(name)
    if describe is None:
        return str(RESULTS / f"{name}.json")
    try:
        return describe(result)
    except (KeyError, TypeError, ValueError) as err:
        return f"(cannot summarize: {err!r}; see {RESULTS / f'{name}.json'})"


def run_one(name: str, module: ModuleType) -> Outcome:
    started = time.monotonic()
    missing = missing_tool(module)
    if missing:
        return Outcome(name, "skipped", 0.0, missing)
    print(f"== {name}", flush=True)
    try:
        result = module.run()
    except MissingTool as err:
        return Outcome(name, "skipped", time.monotonic() - started, str(err))
    except Exception:
        traceback.print_exc()
        return Outcome(name, "failed", time.monotonic() - started, "see the traceback above")
    print_table = getattr(module, "print_table", None)
    if callable(print_table):
        print_table(result)
    print(RESULTS / f"{name}.json", flush=True)
    return Outcome(name, "ok", time.monotonic() - started, headline(name, module, result))


def summary(outcomes: list[Outcome]) -> str:
    row = "{:<10} {:<8} {:>8}  {}"
    lines = [row.format("benchmark", "status", "seconds", "headline")]
    for o in outcomes:
        seconds = f"{o.seconds:.0f}" if o.status != "skipped" else "-"
        lines.append(row.format(o.name, o.status, seconds, o.detail))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    available, broken = discover()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run: {', '.join([*available, *broken])}",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(available) - set(broken))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}: choose from {', '.join(available)}")
    outcomes = []
    for name in args.names or sorted([*available, *broken]):
        if name in broken:
            print(f"== {name}\n{broken[name]}", file=sys.stderr)
            outcomes.append(Outcome(name, "failed", 0.0, "cannot import it: see above"))
        else:
            outcomes.append(run_one(name, available[name]))
    print()
    print(summary(outcomes))
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
