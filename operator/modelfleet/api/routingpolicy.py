"""RoutingPolicy: how the gateway spreads requests over a pool's variants."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelfleet.api.common import Condition, DnsLabel, FieldError, KubeModel, Resource, check_unique

CEL = "x-kubernetes-validations"

# Bounds for the API server's CEL cost estimate (see modelpool.py).
MAX_ROUTES = 128
MAX_BACKENDS = 64
MAX_DEGRADE_RULES = 64


class HeaderMatch(KubeModel):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9-]+$")
    value: str


class RouteMatch(KubeModel):
    task_type: list[str] = Field(default_factory=list, description="Any of these task types.")
    model: list[str] = Field(default_factory=list, description="Any of these requested models.")
    headers: list[HeaderMatch] = Field(default_factory=list, description="All of these headers.")


class Backend(KubeModel):
    variant: DnsLabel
    weight: int = Field(ge=0, le=1000)


class RouteSlo(KubeModel):
    ttft_seconds: float | None = Field(default=None, gt=0)
    e2e_seconds: float | None = Field(default=None, gt=0, alias="e2eSeconds")


class Route(KubeModel):
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

    name: DnsLabel
    match: RouteMatch = Field(default_factory=RouteMatch)
    backends: list[Backend] = Field(
        min_length=1,
        max_length=MAX_BACKENDS,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["variant"],
        },
    )
    max_cost_per_request: float | None = Field(default=None, gt=0)
    slo: RouteSlo | None = None

    @field_validator("backends")
    @classmethod
    def _weights_positive_sum(cls, backends: list[Backend]) -> list[Backend]:
        if sum(b.weight for b in backends) <= 0:
            raise ValueError("all weights are 0: give at least one backend a positive weight")
        check_unique([b.variant for b in backends], "variant", "merge the weights")
        return backends


class DegradeRule(KubeModel):
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
    waiting_above: int = Field(ge=0, description="Waiting requests that trip the rule.")
    priority: str = Field(
        default="low",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Value of the x-priority header that is sent to the fallback.",
    )
    fallback: DnsLabel

    @model_validator(mode="after")
    def _fallback_differs(self) -> DegradeRule:
        if self.fallback == self.variant:
            raise FieldError("fallback", "is the watched variant itself: name another variant")
        return self


class KeyRateLimit(KubeModel):
    key_id: str = Field(min_length=1)
    requests_per_minute: int = Field(ge=1)


class RateLimit(KubeModel):
    requests_per_minute: int = Field(default=600, ge=1, description="Per API key, by default.")
    per_key: list[KeyRateLimit] = Field(default_factory=list)


class Gateway(KubeModel):
    config_map: DnsLabel = Field(description="ConfigMap the Envoy config is written to.")
    listener_port: int = Field(default=8080, ge=1, le=65535)
    api_key_secret: DnsLabel = Field(description="Secret holding the API keys.")
    rate_limit: RateLimit = Field(default_factory=RateLimit)


class RoutingPolicySpec(KubeModel):
    pool: DnsLabel
    gateway: Gateway
    routes: list[Route] = Field(
        min_length=1,
        max_length=MAX_ROUTES,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    degrade: list[DegradeRule] = Field(default_factory=list, max_length=MAX_DEGRADE_RULES)

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
    kind: Literal["RoutingPolicy"] = "RoutingPolicy"
    spec: RoutingPolicySpec
    status: RoutingPolicyStatus | None = None
