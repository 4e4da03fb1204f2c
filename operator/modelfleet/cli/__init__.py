"""The `modelfleet` command: one module per subcommand, each with `register(commands)`.

Only the chosen subcommand's module is imported, so `modelfleet run` loads the operator and
nothing that `plan` or the test bed need. The test bed (an extra) adds its subcommands
through the `modelfleet.commands` entry points; the product never imports it.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

PRODUCT_COMMANDS = {
    "plan": "modelfleet.cli.plan",
    "render": "modelfleet.cli.render",
    "run": "modelfleet.cli.run",
    "gateway-sync": "modelfleet.cli.gateway_sync",
    "crds": "modelfleet.cli.crds",
}
PLUGIN_GROUP = "modelfleet.commands"
TESTBED_EXTRA = "testbed"


def available_commands() -> dict[str, str]:
    """Subcommand name -> the module that registers it."""
    commands = dict(PRODUCT_COMMANDS)
    for entry in entry_points(group=PLUGIN_GROUP):
        commands.setdefault(entry.name, entry.value)
    return commands


def _register_missing(commands: argparse._SubParsersAction, name: str, error: ImportError):
    """A test-bed subcommand whose package or dependencies are not installed."""

    def explain(_: argparse.Namespace) -> int:
        print(
            f"error: `modelfleet {name}` is part of the test bed, which is not installed "
            f"here ({error}): pip install 'modelfleet[{TESTBED_EXTRA}]' "
            "(from a checkout: make setup)",
            file=sys.stderr,
        )
        return 2

    # Whatever follows (--help included) is taken as is: the answer is the same.
    parser = commands.add_parser(
        name, help=f"(needs the {TESTBED_EXTRA} extra)", add_help=False, prefix_chars="\0"
    )
    parser.add_argument("rest", nargs="*")
    parser.set_defaults(handler=explain)


def _chosen(argv: Sequence[str], names: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in names else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: the chosen subcommand in full, the others by name only
    (all of them in full when none is chosen, for `modelfleet --help`)."""
    parser = argparse.ArgumentParser(
        prog="modelfleet",
        description="Run and plan a pooled GPU fleet of vLLM model servers behind one gateway.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = available_commands()
    chosen = _chosen(sys.argv[1:] if argv is None else argv, list(commands))
    for name, module_name in commands.items():
        if chosen is not None and name != chosen:
            subparsers.add_parser(name)
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            if name in PRODUCT_COMMANDS:
                raise
            _register_missing(subparsers, name, err)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    return int(args.handler(args) or 0)


def console_main() -> None:
    """The `modelfleet` command. A pipe closed by `head` ends it quietly, as other Unix
    tools do (only here: tests call main() inside a process that must survive EPIPE)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
