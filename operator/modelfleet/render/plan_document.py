"""The JSON of `modelfleet plan -o json`: the statuses the operator would write, nothing
hand-shaped. Each pool entry is its ModelPool status with `namespace` and `name`; each
routing entry the RoutingPolicy's planned routes. `--previous` reads one back: the pools'
statuses and the policies' routes (the weights a latency shift moved are its memory)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from modelfleet.api.common import rfc3339
from modelfleet.api.load import InputError, InvalidInput, validation_errors
from modelfleet.api.modelpool import ModelPoolStatus
from modelfleet.api.routingpolicy import RoutingPolicyStatus
from modelfleet.plan.budgets import BudgetPlan
from modelfleet.plan.routing.table import RoutingTable
from modelfleet.render.desired import Desired
from modelfleet.render.inputs import Key
from modelfleet.render.status import effective_route


def plan_document(result: Desired) -> dict[str, Any]:
    pools = []
    for namespace, name in result.plans:
        status = result.status_of("ModelPool", namespace, name)
        assert status is not None, "every planned pool has its status"
        pools.append(
            {"namespace": namespace, "name": name, **status.model_dump(by_alias=True, mode="json")}
        )
    routing = [
        routing_entry(table, result.budgets.get(key)) for key, table in result.tables.items()
    ]
    return {"at": rfc3339(result.now), "pools": pools, "routing": routing}


def routing_entry(table: RoutingTable, budgets: BudgetPlan | None = None) -> dict[str, Any]:
    """One policy's planned routes and budgets, as its status carries them."""
    routes = [effective_route(r).model_dump(by_alias=True, mode="json") for r in table.routes]
    entry: dict[str, Any] = {"namespace": table.namespace, "policy": table.policy, "routes": routes}
    if budgets is not None and budgets.states:
        entry["budgets"] = [
            state.status().model_dump(by_alias=True, mode="json", exclude_none=True)
            for state in budgets.states
        ]
    return entry


def read_plan_document(data: Any, source: str) -> dict[Key, ModelPoolStatus]:
    """An earlier `plan -o json` -> each pool's status, for the next plan to read back."""
    if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
        message = "expected the JSON printed by `modelfleet plan -o json` (keys at, pools)"
        raise InvalidInput([InputError(source, "previous plan", "", message)])
    statuses: dict[Key, ModelPoolStatus] = {}
    errors: list[InputError] = []
    for index, entry in enumerate(data["pools"]):
        where = f"pools[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            errors.append(InputError(source, "previous plan", where, "expected a pool's plan"))
            continue
        fields = {k: v for k, v in entry.items() if k not in ("namespace", "name")}
        try:
            status = ModelPoolStatus.model_validate(fields)
        except ValidationError as err:
            errors.extend(
                InputError(source, "previous plan", f"{where}.{e.path}", e.message)
                for e in validation_errors(err, source, "previous plan")
            )
            continue
        if status.planned_at is None and "at" in data:
            status = status.model_copy(update={"planned_at": _time(data["at"])})
        statuses[(str(entry.get("namespace", "default")), entry["name"])] = status
    if errors:
        raise InvalidInput(errors)
    return statuses


def read_previous_routes(data: Any, source: str) -> dict[Key, RoutingPolicyStatus]:
    """An earlier `plan -o json` -> each RoutingPolicy's planned routes, as its status held
    them, so the routes' latency shifts continue from where they were."""
    entries = data.get("routing") if isinstance(data, dict) else None
    statuses: dict[Key, RoutingPolicyStatus] = {}
    errors: list[InputError] = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        where = f"routing[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("policy"), str):
            errors.append(InputError(source, "previous plan", where, "expected a policy's routes"))
            continue
        try:
            status = RoutingPolicyStatus.model_validate({"routes": entry.get("routes", [])})
        except ValidationError as err:
            errors.extend(
                InputError(source, "previous plan", f"{where}.{e.path}", e.message)
                for e in validation_errors(err, source, "previous plan")
            )
            continue
        statuses[(str(entry.get("namespace", "default")), entry["policy"])] = status
    if errors:
        raise InvalidInput(errors)
    return statuses


def _time(value: Any) -> Any:
    return ModelPoolStatus.model_validate({"plannedAt": value}).planned_at
