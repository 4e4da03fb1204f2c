"""The `modelfleet` command: one module per subcommand, registered here."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from . import crds, demo, gateway_sync, plan, render, run, simulate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelfleet",
        description="Run and plan a pooled GPU fleet of vLLM model servers behind one gateway.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (plan, render, run, gateway_sync, simulate, demo, crds):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


def console_main() -> None:
    """The `modelfleet` command. A pipe closed by `head` ends it quietly, as other Unix
    tools do (only here: tests call main() inside a process that must survive EPIPE)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())


if __name__ == "__main__":
    console_main()
