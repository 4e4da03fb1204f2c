"""`modelfleet simulate`: replay a request trace through the operator's planner and router
in virtual time, and report what the fleet policy would cost and how it would serve."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from modelfleet.api.load import InputError, InvalidInput
from modelfleet.cli.plan import parse_instant, print_errors
from modelfleet_testbed.sim.baselines import BASELINES, parse_compare
from modelfleet_testbed.sim.diurnal import PROFILES
from modelfleet_testbed.sim.outcome import BALANCES
from modelfleet_testbed.sim.run import Simulation, SimulationOptions, simulate
from modelfleet_testbed.sim.traces import FORMATS

DEFAULT_OUT = Path("simulate-report")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "simulate",
        help="replay a request trace through the real scaling code: cost, SLOs, scaling",
        description="Replay a request trace (Azure LLM 2023 CSV, Mooncake JSONL, plain CSV, "
        "or synthetic) against a ModelPool and its RoutingPolicy in virtual time, through the "
        "operator's own planner and router, on simulated vLLM replicas; write report.json, "
        "report.md, series.csv and PNG plots to --out.",
    )
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE_OR_DIR",
        help="YAML with the ModelPool, its RoutingPolicy and Reservations (repeatable)",
    )
    parser.add_argument("--trace", type=Path, metavar="FILE", help="the request trace")
    parser.add_argument(
        "--trace-format",
        choices=(*FORMATS, "synthetic"),
        help="default: from the file (.jsonl: mooncake; CSV with TIMESTAMP,ContextTokens,"
        "GeneratedTokens: azure; other CSV: timestamp,input_tokens,output_tokens"
        "[,task_type,tenant,priority]); synthetic: Poisson arrivals, no file",
    )
    parser.add_argument(
        "--days", type=float, metavar="N", help="replay length in days (default: one trace pass)"
    )
    parser.add_argument(
        "--diurnal",
        metavar="PROFILE",
        help=f"day curve over the replay: {', '.join(PROFILES)}, or 24 comma-separated "
        "hourly factors (default: flat)",
    )
    parser.add_argument(
        "--rate", type=float, metavar="R", help="mean requests/s (default: the trace's own)"
    )
    parser.add_argument(
        "--start",
        type=parse_instant,
        metavar="TIME",
        help="when the replay starts, ISO-8601 with offset (default: the trace's first "
        "request, at midnight in the pool's zone with --days; else 2026-01-05 00:00)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (0)")
    parser.add_argument(
        "--mix", metavar="ROUTE=SHARE,...", help="shares of the policy's routes (see docs)"
    )
    parser.add_argument("--tenants", metavar="TENANT=SHARE,...", help="shares of tenants")
    parser.add_argument(
        "--priorities",
        metavar="VALUE=SHARE,...",
        help="shares of x-priority values ('none': no header)",
    )
    parser.add_argument(
        "--compare",
        default="",
        metavar="LIST",
        help=f"baselines on the same requests: {','.join(BASELINES)}",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR")
    parser.add_argument("--pool", metavar="NS/NAME", help="which ModelPool, if several")
    parser.add_argument(
        "--scrape-lag",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="age of the queue metrics the planner sees (15)",
    )
    parser.add_argument(
        "--termination-grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long a removed replica may finish its requests (30, Kubernetes' default)",
    )
    parser.add_argument(
        "--balance",
        choices=BALANCES,
        default="random",
        help="random: a random ready replica (kube-proxy); gateway-queue: one queue per "
        "variant at the gateway, then the least busy replica with a free batch slot",
    )
    parser.add_argument(
        "--gpu-profile",
        action="append",
        default=[],
        metavar="VARIANT=PROFILE",
        help="speed profile of a variant (default: nearest by model size)",
    )
    parser.add_argument(
        "--plans-log",
        type=Path,
        metavar="FILE",
        help="write each cycle's observations and `plan -o json` document (JSON lines)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _profiles(pairs: list[str]) -> dict[str, str]:
    chosen = {}
    for pair in pairs:
        variant, sep, profile = pair.partition("=")
        if not sep or not variant or not profile:
            raise InvalidInput([InputError("--gpu-profile", "", pair, "expected VARIANT=PROFILE")])
        chosen[variant] = profile
    return chosen


def options_from(args: argparse.Namespace) -> SimulationOptions:
    try:
        compare = parse_compare(args.compare)
    except ValueError as err:
        raise InvalidInput([InputError("--compare", "", "", str(err))]) from None
    return SimulationOptions(
        files=args.files,
        trace=args.trace,
        trace_format=args.trace_format,
        days=args.days,
        diurnal=args.diurnal,
        rate=args.rate,
        start=args.start,
        seed=args.seed,
        mix=args.mix,
        tenants=args.tenants,
        priorities=args.priorities,
        compare=compare,
        pool=args.pool,
        scrape_lag=args.scrape_lag,
        termination_grace=args.termination_grace,
        balance=args.balance,
        gpu_profiles=_profiles(args.gpu_profile),
        log_plans=args.plans_log is not None,
    )


def _run_with_progress(options: SimulationOptions, show: bool) -> Simulation:
    if not show:
        return simulate(options)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    runs = ["policy", *options.compare]
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% of virtual time"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks = {name: bar.add_task(f"replaying {name}", total=1.0) for name in runs}

        def progress(name: str, t: float, duration: float) -> None:
            bar.update(tasks[name], completed=min(1.0, t / duration))

        simulation = simulate(options, progress)
        for task in tasks.values():
            bar.update(task, completed=1.0)
    return simulation


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    try:
        options = options_from(args)
        simulation = _run_with_progress(options, not args.quiet and sys.stderr.isatty())
    except InvalidInput as err:
        print_errors(err)
        return 2
    from modelfleet_testbed.sim.report import write_report

    paths = write_report(args.out, simulation.report, simulation.results, simulation.start)
    if not args.no_plots:
        from modelfleet_testbed.sim.plots import write_plots

        paths += write_plots(
            args.out,
            simulation.results,
            simulation.workload,
            simulation.start.isoformat(),
            simulation.hours,
        )
    if args.plans_log is not None:
        args.plans_log.parent.mkdir(parents=True, exist_ok=True)
        with args.plans_log.open("w") as handle:
            for entry in simulation.results["policy"].plans:
                handle.write(json.dumps(entry) + "\n")
        paths.append(args.plans_log)
    _print_summary(simulation, time.perf_counter() - started)
    for path in paths:
        print(path)
    return 0


def _print_summary(simulation: Simulation, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    report = simulation.report
    replay = report["replay"]
    table = Table(
        title=f"ModelPool {report['pool']}: {replay['requests']:,} requests",
        caption=f"{replay['start']} .. {replay['end']}",
        title_justify="left",
        caption_justify="left",
    )
    for column in ("run", "GPU-hours", "pool cost", "served", "dropped", "TTFT SLO", "e2e SLO"):
        table.add_column(column, justify="right" if column != "run" else "left")

    def pct(value):
        return "-" if value is None else f"{100 * value:.1f}%"

    for entry in report["runs"]:
        table.add_row(
            entry["name"],
            f"{entry['gpuHours']:,.1f}",
            f"{entry['cost']['poolTotal']:,.2f}",
            f"{entry['requests']['served']:,}",
            f"{sum(entry['requests']['dropped'].values()):,}",
            pct(entry["sloAttainment"]["ttft"]),
            pct(entry["sloAttainment"]["e2e"]),
        )
    console = Console(width=120)
    console.print(table)
    console.print(f"simulated in {seconds:.1f} s")
