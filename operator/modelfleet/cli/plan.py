"""`modelfleet plan`: the operator's decision for a moment, offline."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from modelfleet.api.load import InputError, InvalidInput, load_resources
from modelfleet.api.modelpool import ModelPoolStatus
from modelfleet.api.routingpolicy import RoutingPolicyStatus
from modelfleet.observe.observation import MetricsInput, load_metrics
from modelfleet.render.desired import desired
from modelfleet.render.inputs import FleetInputs, Key
from modelfleet.render.plan_document import (
    plan_document,
    read_plan_document,
    read_previous_routes,
)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "plan",
        help="what the operator would decide for these resources at a moment (no cluster)",
        description="Plan replicas (and routing) for ModelPools, Reservations and "
        "RoutingPolicies read from YAML, at --at, from --metrics observations.",
    )
    add_input_arguments(parser)
    parser.add_argument(
        "--at", type=parse_instant, help="ISO-8601 instant to plan for (default: now)"
    )
    parser.add_argument("--previous", type=Path, help="an earlier `plan -o json` output")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(handler=run)


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="FILE_OR_DIR",
        help="YAML file or directory of them (repeatable)",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        help="observations {variants: {ns/pool/variant: {...}}}, and what tenants used: "
        "{usage: {ns/pool: [rows]}, budgetUsage: {ns/policy: {day: [rows]}}} (docs/operator.md)",
    )


def parse_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not ISO-8601: use e.g. 2026-11-27T10:00:00+08:00"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset: add one, e.g. {text}+08:00 or {text}Z"
        )
    return value


def load_previous(
    path: Path | None,
) -> tuple[dict[Key, ModelPoolStatus], dict[Key, RoutingPolicyStatus]]:
    """The pools' statuses and the policies' routes an earlier plan left."""
    if path is None:
        return {}, {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InvalidInput([InputError(str(path), "previous plan", "", str(err))]) from None
    return read_plan_document(data, str(path)), read_previous_routes(data, str(path))


def run(args: argparse.Namespace) -> int:
    at = args.at or datetime.now(UTC)
    try:
        resources = load_resources(args.files)
        metrics = load_metrics(args.metrics, at) if args.metrics else MetricsInput()
        previous, routes = load_previous(args.previous)
    except InvalidInput as err:
        print_errors(err)
        return 2
    pools = [
        pool.model_copy(update={"status": previous[(pool.namespace, pool.name)]})
        if (pool.namespace, pool.name) in previous
        else pool
        for pool in resources.pools
    ]
    policies = [
        policy.model_copy(update={"status": routes[(policy.namespace, policy.name)]})
        if (policy.namespace, policy.name) in routes
        else policy
        for policy in resources.policies
    ]
    result = desired(
        FleetInputs(
            now=at,
            pools=pools,
            reservations=resources.reservations,
            policies=policies,
            observations=metrics.observations,
            usage=metrics.usage,
            budget_usage=metrics.budget_usage,
        )
    )
    document = plan_document(result)
    if args.output == "json":
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        from modelfleet.cli.plan_table import print_plan_tables

        print_plan_tables(document)
    return 0


def print_errors(err: InvalidInput) -> None:
    print(f"error: {len(err.errors)} problem(s) in the input:", file=sys.stderr)
    for problem in err.errors:
        print(f"  {problem}", file=sys.stderr)
