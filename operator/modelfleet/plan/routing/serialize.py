"""RoutingTable -> the JSON of `modelfleet plan -o json` ("routing") and its hash for status."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modelfleet.plan.routing.table import RoutingTable, TableRoute


def route_json(route: TableRoute) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": route.name,
        "match": {
            "taskType": list(route.match.task_types),
            "model": list(route.match.models),
            "headers": [{"name": name, "value": value} for name, value in route.match.headers],
        },
        "backends": [{"variant": b.variant, "weight": b.weight} for b in route.backends],
    }
    if route.degraded_from:
        data["degradedFrom"] = route.degraded_from
    if route.note:
        data["note"] = route.note
    return data


def routing_table_json(table: RoutingTable) -> dict[str, Any]:
    return {
        "namespace": table.namespace,
        "policy": table.policy,
        "routes": [route_json(route) for route in table.routes],
    }


def table_hash(table: RoutingTable) -> str:
    """First 16 hex digits of the sha256 of the canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(
        routing_table_json(table), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
