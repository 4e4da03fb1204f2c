"""ModelPool: a shared GPU pool and the vLLM variants that run in it."""

from __future__ import annotations

from typing import Any, Literal
from zoneinfo import ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from modelfleet.api.common import (
    Condition,
    DnsLabel,
    FieldError,
    KubeModel,
    Resource,
    Time,
    check_unique,
)
from modelfleet.api.cron import CronError, parse_cron, zone

CEL = "x-kubernetes-validations"

# The API server refuses a CRD whose CEL rules could cost too much on the largest object a
# request can hold; bounding the lists that rules run over or inside keeps that estimate small.
MAX_VARIANTS = 64
MAX_SCHEDULES = 32


class ReplicaRange(KubeModel):
    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "self.min <= self.max",
                    "message": "replicas.min must be <= replicas.max",
                    "fieldPath": ".min",
                }
            ]
        }
    }

    min: int = Field(ge=0, description="Replicas kept at all times.")
    max: int = Field(ge=0, description="Replicas never exceeded.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> ReplicaRange:
        if self.min > self.max:
            raise FieldError(
                "min", f"{self.min} is greater than max ({self.max}): lower min or raise max"
            )
        return self


class Schedule(KubeModel):
    """A KEDA-cron style window: active from a `start` firing until the next `end` firing."""

    name: DnsLabel
    start: str = Field(description="Cron (5 fields) in spec.timezone that opens the window.")
    end: str = Field(description="Cron (5 fields) in spec.timezone that closes the window.")
    replicas: int = Field(ge=0, description="Replica floor while the window is open.")

    @field_validator("start", "end")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        try:
            parse_cron(value)
        except CronError as err:
            raise ValueError(str(err)) from None
        return value


class StepPolicy(KubeModel):
    max_step: int | None = Field(
        default=None, ge=1, description="Most replicas added or removed per cycle; unset = any."
    )
    stabilization_seconds: int = Field(
        default=0,
        ge=0,
        description="A change happens only if every recommendation in this window agrees.",
    )


def default_scale_down() -> StepPolicy:
    return StepPolicy(max_step=None, stabilization_seconds=300)


class QueueScaling(KubeModel):
    target_per_replica: float = Field(
        gt=0, description="Requests (running + waiting) one replica should carry."
    )
    scale_up: StepPolicy = Field(default_factory=StepPolicy)
    scale_down: StepPolicy = Field(default_factory=default_scale_down)


DAY_SECONDS = 86400
WEEK_SECONDS = 7 * DAY_SECONDS
# Request rates are averaged over this long for the slo signal's demand and the forecast's
# comparisons, so that one bursty minute is not provisioned for a whole window.
DEMAND_SMOOTHING_SECONDS = 300


def _default_lookbacks() -> list[int]:
    return [DAY_SECONDS, WEEK_SECONDS]


class ForecastScaling(KubeModel):
    """Scale ahead of demand that repeats: the request rate at the same time one look-back
    period ago (a day, a week), over the next lead time, is provisioned before it comes."""

    lookback_seconds: list[int] = Field(
        default_factory=_default_lookbacks,
        min_length=1,
        max_length=8,
        description="Look-back periods in seconds (default one day and one week): the "
        "demand at the same time of day or week is the forecast; the largest wins.",
    )
    lead_seconds: int | None = Field(
        default=None,
        ge=0,
        description="How far ahead to provision; unset = startupSeconds plus one "
        "spec.metrics.refreshSeconds, so replicas are ready when the demand comes.",
    )

    @field_validator("lookback_seconds")
    @classmethod
    def _lookbacks_positive(cls, periods: list[int]) -> list[int]:
        for index, period in enumerate(periods):
            if period < 3600:
                raise FieldError(
                    f"[{index}]",
                    f"{period} is shorter than an hour: use a period demand repeats over, "
                    f"such as {DAY_SECONDS} (a day) or {WEEK_SECONDS} (a week)",
                )
        return periods


class SloScaling(KubeModel):
    """The `slo` signal: replicas from the latency SLOs of the routes that send to the
    variant (their `slo.ttftSeconds` / `slo.e2eSeconds`), held against vLLM's p99."""

    enabled: bool = Field(
        default=True,
        description="Scale on the routes' latency SLOs when a route that sends to this "
        "variant declares one; false turns the signal off for this variant.",
    )
    headroom: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Plan for the load per replica that keeps the observed p99 under this "
        "share of the strictest SLO (0.8: 20% below it).",
    )


class Variant(KubeModel):
    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "!has(self.schedules) || self.schedules.all(s, "
                    "s.replicas >= self.replicas.min && s.replicas <= self.replicas.max)",
                    "message": "every schedule's replicas must lie within replicas.min..max",
                    "fieldPath": ".schedules",
                }
            ]
        }
    }

    name: DnsLabel
    model: str = Field(min_length=1, description="Model to load and the served model name.")
    image: str = Field(default="vllm/vllm-openai:v0.11.0", min_length=1)
    args: list[str] = Field(default_factory=list, description="Extra vLLM server arguments.")
    port: int = Field(default=8000, ge=1, le=65535)
    gpus_per_replica: int = Field(ge=1, description="GPUs per replica (tensor parallel size).")
    gpu_type: str | None = Field(default=None, description="nvidia.com/gpu.product to select.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    priority: int = Field(default=0, description="Higher is more important under the budget.")
    cost_per_replica_hour: float = Field(default=0.0, ge=0)
    startup_seconds: int = Field(default=300, ge=0, description="Model load time.")
    requests_per_second_per_replica: float | None = Field(
        default=None,
        gt=0,
        description="Expected throughput of one replica, used for cost estimates "
        "before observations exist.",
    )
    replicas: ReplicaRange
    schedules: list[Schedule] = Field(
        default_factory=list,
        max_length=MAX_SCHEDULES,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    queue: QueueScaling | None = None
    forecast: ForecastScaling | None = Field(
        default=None,
        description="Provision ahead of demand seen at the same time a day or a week ago "
        "(`forecast: {}` for the defaults); unset = no forecast.",
    )
    slo: SloScaling = Field(
        default_factory=SloScaling,
        description="The latency-SLO signal (on by default where a route declares an SLO).",
    )

    def forecast_lead_seconds(self, refresh_seconds: float) -> float | None:
        """How far ahead the forecast provisions: forecast.leadSeconds, else the model's
        load time plus one planning cycle. None without a forecast."""
        if self.forecast is None:
            return None
        if self.forecast.lead_seconds is not None:
            return float(self.forecast.lead_seconds)
        return float(self.startup_seconds + refresh_seconds)

    @model_validator(mode="after")
    def _schedules_within_range(self) -> Variant:
        try:
            check_unique(
                [s.name for s in self.schedules], "name", "give each schedule its own name"
            )
        except FieldError as err:
            raise FieldError(f"schedules{err.subpath}", err.message) from None
        for index, schedule in enumerate(self.schedules):
            if not self.replicas.min <= schedule.replicas <= self.replicas.max:
                raise FieldError(
                    f"schedules[{index}].replicas",
                    f"{schedule.replicas} lies outside replicas.min..max "
                    f"({self.replicas.min}..{self.replicas.max}): "
                    "change the schedule or widen the range",
                )
        return self


class MetricsSource(KubeModel):
    prometheus_url: str | None = Field(
        default=None, description="Prometheus base URL; unset = the operator's default."
    )
    refresh_seconds: int = Field(default=30, ge=1, le=3600)
    stale_after_seconds: int = Field(default=120, ge=1)


class ModelPoolSpec(KubeModel):
    gpu_budget: int = Field(ge=0, description="GPUs the pool may use across all variants.")
    timezone: str = Field(default="UTC", description="IANA zone for schedules.")
    metrics: MetricsSource = Field(default_factory=MetricsSource)
    variants: list[Variant] = Field(
        min_length=1,
        max_length=MAX_VARIANTS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )

    @field_validator("timezone")
    @classmethod
    def _timezone_exists(cls, value: str) -> str:
        try:
            zone(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as 'Asia/Shanghai' or 'UTC'"
            ) from None
        return value

    @field_validator("variants")
    @classmethod
    def _variant_names_unique(cls, variants: list[Variant]) -> list[Variant]:
        check_unique([v.name for v in variants], "name", "give each variant its own name")
        return variants

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


class RecommendationSample(KubeModel):
    """A raw (pre-stabilization) replica count recommended at one instant."""

    at: Time = Field(description="When the recommendation was made.")
    replicas: int = Field(ge=0, description="Replicas the signals asked for then.")


class SignalStatus(KubeModel):
    """One scaling signal's opinion on a variant."""

    reason: str = Field(description="The signal: schedule, queue, reservation, hold, ...")
    replicas: int = Field(description="Replicas the signal asks for.")
    detail: str = Field(description="Why, in words.")


class ObservedStatus(KubeModel):
    """What the operator observed of a variant for this plan."""

    ready_replicas: int | None = Field(default=None, description="Ready replicas.")
    running: float | None = Field(default=None, description="Requests running (vLLM).")
    waiting: float | None = Field(default=None, description="Requests waiting (vLLM).")
    qps: float | None = Field(default=None, description="Requests finished per second.")
    p99_latency_seconds: float | None = Field(
        default=None, description="p99 end-to-end request latency."
    )
    error_rate: float | None = Field(default=None, description="Share of aborted requests.")
    p99_ttft_seconds: float | None = Field(
        default=None, description="p99 time to first token over the last minute."
    )
    p99_queue_seconds: float | None = Field(
        default=None, description="p99 time requests waited for a batch slot, last minute."
    )
    sampled_at: Time | None = Field(default=None, description="When the queue was sampled.")


class CapacityPoint(KubeModel):
    """How close to its SLOs a variant ran at one load per replica (a band 10% wide)."""

    requests_per_second: float = Field(
        description="Requests per second per ready replica (the middle of the band)."
    )
    slo_ratio: float = Field(
        description="Observed p99 over the strictest SLO, the worse of TTFT and e2e "
        "(1 = at the SLO), averaged over the cycles that ran at this load."
    )
    at: Time = Field(description="When the variant last ran at this load.")
    samples: int = Field(default=1, ge=1, description="How many planning cycles the average holds.")


class CapacityStatus(KubeModel):
    """The `slo` signal's memory: what one replica serves within the SLOs, learned from
    what the replicas served and how fast. Kept in status so a restarted operator keeps it."""

    requests_per_second_per_replica: float | None = Field(
        default=None,
        description="Requests per second one replica carries within the SLOs' headroom; "
        "demand over this is the replicas the slo and forecast signals ask for.",
    )
    basis: str = Field(
        default="",
        description="Where that number comes from: learned, exploring, spec (the "
        "variant's requestsPerSecondPerReplica), or none.",
    )
    detail: str = Field(default="", description="How it was learned, in words.")
    points: list[CapacityPoint] = Field(
        default_factory=list,
        description="The loads the variant ran at recently and how close to the SLOs.",
    )


class VariantStatus(KubeModel):
    """The plan for one variant and what it was based on."""

    name: str = Field(description="The variant.")
    desired_replicas: int = Field(default=0, ge=0, description="Replicas planned.")
    ready_replicas: int | None = Field(
        default=None, description="Ready replicas of its Deployment."
    )
    reason: str = Field(default="", description="The rule that decided the count.")
    message: str = Field(default="", description="The decision, explained.")
    floor: int = Field(default=0, description="Never fewer: replicas.min and reservations.")
    priority: int = Field(default=0, description="spec priority, used under the budget.")
    gpus_per_replica: int = Field(default=1, description="GPUs per replica.")
    gpus: int = Field(default=0, description="GPUs planned for the variant.")
    active_schedules: list[str] = Field(
        default_factory=list, description="Schedules whose window is open."
    )
    signals: list[SignalStatus] = Field(
        default_factory=list, description="Every signal that had an opinion."
    )
    observed: ObservedStatus | None = Field(
        default=None, description="The observations the plan used."
    )
    last_scale_time: Time | None = Field(
        default=None, description="When the desired count last changed."
    )
    recommendations: list[RecommendationSample] = Field(
        default_factory=list,
        description="Recent recommendations, for the stabilization windows.",
    )
    capacity: CapacityStatus | None = Field(
        default=None,
        description="The per-replica capacity within the SLOs, learned (slo signal).",
    )


class GrantStatus(KubeModel):
    """Whether the pool holds a Reservation's replicas."""

    namespace: str = Field(description="The Reservation's namespace.")
    name: str = Field(description="The Reservation.")
    tenant: str = Field(description="The tenant it holds capacity for.")
    variant: str = Field(description="The variant it holds capacity on.")
    replicas: int = Field(description="Replicas it asks for.")
    active: bool = Field(description="Whether its window is open.")
    granted: bool = Field(description="Whether all its replicas are held.")
    granted_replicas: int = Field(description="Replicas held for it.")
    message: str = Field(description="Why, in words.")


class ModelPoolStatus(KubeModel):
    """The operator's plan for the pool, and its memory: a restarted operator reads the
    previous plan from here, so a restart alone changes no replica count."""

    observed_generation: int | None = Field(
        default=None, description="The spec generation this plan is for."
    )
    planned_at: Time | None = Field(default=None, description="When the plan was made.")
    gpu_budget: int | None = Field(default=None, description="spec.gpuBudget when planned.")
    gpus_planned: int | None = Field(default=None, description="GPUs the plan uses.")
    desired_replicas: int | None = Field(
        default=None, description="Replicas planned, all variants."
    )
    ready_replicas: int | None = Field(default=None, description="Ready replicas, all variants.")
    variants: list[VariantStatus] = Field(default_factory=list, description="Per variant.")
    reservations: list[GrantStatus] = Field(
        default_factory=list, description="The pool's Reservations and their grants."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Overcommitted, CapacityLimited, MetricsAvailable.",
    )


class ModelPool(Resource):
    kind: Literal["ModelPool"] = "ModelPool"
    spec: ModelPoolSpec
    status: ModelPoolStatus | None = None
