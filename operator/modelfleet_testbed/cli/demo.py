"""`modelfleet demo`: the whole loop on an emulated local cluster (see modelfleet_testbed.demo)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the operator, gateway and simulated GPUs locally through a compressed day",
    )
    parser.add_argument(
        "--duration", type=float, default=120, help="wall seconds for the whole day (default 120)"
    )
    parser.add_argument("--no-ui", action="store_true", help="plain log lines instead of a view")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the gateway up after the day and print a curl command to try",
    )
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="report directory")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from modelfleet.cli.logs import configure_logging
    from modelfleet_testbed.local.processes import MissingBinary

    if args.duration < 30:
        print("error: --duration must be at least 30 seconds", file=sys.stderr)
        return 2
    # The operator and sidecar log to their own files; keep this terminal for the demo.
    configure_logging("WARNING")
    from modelfleet_testbed.demo.run import run_demo

    try:
        run_demo(args.duration, not args.no_ui, args.keep_running, args.out)
    except MissingBinary as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopped; every process the demo started has ended", file=sys.stderr)
        return 130
    return 0
