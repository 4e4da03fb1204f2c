"""The `plan -o table` view: the plan JSON laid out for a person."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_plan_tables(document: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=140)
    console.print(f"[bold]Plan at {document['at']}[/bold]")
    for pool in document["pools"]:
        table = Table(
            title=f"ModelPool {pool['namespace']}/{pool['name']}: "
            f"{pool['gpusPlanned']}/{pool['gpuBudget']} GPUs planned",
            title_justify="left",
        )
        for column in ("variant", "desired", "ready", "floor", "GPUs", "reason", "why"):
            table.add_column(column, overflow="fold")
        for variant in pool["variants"]:
            ready = variant["readyReplicas"]
            table.add_row(
                variant["name"],
                str(variant["desiredReplicas"]),
                "-" if ready is None else str(ready),
                str(variant["floor"]),
                str(variant["gpus"]),
                variant["reason"],
                variant["message"],
            )
        console.print(table)
        for condition in pool["conditions"]:
            console.print(
                f"  {condition['type']}={condition['status']} ({condition['reason']}): "
                f"{condition['message']}"
            )
        for grant in pool["reservations"]:
            state = "granted" if grant["granted"] else "not granted"
            console.print(
                f"  Reservation {grant['namespace']}/{grant['name']} ({grant['tenant']}, "
                f"{grant['replicas']} x {grant['variant']}): {state}: {grant['message']}"
            )
    for policy in document.get("routing", []):
        table = Table(
            title=f"RoutingPolicy {policy['namespace']}/{policy['policy']}", title_justify="left"
        )
        for column in ("route", "backends", "note"):
            table.add_column(column, overflow="fold")
        for route in policy["routes"]:
            backends = ", ".join(f"{b['variant']} {b['weight']}" for b in route["backends"])
            table.add_row(route["name"], backends, route.get("note") or "")
        console.print(table)
        for budget in policy.get("budgets", []):
            spend = budget.get("spend")
            shown = "unknown" if spend is None else f"{spend:.2f}"
            console.print(
                f"  Budget {budget['tenant']}"
                + (f" key {budget['keyId']}" if budget.get("keyId") else "")
                + f" per {budget['period']}: {shown} of {budget['amount']:g} "
                f"{budget['currency']} spent, {budget['state']}: {budget['message']}"
            )
