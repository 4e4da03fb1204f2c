"""RoutingPolicy: how the gateway spreads requests over a pool's variants."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelfleet.api.common import Condition, DnsLabel, FieldError, KubeModel, Resource, check_unique
from modelfleet.api.pod_template import PodTemplate

CEL = "x-kubernetes-validations"

# Bounds for the API server's CEL cost estimate (see modelpool.py).
MAX_ROUTES = 128
MAX_BACKENDS = 64
MAX_DEGRADE_RULES = 64


class HeaderMatch(KubeModel):
    """A request header and the exact value it must have."""

    name: str = Field(
        min_length=1, max_length=256, pattern=r"^[A-Za-z0-9-]+$", description="Header name."
    )
    value: str = Field(max_length=1024, description="Exact value.")


class RouteMatch(KubeModel):
    """Which requests the route takes: any listed task type or model, and all headers."""

    task_type: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Any of these task types (body `task_type` or header x-task-type).",
    )
    model: list[str] = Field(
        default_factory=list, max_length=64, description="Any of these requested models."
    )
    headers: list[HeaderMatch] = Field(
        default_factory=list, max_length=16, description="All of these headers."
    )


class Backend(KubeModel):
    """A variant the route sends to, with its share."""

    variant: DnsLabel = Field(description="A variant of the pool.")
    weight: int = Field(ge=0, le=1000, description="Relative share; 0 = never.")


class RouteSlo(KubeModel):
    """The latency the route's clients are promised."""

    ttft_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Time to first token, seconds."
    )
    e2e_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        alias="e2eSeconds",
        description="Whole request, seconds.",
    )


class Route(KubeModel):
    """A class of requests and the variants that serve it."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "self.backends.exists(b, b.weight > 0)",
                    "message": "at least one backend needs a weight above 0",
                    "fieldPath": ".backends",
                }
            ]
        }
    }

    name: DnsLabel = Field(description="The route's name, unique in the policy.")
    match: RouteMatch = Field(
        default_factory=RouteMatch, description="Which requests; empty = every request."
    )
    backends: list[Backend] = Field(
        min_length=1,
        max_length=MAX_BACKENDS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["variant"],
        },
        description="Where requests go, by weight (variants without a ready replica drop out).",
    )
    max_cost_per_request: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Drop backends that cost more per request (the cheapest always stays).",
    )
    slo: RouteSlo | None = Field(default=None, description="The route's latency targets.")

    @field_validator("backends")
    @classmethod
    def _weights_positive_sum(cls, backends: list[Backend]) -> list[Backend]:
        if sum(b.weight for b in backends) <= 0:
            raise ValueError("all weights are 0: give at least one backend a positive weight")
        check_unique([b.variant for b in backends], "variant", "merge the weights")
        return backends


class DegradeRule(KubeModel):
    """Under backlog, send one priority of requests to a fallback variant."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "self.fallback != self.variant",
                    "message": "fallback must name another variant than the watched one",
                    "fieldPath": ".fallback",
                }
            ]
        }
    }

    variant: DnsLabel = Field(description="The variant whose backlog is watched.")
    waiting_above: int = Field(
        ge=0, le=1_000_000, description="Waiting requests that trip the rule."
    )
    priority: str = Field(
        default="low",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Value of the x-priority header that is sent to the fallback.",
    )
    fallback: DnsLabel = Field(description="The variant that takes those requests instead.")

    @model_validator(mode="after")
    def _fallback_differs(self) -> DegradeRule:
        if self.fallback == self.variant:
            raise FieldError("fallback", "is the watched variant itself: name another variant")
        return self


class KeyRateLimit(KubeModel):
    """A rate limit for one API key."""

    key_id: str = Field(min_length=1, max_length=63, description="The key's id.")
    requests_per_minute: int = Field(ge=1, le=10_000_000, description="Its limit.")


class RateLimit(KubeModel):
    """Requests per minute per API key."""

    requests_per_minute: int = Field(
        default=600, ge=1, le=10_000_000, description="Per API key, by default."
    )
    per_key: list[KeyRateLimit] = Field(
        default_factory=list, max_length=1000, description="Other limits for named keys."
    )


class GatewayService(KubeModel):
    """The Service clients reach the gateway through."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="ClusterIP, NodePort or LoadBalancer."
    )
    port: int = Field(default=80, ge=1, le=65535, description="The Service's port.")
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations of the Service (e.g. for a cloud load balancer).",
    )


class Gateway(KubeModel):
    """The gateway that serves the policy (the operator runs it: a Deployment of Envoy with
    the gateway-sync sidecar, its Service, PodDisruptionBudget, ServiceAccount and Role,
    NetworkPolicy): where its config goes, its keys, its limits, its pods."""

    config_map: DnsLabel = Field(
        description="ConfigMap the Envoy config is written to (the routes, which carry the "
        "keys, go to the Secret `<configMap>-routes`)."
    )
    listener_port: int = Field(
        default=8080, ge=1, le=65535, description="Port clients send requests to."
    )
    api_key_secret: DnsLabel = Field(
        description="Secret holding the API keys (entry keys.yaml: `keys: [{id, key, tenant}]`)."
    )
    rate_limit: RateLimit = Field(
        default_factory=RateLimit,
        description="Per-key request rate limits, for the whole gateway (each of its "
        "replicas enforces its share).",
    )
    replicas: int = Field(default=2, ge=1, le=100, description="Gateway pods.")
    service: GatewayService = Field(
        default_factory=GatewayService, description="How clients reach the gateway."
    )
    template: PodTemplate | None = Field(
        default=None,
        description="Merged onto the gateway pods: resources of the `envoy` container, "
        "scheduling, annotations... The operator keeps what it owns (docs/operator.md).",
    )


class RoutingPolicySpec(KubeModel):
    """How one gateway with one API key spreads requests over a pool's variants."""

    pool: DnsLabel = Field(description="The ModelPool, in the same namespace.")
    gateway: Gateway = Field(description="The gateway.")
    routes: list[Route] = Field(
        min_length=1,
        max_length=MAX_ROUTES,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
        description="The routes; a request takes the first that matches.",
    )
    degrade: list[DegradeRule] = Field(
        default_factory=list,
        max_length=MAX_DEGRADE_RULES,
        description="Rules that move a priority of requests to a fallback under backlog.",
    )

    @field_validator("routes")
    @classmethod
    def _route_names_unique(cls, routes: list[Route]) -> list[Route]:
        check_unique([r.name for r in routes], "name", "give each route its own name")
        return routes


class EffectiveBackend(KubeModel):
    """A backend as the gateway weights it now."""

    variant: str = Field(description="The variant.")
    weight: int = Field(description="Its share of the route, out of 100.")


class EffectiveRoute(KubeModel):
    """A route of the gateway's table as planned now."""

    name: str = Field(description="The route (a degrade companion: <route>-degraded-...).")
    match: RouteMatch = Field(default_factory=RouteMatch, description="What it matches.")
    backends: list[EffectiveBackend] = Field(
        default_factory=list, description="Where it sends requests, by weight."
    )
    degraded_from: str | None = Field(
        default=None, description="On a degrade companion: the route it stands in for."
    )
    note: str | None = Field(
        default=None, description="Why the weights differ from the spec, if they do."
    )


class RoutingPolicyStatus(KubeModel):
    """The gateway's routing table and whether it serves it."""

    observed_generation: int | None = Field(
        default=None, description="The spec generation this status is for."
    )
    config_hash: str | None = Field(
        default=None,
        description="Hash of the Envoy files written (the config-hash annotation on the "
        "gateway's ConfigMap and Secret).",
    )
    routes: list[EffectiveRoute] = Field(
        default_factory=list, description="The routing table as written."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Ready.")


class RoutingPolicy(Resource):
    """One gateway and one API key in front of a pool: routes by task type, model or
    header to weighted variants, with keys, rate limits and degrade rules."""

    kind: Literal["RoutingPolicy"] = Field(default="RoutingPolicy", description="RoutingPolicy.")
    spec: RoutingPolicySpec
    status: RoutingPolicyStatus | None = None
