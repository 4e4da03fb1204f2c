"""Baseline scaling policies, as changed copies of the pool run through the same planner.

- static-peak: every variant held at replicas.max all the time, by a schedule that is always
  open (so the planner cuts it to the GPU budget by priority, as any plan).
- schedule-only: the schedules (and reservations and minimums); no queue, slo or forecast.
- queue-only: the queue signal (and reservations and minimums), no schedules, like a KEDA
  Prometheus trigger on the waiting queue; no slo or forecast.
- slo-only: the slo signal (and reservations and minimums); no schedules, queue or forecast.
- forecast-slo: the pool without its schedules and with `forecast: {}` on every variant:
  forecast, slo and queue signals instead of hand-written windows.
"""

from __future__ import annotations

from collections.abc import Callable

from modelfleet.api.modelpool import ForecastScaling, ModelPool, Schedule, SloScaling, Variant

POLICY = "policy"
# Opens every midnight and never closes (February has no 31st): open at every instant.
ALWAYS_START = "0 0 * * *"
NEVER = "0 0 31 2 *"
SLO_OFF = SloScaling(enabled=False)


def _static_peak(variant: Variant) -> Variant:
    always = Schedule(
        name="static-peak", start=ALWAYS_START, end=NEVER, replicas=variant.replicas.max
    )
    return variant.model_copy(
        update={"schedules": [always], "queue": None, "forecast": None, "slo": SLO_OFF}
    )


def _schedule_only(variant: Variant) -> Variant:
    return variant.model_copy(update={"queue": None, "forecast": None, "slo": SLO_OFF})


def _queue_only(variant: Variant) -> Variant:
    return variant.model_copy(update={"schedules": [], "forecast": None, "slo": SLO_OFF})


def _slo_only(variant: Variant) -> Variant:
    slo = variant.slo.model_copy(update={"enabled": True})
    return variant.model_copy(update={"schedules": [], "queue": None, "forecast": None, "slo": slo})


def _forecast_slo(variant: Variant) -> Variant:
    slo = variant.slo.model_copy(update={"enabled": True})
    forecast = variant.forecast or ForecastScaling()
    return variant.model_copy(update={"schedules": [], "forecast": forecast, "slo": slo})


BASELINES: dict[str, tuple[Callable[[Variant], Variant], str]] = {
    "static-peak": (_static_peak, "every variant at replicas.max all the time (within gpuBudget)"),
    "schedule-only": (
        _schedule_only,
        "schedules, reservations and minimums; no queue, slo or forecast signal",
    ),
    "queue-only": (
        _queue_only,
        "queue signal, reservations and minimums; no schedules (like a KEDA Prometheus "
        "trigger), no slo or forecast signal",
    ),
    "slo-only": (
        _slo_only,
        "slo signal (the routes' latency SLOs), reservations and minimums; no schedules, "
        "queue or forecast",
    ),
    "forecast-slo": (
        _forecast_slo,
        "no schedules; forecast (a day and a week back), slo and queue signals, reservations "
        "and minimums",
    ),
}


def describe(name: str) -> str:
    if name == POLICY:
        return "the pool as given: its schedules and signals, reservations, budget"
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
