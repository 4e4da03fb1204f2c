"""Pure: a RoutingPolicy's budgets -> each one's period, spend and state, what the gateway
does with each API key's requests, and the routing table's budget companions.

A budget's period is a day or a month in the pool's time zone: it begins at local midnight
(of the 1st, for a month), DST-correct (a day is 23 or 25 hours around a change; a midnight
that falls into a spring-forward gap begins the day at the gap's end, as cron does). Spend
is what the billing charges for the requests and tokens the gateways counted since the
period began (plan/billing.py: on-demand prices, or the tenant's Reservation on a variant;
held replica-hours are not counted: they are committed, and blocking would not save them).

State, per budget: WithinBudget; SoftLimitReached past `softLimitPercent` of the amount
(still served); at the amount, Blocked or Degraded by the budget's `action`, until the
period resets. When the spend cannot be read, every budget keeps its last known state:
nobody is blocked, or unblocked, blind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from modelfleet.api.cron import wall_time_to_instant, zone
from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.names import BUDGET_DEGRADED, BUDGET_HEADER
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import Budget, BudgetStatus, RoutingPolicy
from modelfleet.observe.usage import UsageTable
from modelfleet.plan.billing import reference_price, usage_lines
from modelfleet.plan.routing.planner import TOTAL_WEIGHT, companion_name
from modelfleet.plan.routing.table import RouteMatchSpec, RoutingTable, TableRoute, WeightedBackend
from modelfleet.plan.routing.weights import apportion
from modelfleet.plan.scaling.types import PlanCondition

WITHIN, SOFT, BLOCKED, DEGRADED = "WithinBudget", "SoftLimitReached", "Blocked", "Degraded"
SEVERITY = {WITHIN: 0, SOFT: 1, BLOCKED: 2, DEGRADED: 2}
# The companion of a route that over-budget `degrade` keys take (see with_budget_companions).
COMPANION_LABEL = "budget"
INSUFFICIENT_QUOTA = "insufficient_quota"


def money(amount: float) -> str:
    """Cents for amounts from one up; below, enough digits to tell 0.002 from nothing."""
    return f"{amount:.2f}" if amount >= 1 or amount == 0 else f"{amount:.2g}"


# (period, timezone, local date) -> the period's local midnights: every cycle asks, and the
# answer changes once a day (or month).
_BOUNDS: dict[tuple[str, str, date], tuple[datetime, datetime]] = {}
_BOUNDS_LIMIT = 4096


def period_bounds(now: datetime, period: str, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of the day or month `now` lies in, local midnights of `timezone`."""
    tz = zone(timezone)
    today = now.astimezone(tz).date()
    key = (period, timezone, today)
    bounds = _BOUNDS.get(key)
    if bounds is None:
        if period == "day":
            first, following = today, today + timedelta(days=1)
        elif period == "month":
            first = today.replace(day=1)
            following = (first + timedelta(days=32)).replace(day=1)
        else:
            raise ValueError(f"unknown budget period {period!r}: day or month")
        bounds = (_midnight(first, tz), _midnight(following, tz))
        if len(_BOUNDS) >= _BOUNDS_LIMIT:
            _BOUNDS.clear()
        _BOUNDS[key] = bounds
    start, end = bounds
    if now < start:  # a day whose midnight lies in a DST gap began at the gap's end
        return period_bounds(start - timedelta(microseconds=1), period, timezone)
    return start, end


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return wall_time_to_instant(day, time(0, 0), tz)


# Made for every budget every refresh: a NamedTuple (see plan/scaling/types.py).
class BudgetState(NamedTuple):
    budget: Budget
    currency: str
    period_start: datetime
    resets_at: datetime
    spend: float | None
    spend_by_variant: Mapping[str, float]
    spend_observed_at: datetime | None
    state: str
    last_transition_time: datetime
    message: str

    @property
    def soft_limit(self) -> float:
        return self.budget.amount * self.budget.soft_limit_percent / 100

    @property
    def enforced(self) -> str | None:
        """What the gateway does with the budget's requests: block, degrade or nothing."""
        return self.budget.action if self.state in (BLOCKED, DEGRADED) else None

    def status(self) -> BudgetStatus:
        return BudgetStatus(
            tenant=self.budget.tenant,
            key_id=self.budget.key_id,
            period=self.budget.period,
            action=self.budget.action,
            currency=self.currency,
            amount=self.budget.amount,
            soft_limit=round(self.soft_limit, 6),
            period_start=self.period_start,
            resets_at=self.resets_at,
            spend=None if self.spend is None else round(self.spend, 6),
            spend_by_variant={k: round(v, 6) for k, v in sorted(self.spend_by_variant.items())},
            spend_observed_at=self.spend_observed_at,
            state=self.state,
            last_transition_time=self.last_transition_time,
            message=self.message,
        )


@dataclass(frozen=True)
class BudgetNotice:
    """An Event about a budget: its state changed."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class BudgetPlan:
    states: tuple[BudgetState, ...] = ()
    condition: PlanCondition | None = None  # SpendObserved, when the policy has budgets
    notices: tuple[BudgetNotice, ...] = ()


@dataclass(frozen=True)
class Gate:
    """What the gateway does with one API key's requests while a budget holds it."""

    action: str  # block | degrade
    message: str  # the 429's message (block), or why (degrade)


def plan_budgets(
    policy: RoutingPolicy,
    pool: ModelPool,
    reservations: Sequence[Reservation],
    now: datetime,
    usage: Mapping[str, UsageTable] | None,
    usage_error: str | None = None,
) -> BudgetPlan:
    """Each budget of `policy` at `now`, from what was used since each period began
    (`usage` by period; None, or a period missing: the spend could not be read, and
    `usage_error` says why)."""
    budgets = policy.spec.budgets
    if not budgets:
        return BudgetPlan()
    previous = {
        (entry.tenant, entry.key_id, entry.period): entry
        for entry in (policy.status.budgets if policy.status else [])
    }
    states, notices = [], []
    blind = False
    for budget in budgets:
        before = previous.get((budget.tenant, budget.key_id, budget.period))
        used = usage.get(budget.period) if usage is not None else None
        if used is None:
            blind = True
            state = _unread(budget, pool, now, before, usage_error or "no spend was read")
        else:
            state = _evaluate(budget, pool, reservations, now, used, before)
        states.append(state)
        notice = _notice(state, before, pool)
        if notice is not None:
            notices.append(notice)
    if blind:
        condition = PlanCondition(
            "SpendObserved",
            "False",
            "PrometheusUnavailable",
            f"{usage_error or 'no spend was read'}: every budget keeps its last known state "
            "(nobody is blocked or unblocked blind)",
        )
    else:
        condition = PlanCondition(
            "SpendObserved",
            "True",
            "SpendRead",
            f"the spend of {len(states)} budget(s) was read from the gateways' counters",
        )
    return BudgetPlan(tuple(states), condition, tuple(notices))


def _evaluate(
    budget: Budget,
    pool: ModelPool,
    reservations: Sequence[Reservation],
    now: datetime,
    used: UsageTable,
    before: BudgetStatus | None,
) -> BudgetState:
    start, end = period_bounds(now, budget.period, pool.spec.timezone)
    currency = pool.spec.currency
    # Only the tenant's own use is priced (all of its keys: a hybrid Reservation's overage
    # share counts every request the tenant sent to the variant).
    theirs = {key: entry for key, entry in used.items() if key.tenant == budget.tenant}
    held = [r for r in reservations if r.spec.tenant == budget.tenant]
    lines = [
        line
        for line in usage_lines(pool, held, start, now, theirs)
        if budget.key_id in (None, line.key_id)
    ]
    by_variant: dict[str, float] = {}
    foreign = sorted({line.currency for line in lines if line.currency != currency})
    for line in lines:
        if line.currency == currency:
            by_variant[line.variant] = by_variant.get(line.variant, 0.0) + line.amount
    spend = sum(by_variant.values())
    soft = budget.amount * budget.soft_limit_percent / 100
    if spend >= budget.amount:
        state = BLOCKED if budget.action == "block" else DEGRADED
    elif spend >= soft:
        state = SOFT
    else:
        state = WITHIN
    until = _local(end, pool)
    spent = (
        f"{budget.who} spent {money(spend)} of {money(budget.amount)} {currency} "
        f"this {budget.period}"
    )
    if state == BLOCKED:
        message = f"{spent}: its requests get 429 {INSUFFICIENT_QUOTA} until {until}"
    elif state == DEGRADED:
        message = f"{spent}: its requests go to each route's cheaper backends until {until}"
    elif state == SOFT:
        message = f"{spent}, past the soft limit of {money(soft)}; the budget resets at {until}"
    else:
        message = f"{spent}; the budget resets at {until}"
    if foreign:
        message += (
            f"; charges in {', '.join(foreign)} (a Reservation's currency) are not counted: "
            f"budgets are in the pool's {currency}"
        )
    changed = before is None or before.state != state
    return BudgetState(
        budget=budget,
        currency=currency,
        period_start=start,
        resets_at=end,
        spend=spend,
        spend_by_variant=by_variant,
        spend_observed_at=now,
        state=state,
        last_transition_time=now if changed or before is None else before.last_transition_time,
        message=message,
    )


def _unread(
    budget: Budget, pool: ModelPool, now: datetime, before: BudgetStatus | None, why: str
) -> BudgetState:
    """The spend is unknown: the last known state stays (a new budget starts within it)."""
    currency = pool.spec.currency
    if before is None:
        start, end = period_bounds(now, budget.period, pool.spec.timezone)
        return BudgetState(
            budget, currency, start, end, None, {}, None, WITHIN, now,
            f"{budget.who}: spend not read yet ({why}); not enforced until it is",
        )  # fmt: skip
    state = before.state
    if SEVERITY[state] == 2:
        # The action may have been edited meanwhile: enforce what the spec says now.
        state = BLOCKED if budget.action == "block" else DEGRADED
    seen = f"read at {before.spend_observed_at.isoformat()}" if before.spend_observed_at else ""
    return BudgetState(
        budget=budget,
        currency=currency,
        period_start=before.period_start,
        resets_at=before.resets_at,
        spend=before.spend,
        spend_by_variant=dict(before.spend_by_variant),
        spend_observed_at=before.spend_observed_at,
        state=state,
        last_transition_time=before.last_transition_time if state == before.state else now,
        message=f"spend unknown ({why}): {budget.who} stays {state}, as last {seen or 'known'}",
    )


def _local(instant: datetime, pool: ModelPool) -> str:
    return instant.astimezone(zone(pool.spec.timezone)).isoformat()


def _notice(
    state: BudgetState, before: BudgetStatus | None, pool: ModelPool
) -> BudgetNotice | None:
    old = before.state if before is not None else WITHIN
    if old == state.state:
        return None
    budget = state.budget
    if SEVERITY[state.state] >= SEVERITY[old]:  # equal: Blocked <-> Degraded (action edited)
        reason = "BudgetExceeded" if SEVERITY[state.state] == 2 else "BudgetSoftLimitReached"
        return BudgetNotice("Warning", reason, state.message)
    reset = before is not None and before.period_start != state.period_start
    reason = "BudgetReset" if reset else "BudgetLifted"
    detail = (
        f"a new {budget.period} began at {_local(state.period_start, pool)}"
        if reset
        else "the budget was raised or the spend corrected"
    )
    return BudgetNotice("Normal", reason, f"{budget.who} is {state.state} again: {detail}")


def gates(plan: BudgetPlan, keys: Sequence[ApiKey]) -> dict[str, Gate]:
    """Per API key id: block or degrade, while a budget of the key or of its tenant is
    spent (block wins over degrade)."""
    out: dict[str, Gate] = {}
    for state in plan.states:
        action = state.enforced
        if action is None:
            continue
        budget = state.budget
        for key in keys:
            if key.tenant != budget.tenant or budget.key_id not in (None, key.id):
                continue
            current = out.get(key.id)
            if current is None or (current.action == "degrade" and action == "block"):
                out[key.id] = Gate(action, _gate_message(state))
    return dict(sorted(out.items()))


def _gate_message(state: BudgetState) -> str:
    budget = state.budget
    return (
        f"You exceeded your current quota: the {budget.period} budget of {budget.who} "
        f"({budget.amount:g} {state.currency}) is spent. It resets at "
        f"{state.resets_at.isoformat().replace('+00:00', 'Z')}."
    )


def with_budget_companions(table: RoutingTable, pool: ModelPool) -> RoutingTable:
    """The table with, before each route (and its degrade companions), a companion that
    requests of over-budget `degrade` keys take: the route's cheaper backends only (those
    cheaper than its dearest, by reference_price), weights rescaled. A route whose backends
    all cost the same keeps those requests, and says so."""
    taken = {route.name for route in table.routes}
    routes: list[TableRoute] = []
    pending: list[TableRoute] = []  # degrade companions come before their route
    for route in table.routes:
        if route.degraded_from is not None:
            pending.append(route)
            continue
        companion, route = _cheaper(route, pool, taken)
        routes.extend([companion] if companion else [])
        routes.extend(pending)
        routes.append(route)
        pending = []
    routes.extend(pending)
    return replace(table, routes=tuple(routes))


def _cheaper(
    route: TableRoute, pool: ModelPool, taken: set[str]
) -> tuple[TableRoute | None, TableRoute]:
    prices = {b.variant: reference_price(pool, b.variant) for b in route.backends}
    dearest = max(prices.values(), default=None)
    cheaper = [b for b in route.backends if prices[b.variant] < dearest]
    if not cheaper:
        note = "over-budget (degrade) requests stay on this route: no backend is cheaper"
        return None, route._replace(note="; ".join(n for n in (route.note, note) if n))
    name = companion_name(route.name, COMPANION_LABEL, taken)
    taken.add(name)
    shares = apportion([b.weight for b in cheaper], TOTAL_WEIGHT)
    dropped = ", ".join(b.variant for b in route.backends if b not in cheaper)
    companion = TableRoute(
        name=name,
        match=RouteMatchSpec(
            route.match.task_types,
            route.match.models,
            (*route.match.headers, (BUDGET_HEADER, BUDGET_DEGRADED)),
        ),
        backends=tuple(
            WeightedBackend(b.variant, share)
            for b, share in zip(cheaper, shares, strict=True)
            if share > 0
        ),
        degraded_from=route.name,
        note=f"API keys over a degrade budget: the cheaper backends only (not {dropped})",
        budget=True,
    )
    return companion, route
