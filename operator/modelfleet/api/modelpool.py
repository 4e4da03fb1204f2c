"""ModelPool: a shared GPU pool and the vLLM variants that run in it."""

from __future__ import annotations

from functools import cached_property
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
from modelfleet.api.names import workload_name
from modelfleet.api.pod_template import PodTemplate
from modelfleet.api.urls import MAX_URL_LENGTH, prometheus_url_problem

CEL = "x-kubernetes-validations"

# The API server refuses a CRD whose CEL rules could cost too much on the largest object a
# request can hold; bounding the lists that rules run over or inside keeps that estimate small.
MAX_VARIANTS = 64
MAX_SCHEDULES = 32
# Bounds a user can only exceed by mistake; they keep every derived number in int32 (a
# Deployment's replicas) and every derived name a DNS label.
MAX_REPLICAS = 10_000
MAX_GPU_BUDGET = 1_000_000
MAX_GPUS_PER_REPLICA = 64
MAX_SECONDS = 86_400
MAX_PRICE = 1_000_000.0
# `<pool>-<variant>` names the variant's Deployment and Service: a DNS label of <= 63.
MAX_WORKLOAD_NAME = 63
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"


class ReplicaRange(KubeModel):
    """How many replicas the variant may have."""

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

    min: int = Field(ge=0, le=MAX_REPLICAS, description="Replicas kept at all times.")
    max: int = Field(ge=0, le=MAX_REPLICAS, description="Replicas never exceeded.")

    @model_validator(mode="after")
    def _min_not_above_max(self) -> ReplicaRange:
        if self.min > self.max:
            raise FieldError(
                "min", f"{self.min} is greater than max ({self.max}): lower min or raise max"
            )
        return self


class Schedule(KubeModel):
    """A KEDA-cron style window: active from a `start` firing until the next `end` firing."""

    name: DnsLabel = Field(description="The schedule's name, unique within the variant.")
    start: str = Field(
        max_length=100, description="Cron (5 fields) in spec.timezone that opens the window."
    )
    end: str = Field(
        max_length=100, description="Cron (5 fields) in spec.timezone that closes the window."
    )
    replicas: int = Field(
        ge=0, le=MAX_REPLICAS, description="Replica floor while the window is open."
    )

    @field_validator("start", "end")
    @classmethod
    def _cron_parses(cls, value: str) -> str:
        try:
            parse_cron(value)
        except CronError as err:
            raise ValueError(str(err)) from None
        return value


class StepPolicy(KubeModel):
    """How fast replicas may change in one direction (as the HPA's scaling behavior)."""

    max_step: int | None = Field(
        default=None,
        ge=1,
        le=MAX_REPLICAS,
        description="Most replicas added or removed per cycle; unset = any.",
    )
    stabilization_seconds: int = Field(
        default=0,
        ge=0,
        le=MAX_SECONDS,
        description="A change happens only if every recommendation in this window agrees.",
    )


def default_scale_down() -> StepPolicy:
    return StepPolicy(max_step=None, stabilization_seconds=300)


class QueueScaling(KubeModel):
    """Scale on the vLLM queue: replicas = ceil((running + waiting) / targetPerReplica)."""

    target_per_replica: float = Field(
        gt=0, le=1_000_000, description="Requests (running + waiting) one replica should carry."
    )
    scale_up: StepPolicy = Field(
        default_factory=StepPolicy,
        description="Limits on scaling up (default: no step limit, no window).",
    )
    scale_down: StepPolicy = Field(
        default_factory=default_scale_down,
        description="Limits on scaling down (default: a 300 s stabilization window).",
    )


class OnDemandPrice(KubeModel):
    """What a tenant pays for its use of a variant when it holds no Reservation on it: per
    answered request and per thousand prompt and completion tokens (the gateway counts them
    from each answer's `usage`)."""

    per_request: float = Field(
        default=0, ge=0, le=MAX_PRICE, description="Price of one answered request."
    )
    per_thousand_prompt_tokens: float = Field(
        default=0, ge=0, le=MAX_PRICE, description="Price of 1,000 prompt (input) tokens."
    )
    per_thousand_completion_tokens: float = Field(
        default=0, ge=0, le=MAX_PRICE, description="Price of 1,000 completion (output) tokens."
    )

    def charge(self, requests: float, prompt_tokens: float, completion_tokens: float) -> float:
        return (
            requests * self.per_request
            + prompt_tokens / 1000 * self.per_thousand_prompt_tokens
            + completion_tokens / 1000 * self.per_thousand_completion_tokens
        )


HOUR_SECONDS = 3600
DAY_SECONDS = 86400
WEEK_SECONDS = 7 * DAY_SECONDS
MAX_LOOKBACK_SECONDS = 5 * WEEK_SECONDS
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
        # The bounds the validator below explains, for the API server's admission too.
        json_schema_extra={
            "items": {"type": "integer", "minimum": HOUR_SECONDS, "maximum": MAX_LOOKBACK_SECONDS}
        },
        description="Look-back periods in seconds (default one day and one week): the "
        "demand at the same time of day or week is the forecast; the largest wins.",
    )
    lead_seconds: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SECONDS,
        description="How far ahead to provision; unset = startupSeconds plus one "
        "spec.metrics.refreshSeconds, so replicas are ready when the demand comes.",
    )

    @field_validator("lookback_seconds")
    @classmethod
    def _lookbacks_positive(cls, periods: list[int]) -> list[int]:
        for index, period in enumerate(periods):
            if period < HOUR_SECONDS:
                raise FieldError(
                    f"[{index}]",
                    f"{period} is shorter than an hour: use a period demand repeats over, "
                    f"such as {DAY_SECONDS} (a day) or {WEEK_SECONDS} (a week)",
                )
            if period > MAX_LOOKBACK_SECONDS:
                raise FieldError(
                    f"[{index}]",
                    f"{period} is longer than five weeks: use a day ({DAY_SECONDS}) or a "
                    f"week ({WEEK_SECONDS}), within Prometheus' retention",
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
        default=0.85,
        gt=0,
        le=1,
        description="Plan for the load per replica that keeps the observed p99 under this "
        "share of the strictest SLO (0.85: 15% below it).",
    )


class Variant(KubeModel):
    """One model served by vLLM: its Deployment, Service and scaling rules."""

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

    name: DnsLabel = Field(
        description="The variant's name, unique in the pool; `<pool>-<variant>` names its "
        "Deployment and Service."
    )
    model: str = Field(
        min_length=1,
        max_length=253,
        description="Model to load (a Hugging Face id or a path) and the served model name.",
    )
    image: str = Field(
        default="vllm/vllm-openai:v0.11.0",
        min_length=1,
        max_length=512,
        description="The vLLM OpenAI server image.",
    )
    args: list[str] = Field(
        default_factory=list,
        max_length=128,
        description="Extra vLLM server arguments, after the ones the operator sets.",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="vLLM's HTTP port.")
    gpus_per_replica: int = Field(
        ge=1, le=MAX_GPUS_PER_REPLICA, description="GPUs per replica (tensor parallel size)."
    )
    gpu_type: str | None = Field(
        default=None,
        max_length=253,
        description="Value of the nodes' nvidia.com/gpu.product label to schedule on.",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="More node labels the replicas must run on."
    )
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Pod tolerations (default: tolerate the nvidia.com/gpu taint).",
    )
    priority: int = Field(
        default=0,
        ge=-1_000_000,
        le=1_000_000,
        description="Higher is more important: under the GPU budget, lower priorities are "
        "cut first.",
    )
    cost_per_replica_hour: float = Field(
        default=0.0, ge=0, le=MAX_PRICE, description="What one replica costs per hour."
    )
    on_demand_price: OnDemandPrice | None = Field(
        default=None,
        description="What tenants without a Reservation on this variant pay per request and "
        "per thousand tokens, in spec.currency; unset = nothing.",
    )
    startup_seconds: int = Field(
        default=300,
        ge=0,
        le=MAX_SECONDS,
        description="How long a replica takes to load its model and become ready.",
    )
    requests_per_second_per_replica: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Expected throughput of one replica, used for cost estimates "
        "before observations exist.",
    )
    replicas: ReplicaRange = Field(description="The replica range.")
    schedules: list[Schedule] = Field(
        default_factory=list,
        max_length=MAX_SCHEDULES,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description="Time-of-day windows with a replica floor (cron in spec.timezone).",
    )
    queue: QueueScaling | None = Field(
        default=None, description="Scale on the live queue; unset = no queue scaling."
    )
    template: PodTemplate | None = Field(
        default=None,
        description="Merged onto the replicas' pods, after the pool's template: env (an HF "
        "token from a Secret), volumes and mounts (a model cache), CPU/memory resources, "
        "scheduling, service account... The operator keeps what it owns (docs/operator.md).",
    )
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


class SecretKeyRef(KubeModel):
    """One key of a Secret in the pool's namespace."""

    name: DnsLabel = Field(description="The Secret's name (in the pool's namespace).")
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="The key within the Secret's data.",
    )


class MetricsTLS(KubeModel):
    ca_secret: SecretKeyRef | None = Field(
        default=None,
        description="PEM bundle of the CA(s) that signed Prometheus' serving certificate "
        "(e.g. key ca.crt of a cert-manager Secret); unset = the system trust store.",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description="Accept any certificate Prometheus presents. For tests only: anyone on "
        "the path can then read the credentials and forge the metrics.",
    )


class MetricsAuth(KubeModel):
    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "!(has(self.bearerTokenSecret) && has(self.basicAuthSecret))",
                    "message": "set bearerTokenSecret or basicAuthSecret, not both",
                }
            ]
        }
    }

    bearer_token_secret: SecretKeyRef | None = Field(
        default=None,
        description="Sent as `Authorization: Bearer <token>` (kube-rbac-proxy, OpenShift's "
        "thanos-querier, managed Prometheus gateways).",
    )
    basic_auth_secret: DnsLabel | None = Field(
        default=None,
        description="A Secret with keys `username` and `password` (type "
        "kubernetes.io/basic-auth), sent as HTTP basic auth.",
    )
    headers_secret: DnsLabel | None = Field(
        default=None,
        description="A Secret whose every key is an HTTP header name and its value the "
        "header's value, added to each query (e.g. X-Scope-OrgID for Mimir or Cortex).",
    )

    @model_validator(mode="after")
    def _one_authorization(self) -> MetricsAuth:
        if self.bearer_token_secret is not None and self.basic_auth_secret is not None:
            raise FieldError(
                "basicAuthSecret", "set bearerTokenSecret or basicAuthSecret, not both"
            )
        return self


class MetricsSource(KubeModel):
    """Where the pool's live metrics come from and how often the pool is planned."""

    prometheus_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        # The API server refuses other schemes and credentials in the URL too.
        json_schema_extra={"pattern": r"^https?://[^/@?#]+(/[^@]*)?$"},
        description="Prometheus base URL (http or https, e.g. "
        "https://prometheus.monitoring.svc:9090); unset = the operator's --prometheus-url.",
    )
    tls: MetricsTLS = Field(
        default_factory=MetricsTLS,
        description="How the operator checks Prometheus' certificate (https URLs).",
    )
    auth: MetricsAuth = Field(
        default_factory=MetricsAuth,
        description="Credentials for Prometheus, from Secrets in the pool's namespace.",
    )
    refresh_seconds: int = Field(
        default=30, ge=1, le=3600, description="Seconds between two plans of the pool."
    )
    stale_after_seconds: int = Field(
        default=120,
        ge=1,
        le=MAX_SECONDS,
        description="Queue samples older than this are not trusted: the queue signal holds.",
    )

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            problem = prometheus_url_problem(value)
            if problem:
                raise ValueError(problem)
        return value


class ModelPoolSpec(KubeModel):
    """A GPU budget and the model variants that share it."""

    gpu_budget: int = Field(
        ge=0, le=MAX_GPU_BUDGET, description="GPUs the pool may use across all variants."
    )
    timezone: str = Field(
        default="UTC",
        max_length=64,
        description="IANA zone the schedules are written in; budget periods (days, months) "
        "of the pool's RoutingPolicies start at midnight in it.",
    )
    currency: str = Field(
        default="USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code of costPerReplicaHour, the on-demand prices and the "
        "budgets of the pool's RoutingPolicies.",
    )
    metrics: MetricsSource = Field(
        default_factory=MetricsSource, description="Live metrics and the planning period."
    )
    template: PodTemplate | None = Field(
        default=None,
        description="Merged onto every variant's pods; a variant's own template extends it.",
    )
    variants: list[Variant] = Field(
        min_length=1,
        max_length=MAX_VARIANTS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description="The models served from the pool.",
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
        return self._variants_by_name.get(name)

    # The planner, the router and the ledger look variants up by name for every key and
    # route every refresh; the spec is frozen, so the index is made once per spec.
    @cached_property
    def _variants_by_name(self) -> dict[str, Variant]:
        return {v.name: v for v in self.variants}


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
    """A shared GPU pool: vLLM model variants the operator scales by time of day, live
    queue depth and reservations, within one GPU budget."""

    model_config = Resource.model_config | {
        "json_schema_extra": {
            CEL: [
                *Resource.model_config["json_schema_extra"][CEL],
                {
                    "rule": "self.spec.variants.all(v, self.metadata.name.size() + "
                    f"v.name.size() < {MAX_WORKLOAD_NAME})",
                    "message": "metadata.name + '-' + each variant name must fit in "
                    f"{MAX_WORKLOAD_NAME} characters (they name the variant's Deployment and "
                    "Service): shorten the pool or the variant name",
                    "fieldPath": ".spec.variants",
                },
            ]
        }
    }

    kind: Literal["ModelPool"] = Field(default="ModelPool", description="ModelPool.")
    spec: ModelPoolSpec
    status: ModelPoolStatus | None = None

    @model_validator(mode="after")
    def _workload_names_fit(self) -> ModelPool:
        for index, variant in enumerate(self.spec.variants):
            name = workload_name(self.metadata.name, variant.name)
            if len(name) > MAX_WORKLOAD_NAME:
                raise FieldError(
                    f"spec.variants[{index}].name",
                    f"{name[:20]}... is {len(name)} characters: `<pool>-<variant>` names the "
                    f"variant's Deployment and Service and must fit in {MAX_WORKLOAD_NAME}; "
                    "shorten the pool or the variant name",
                )
        return self
