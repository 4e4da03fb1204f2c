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
from modelfleet.api.urls import MAX_URL_LENGTH, prometheus_url_problem

CEL = "x-kubernetes-validations"

# The API server refuses a CRD whose CEL rules could cost too much on the largest object a
# request can hold; bounding the lists that rules run over or inside keeps that estimate small.
MAX_VARIANTS = 64
MAX_SCHEDULES = 32
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"


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


def _default_scale_down() -> StepPolicy:
    return StepPolicy(max_step=None, stabilization_seconds=300)


class QueueScaling(KubeModel):
    target_per_replica: float = Field(
        gt=0, description="Requests (running + waiting) one replica should carry."
    )
    scale_up: StepPolicy = Field(default_factory=StepPolicy)
    scale_down: StepPolicy = Field(default_factory=_default_scale_down)


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
    refresh_seconds: int = Field(default=30, ge=1, le=3600)
    stale_after_seconds: int = Field(default=120, ge=1)

    @field_validator("prometheus_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            problem = prometheus_url_problem(value)
            if problem:
                raise ValueError(problem)
        return value


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
    sampled_at: Time | None = Field(default=None, description="When the queue was sampled.")


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
