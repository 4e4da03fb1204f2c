"""`modelfleet plan`: the operator's decision for a moment, offline."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelfleet.api.load import InputError, InvalidInput, Resources, load_resources
from modelfleet.observe.observation import Observations, load_observations
from modelfleet.plan.routing import plan_routing, routing_table_json
from modelfleet.plan.scaling.planner import plan_pool
from modelfleet.plan.scaling.serialize import pool_plan_json, previous_plans_from_json
from modelfleet.plan.scaling.types import PoolPlan, PreviousPlan


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
        "--metrics", type=Path, help="observations: {variants: {ns/pool/variant: {...}}}"
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


def load_previous(path: Path | None) -> dict[tuple[str, str], PreviousPlan]:
    if path is None:
        return {}
    try:
        return previous_plans_from_json(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ValueError, KeyError, TypeError) as err:
        raise InvalidInput([InputError(str(path), "previous plan", "", str(err))]) from None


def plan_all(
    resources: Resources,
    observations: Observations,
    at: datetime,
    previous: dict[tuple[str, str], PreviousPlan],
) -> list[PoolPlan]:
    return [
        plan_pool(
            pool,
            resources.reservations_for(pool),
            observations,
            at,
            previous.get((pool.namespace, pool.name)),
        )
        for pool in resources.pools
    ]


def routing_all(resources: Resources, observations: Observations) -> list[dict[str, Any]]:
    tables = []
    for policy in resources.policies:
        pool = resources.pool(policy.namespace, policy.spec.pool)
        assert pool is not None, "load_resources checked every reference"
        tables.append(routing_table_json(plan_routing(policy, pool, observations)))
    return tables


def plan_document(
    at: datetime, plans: list[PoolPlan], routing: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"at": at.isoformat(), "pools": [pool_plan_json(p) for p in plans], "routing": routing}


def run(args: argparse.Namespace) -> int:
    at = args.at or datetime.now(UTC)
    try:
        resources = load_resources(args.files)
        observations = load_observations(args.metrics, at) if args.metrics else {}
        previous = load_previous(args.previous)
    except InvalidInput as err:
        print_errors(err)
        return 2
    document = plan_document(
        at, plan_all(resources, observations, at, previous), routing_all(resources, observations)
    )
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
