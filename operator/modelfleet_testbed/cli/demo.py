"""`modelfleet demo`: the whole loop on an emulated local cluster (see modelfleet_testbed.demo)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Runs an emulated Kubernetes API server, simulated GPUs, Prometheus, the operator and the
Envoy gateway on 127.0.0.1, and plays one weekday of traffic through the gateway.

Clocks: during the day the operator's clock runs 86400/--duration times faster than the
wall clock (720x with the default 120 s), so schedules fire while you watch. Without
--keep-running the demo ends after the day. With --keep-running the fleet then switches
to the wall clock (the operator restarts on real time): what you apply with kubectl is
scheduled at real times, status times and metric ages are real, and `modelfleet plan`
predicts the Deployments the operator keeps.

Ctrl-C (SIGINT) or SIGTERM stops the demo and every process it started."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="run the operator, gateway and simulated GPUs locally through a compressed day",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=120,
        help="wall seconds for the whole day, on a clock 86400/DURATION times faster "
        "(default 120: 720x)",
    )
    parser.add_argument("--no-ui", action="store_true", help="plain log lines instead of a view")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the day, keep the fleet up on the wall clock and print what drives it: "
        "export KUBECONFIG=..., the API server, Prometheus and gateway URLs, the API keys",
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
    from modelfleet_testbed.demo.signals import DemoStopped

    try:
        run_demo(args.duration, not args.no_ui, args.keep_running, args.out)
    except MissingBinary as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except DemoStopped as stopped:
        print(f"\nstopped ({stopped}); every process the demo started has ended", file=sys.stderr)
        return stopped.exit_code
    return 0
