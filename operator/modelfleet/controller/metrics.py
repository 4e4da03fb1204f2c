"""The operator's own /metrics (prometheus-client): what it planned, how long it took."""

from __future__ import annotations

import contextlib
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelfleet.api.routingpolicy import BudgetStatus, RoutingPolicy
from modelfleet.plan.billing import CostLine
from modelfleet.plan.scaling.types import PoolPlan


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        pool_labels = ("namespace", "pool")
        variant_labels = (*pool_labels, "variant")
        self.desired = Gauge(
            "modelfleet_variant_desired_replicas",
            "Replicas the plan wants, with its reason.",
            (*variant_labels, "reason"),
            registry=self.registry,
        )
        self.ready = Gauge(
            "modelfleet_variant_ready_replicas",
            "Ready replicas of the variant's Deployment.",
            variant_labels,
            registry=self.registry,
        )
        self.staleness = Gauge(
            "modelfleet_variant_metrics_age_seconds",
            "Age of the newest queue sample the plan used (absent: no sample).",
            variant_labels,
            registry=self.registry,
        )
        self.gpus_planned = Gauge(
            "modelfleet_pool_gpus_planned",
            "GPUs the plan uses.",
            pool_labels,
            registry=self.registry,
        )
        self.gpu_budget = Gauge(
            "modelfleet_pool_gpu_budget",
            "The pool's spec.gpuBudget.",
            pool_labels,
            registry=self.registry,
        )
        self.overcommitted = Gauge(
            "modelfleet_pool_overcommitted",
            "1 when the floors exceed the GPU budget.",
            pool_labels,
            registry=self.registry,
        )
        self.plan_seconds = Histogram(
            "modelfleet_plan_duration_seconds",
            "Time to plan one pool.",
            pool_labels,
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            "modelfleet_cycle_duration_seconds",
            "Time of one whole cycle (read, plan, apply).",
            pool_labels,
            registry=self.registry,
        )
        self.apply_errors = Counter(
            "modelfleet_apply_errors_total",
            "API calls that failed after retries.",
            pool_labels,
            registry=self.registry,
        )
        self.cost = Counter(
            "modelfleet_cost_accrued",
            "Cost accrued since the operator started, by billing mode: 'pool' is what the "
            "variant's replicas cost; the others what tenants owe: held replica-hours "
            "(reserved, hybrid) and their requests and tokens (onDemand at the pool's or their "
            "Reservation's prices, hybrid overage), per API key (key_id).",
            (*variant_labels, "tenant", "key_id", "mode", "item", "currency"),
            registry=self.registry,
        )
        budget_labels = ("namespace", "policy", "tenant", "key_id", "period", "currency")
        self.budget_spend = Gauge(
            "modelfleet_budget_spend",
            "What the budget's tenant (or key) spent in the current period.",
            budget_labels,
            registry=self.registry,
        )
        self.budget_amount = Gauge(
            "modelfleet_budget_amount",
            "The budget per period (RoutingPolicy spec.budgets[].amount).",
            budget_labels,
            registry=self.registry,
        )
        self.budget_soft_limit = Gauge(
            "modelfleet_budget_soft_limit",
            "The spend past which the budget's soft limit is reached.",
            budget_labels,
            registry=self.registry,
        )
        self.budget_enforced = Gauge(
            "modelfleet_budget_enforced",
            "1 while the gateway blocks or degrades the budget's requests (action), else 0.",
            (*budget_labels, "action"),
            registry=self.registry,
        )
        self.degrade_threshold = Gauge(
            "modelfleet_degrade_threshold_waiting",
            "A RoutingPolicy degrade rule's waitingAbove: while the variant's waiting requests "
            "are above it, requests of the rule's priority go to the fallback.",
            (*variant_labels, "policy", "priority", "fallback"),
            registry=self.registry,
        )
        self._reasons: dict[tuple[str, str, str], str] = {}
        self._degrade_rules: dict[tuple[str, str], set[tuple[str, ...]]] = {}
        self._budgets: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    def record_plan(self, plan: PoolPlan, now: datetime) -> None:
        pool = (plan.namespace, plan.name)
        for variant in plan.variants:
            key = (*pool, variant.name)
            old_reason = self._reasons.get(key)
            if old_reason is not None and old_reason != variant.reason:
                self.desired.remove(*key, old_reason)
            self._reasons[key] = variant.reason
            self.desired.labels(*key, variant.reason).set(variant.desired_replicas)
            observed = variant.observation
            self.ready.labels(*key).set((observed.ready_replicas or 0) if observed else 0)
            sampled = variant.observation.sampled_at if variant.observation else None
            if sampled is not None:
                self.staleness.labels(*key).set((now - sampled).total_seconds())
            else:
                # No sample at all: no age to report (the stale-metrics alert covers absence).
                with contextlib.suppress(KeyError):
                    self.staleness.remove(*key)
        self.gpus_planned.labels(*pool).set(plan.gpus_planned)
        self.gpu_budget.labels(*pool).set(plan.gpu_budget)
        overcommitted = plan.condition("Overcommitted")
        self.overcommitted.labels(*pool).set(
            1 if overcommitted is not None and overcommitted.status == "True" else 0
        )

    def forget_pool(self, namespace: str, pool: str) -> None:
        """Drop a pool's gauges when this replica stops acting for it (the pool is gone, or
        a peer took over): a standby must not keep exporting a frozen plan."""
        for key in [k for k in self._reasons if k[:2] == (namespace, pool)]:
            reason = self._reasons.pop(key)
            for gauge, labels in (
                (self.desired, (*key, reason)),
                (self.ready, key),
                (self.staleness, key),
            ):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)
        for gauge in (self.gpus_planned, self.gpu_budget, self.overcommitted):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, pool)

    def record_degrade_rules(self, policy: RoutingPolicy) -> None:
        """The policy's thresholds, so that alerts compare each variant's queue with its
        own; rules removed from the policy disappear from /metrics."""
        current = set()
        for rule in policy.spec.degrade:
            labels = (
                policy.namespace,
                policy.spec.pool,
                rule.variant,
                policy.name,
                rule.priority,
                rule.fallback,
            )
            self.degrade_threshold.labels(*labels).set(rule.waiting_above)
            current.add(labels)
        key = (policy.namespace, policy.name)
        for stale in self._degrade_rules.get(key, set()) - current:
            self.degrade_threshold.remove(*stale)
        self._degrade_rules[key] = current

    def record_costs(self, namespace: str, pool: str, lines: list[CostLine]) -> None:
        for line in lines:
            if line.amount > 0:
                self.cost.labels(
                    namespace,
                    pool,
                    line.variant,
                    line.tenant or "",
                    line.key_id or "",
                    line.mode,
                    line.item,
                    line.currency,
                ).inc(line.amount)

    def record_budgets(self, namespace: str, policy: str, budgets: list[BudgetStatus]) -> None:
        """The budgets as the policy's status has them; removed budgets disappear."""
        current = set()
        for budget in budgets:
            labels = (
                namespace,
                policy,
                budget.tenant,
                budget.key_id or "",
                budget.period,
                budget.currency,
            )
            current.add(labels)
            if budget.spend is not None:
                self.budget_spend.labels(*labels).set(budget.spend)
            self.budget_amount.labels(*labels).set(budget.amount)
            self.budget_soft_limit.labels(*labels).set(budget.soft_limit)
            enforced = budget.state in ("Blocked", "Degraded")
            for action in ("block", "degrade"):
                value = 1 if enforced and budget.action == action else 0
                self.budget_enforced.labels(*labels, action).set(value)
        key = (namespace, policy)
        for stale in self._budgets.get(key, set()) - current:
            for gauge in (self.budget_spend, self.budget_amount, self.budget_soft_limit):
                with contextlib.suppress(KeyError):
                    gauge.remove(*stale)
            for action in ("block", "degrade"):
                with contextlib.suppress(KeyError):
                    self.budget_enforced.remove(*stale, action)
        self._budgets[key] = current
