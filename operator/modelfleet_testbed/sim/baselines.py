"""Baseline scaling policies, as changed copies of the pool run through the same planner.

- static-peak: every variant held at replicas.max all the time, by a schedule that is always
  open (so the planner cuts it to the GPU budget by priority, as any plan).
- schedule-only: the schedules (and reservations and minimums), no queue signal.
- queue-only: the queue signal (and reservations and minimums), no schedules, like a KEDA
  Prometheus trigger on the waiting queue.
"""

from __future__ import annotations

from collections.abc import Callable

from modelfleet.api.modelpool import ModelPool, Schedule, Variant

POLICY = "policy"
# Opens every midnight and never closes (February has no 31st): open at every instant.
ALWAYS_START = "0 0 * * *"
NEVER = "0 0 31 2 *"


def _static_peak(variant: Variant) -> Variant:
    always = Schedule(
        name="static-peak", start=ALWAYS_START, end=NEVER, replicas=variant.replicas.max
    )
    return variant.model_copy(update={"schedules": [always], "queue": None})


def _schedule_only(variant: Variant) -> Variant:
    return variant.model_copy(update={"queue": None})


def _queue_only(variant: Variant) -> Variant:
    return variant.model_copy(update={"schedules": []})


BASELINES: dict[str, tuple[Callable[[Variant], Variant], str]] = {
    "static-peak": (_static_peak, "every variant at replicas.max all the time (within gpuBudget)"),
    "schedule-only": (_schedule_only, "schedules, reservations and minimums; no queue signal"),
    "queue-only": (
        _queue_only,
        "queue signal, reservations and minimums; no schedules (like a KEDA Prometheus trigger)",
    ),
}


def describe(name: str) -> str:
    if name == POLICY:
        return "the pool as given: schedules, reservations, queue signal, budget"
    return BASELINES[name][1]


def baseline_pool(pool: ModelPool, name: str) -> ModelPool:
    change, _ = BASELINES[name]
    spec = pool.spec.model_copy(update={"variants": [change(v) for v in pool.spec.variants]})
    return pool.model_copy(update={"spec": spec})


def parse_compare(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise ValueError(
            f"unknown baseline {unknown[0]!r}: use any of {', '.join(BASELINES)}, comma-separated"
        )
    return list(dict.fromkeys(names))
