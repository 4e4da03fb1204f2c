"""Who sends each request and what it asks for: the mix over routes, tenants, priorities.

Traces carry lengths and times but seldom a task type, so each request is given a route of
the RoutingPolicy (and then the task type or model that route matches), a tenant and an
`x-priority` value, drawn with the seed from shares (`route=share,...`). What a trace does
carry wins over the draw. The defaults, stated in every report:
- routes: equal shares over the routes that match a task type (all routes if none does);
- tenants: half the requests split evenly over the Reservations' tenants, the rest from
  tenant `shared`, which holds no Reservation;
- priorities: a quarter split over the degrade rules' priorities, the rest without header.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from modelfleet.api.load import InputError, InvalidInput
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.routing.planner import PRIORITY_HEADER
from modelfleet_testbed.sim.arrivals import Arrivals

SHARED_TENANT = "shared"
NO_PRIORITY = "none"
RESERVED_TENANTS_SHARE = 0.5
DEGRADE_PRIORITIES_SHARE = 0.25


@dataclass(frozen=True)
class RequestClass:
    """What the gateway sees of a request: its task type, model and headers."""

    task_type: str | None
    model: str | None
    headers: tuple[tuple[str, str], ...]  # (lower-case name, value)

    def describe(self) -> str:
        parts = [f"task_type={self.task_type}"] if self.task_type else []
        parts += [f"model={self.model}"] if self.model else []
        parts += [f"{name}: {value}" for name, value in self.headers]
        return ", ".join(parts) or "no task type, model or header"


@dataclass(frozen=True)
class Mix:
    routes: dict[str, float]
    tenants: dict[str, float]
    priorities: dict[str, float]

    def as_json(self) -> dict[str, dict[str, float]]:
        return {"routes": self.routes, "tenants": self.tenants, "priorities": self.priorities}


@dataclass(frozen=True)
class Workload:
    arrivals: Arrivals
    classes: tuple[RequestClass, ...]
    class_of: array  # 'H': index into classes, per request
    tenants: tuple[str, ...]
    tenant_of: array  # 'H': index into tenants, per request
    mix: Mix


def parse_shares(text: str, flag: str) -> dict[str, float]:
    shares: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            share = float(value)
        except ValueError:
            share = -1.0
        if not sep or not name or share < 0:
            raise InvalidInput(
                [InputError(flag, "", part.strip(), "expected NAME=SHARE with a share >= 0")]
            )
        shares[name] = share
    if sum(shares.values()) <= 0:
        raise InvalidInput([InputError(flag, "", "", "the shares add up to 0: give one a share")])
    return shares


def default_mix(policy: RoutingPolicy, reservations: Sequence[Reservation]) -> Mix:
    routes = policy.spec.routes
    by_task = [r.name for r in routes if r.match.task_type] or [r.name for r in routes]
    tenants_reserved = list(dict.fromkeys(r.spec.tenant for r in reservations))
    tenants = {t: RESERVED_TENANTS_SHARE / len(tenants_reserved) for t in tenants_reserved}
    tenants[SHARED_TENANT] = tenants.get(SHARED_TENANT, 0.0) + (
        1 - RESERVED_TENANTS_SHARE if tenants_reserved else 1.0
    )
    degrade = list(dict.fromkeys(rule.priority for rule in policy.spec.degrade))
    priorities = {p: DEGRADE_PRIORITIES_SHARE / len(degrade) for p in degrade}
    priorities[NO_PRIORITY] = 1 - DEGRADE_PRIORITIES_SHARE if degrade else 1.0
    return Mix({name: 1 / len(by_task) for name in by_task}, tenants, priorities)


def check_routes(shares: dict[str, float], policy: RoutingPolicy) -> None:
    known = [r.name for r in policy.spec.routes]
    errors = [
        InputError("--mix", policy.ref, name, f"no such route: use one of {', '.join(known)}")
        for name in shares
        if name not in known
    ]
    if errors:
        raise InvalidInput(errors)


def _normalized(shares: dict[str, float]) -> dict[str, float]:
    total = sum(shares.values())
    return {name: share / total for name, share in shares.items()}


def _draw(rng: random.Random, shares: dict[str, float], count: int) -> list[int]:
    cumulative = []
    running = 0.0
    for share in shares.values():
        running += share
        cumulative.append(running)
    return rng.choices(range(len(shares)), cum_weights=cumulative, k=count)


def build_workload(arrivals: Arrivals, policy: RoutingPolicy, mix: Mix, seed: int) -> Workload:
    check_routes(mix.routes, policy)
    mix = Mix(_normalized(mix.routes), _normalized(mix.tenants), _normalized(mix.priorities))
    routes = {r.name: r for r in policy.spec.routes}
    rng = random.Random(f"mix:{seed}")
    count = len(arrivals)
    route_names = list(mix.routes)
    priority_names = list(mix.priorities)
    drawn_routes = _draw(rng, mix.routes, count)
    drawn_tenants = _draw(rng, mix.tenants, count)
    drawn_priorities = _draw(rng, mix.priorities, count)

    classes: dict[RequestClass, int] = {}
    memo: dict[tuple[int, str | None, str], int] = {}

    def class_index(route_index: int, given_task: str | None, priority: str) -> int:
        route = routes[route_names[route_index]]
        headers = tuple((h.name.lower(), h.value) for h in route.match.headers)
        task_type = route.match.task_type[0] if route.match.task_type else None
        model = route.match.model[0] if route.match.model else None
        if given_task is not None:
            task_type, model, headers = given_task, None, ()
        if priority != NO_PRIORITY and all(name != PRIORITY_HEADER for name, _ in headers):
            headers = (*headers, (PRIORITY_HEADER, priority))
        return classes.setdefault(RequestClass(task_type, model, headers), len(classes))

    class_of = array("H", bytes(2 * count))
    given_tasks = arrivals.task_types or [None] * count
    given_priorities = arrivals.priorities or [None] * count
    for i in range(count):
        priority = given_priorities[i] or priority_names[drawn_priorities[i]]
        key = (drawn_routes[i], given_tasks[i], priority)
        index = memo.get(key)
        if index is None:
            index = memo[key] = class_index(*key)
        class_of[i] = index

    tenant_names = list(mix.tenants)
    if arrivals.tenants is None:
        tenant_of = array("H", drawn_tenants)
    else:
        tenant_index = {name: i for i, name in enumerate(tenant_names)}
        tenant_of = array("H", bytes(2 * count))
        for i, given in enumerate(arrivals.tenants):
            if given is None:
                tenant_of[i] = drawn_tenants[i]
                continue
            if given not in tenant_index:
                tenant_index[given] = len(tenant_names)
                tenant_names.append(given)
            tenant_of[i] = tenant_index[given]
    return Workload(arrivals, tuple(classes), class_of, tuple(tenant_names), tenant_of, mix)
