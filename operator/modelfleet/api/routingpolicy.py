"""RoutingPolicy: how the gateway spreads requests over a pool's variants."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelfleet.api.common import Condition, DnsLabel, FieldError, KubeModel, Resource, check_unique
from modelfleet.api.pod_template import PodTemplate

CEL = "x-kubernetes-validations"

# Bounds for the API server's CEL cost estimate (see modelpool.py).
MAX_ROUTES = 128
MAX_BACKENDS = 64
MAX_DEGRADE_RULES = 64
MAX_CLASSIFICATION_RULES = 32
MAX_KEYWORDS = 64
MIB = 1024 * 1024


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
        default=None, gt=0, le=3600, description="Target time to the first token, in seconds."
    )
    e2e_seconds: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        alias="e2eSeconds",
        description="Target time to the whole answer, in seconds; also the route's timeout "
        "at the gateway (instead of spec.gateway.timeouts.routeSeconds).",
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
    fallback: DnsLabel | None = Field(
        default=None,
        description="The variant that gets the one retry of a request whose first choice "
        "failed before sending a byte (5xx, refused connection, no answer within "
        "spec.gateway.fallback.firstByteSeconds). Default: the route's other backend with "
        "the largest weight; a route with one backend retries that variant.",
    )

    @field_validator("backends")
    @classmethod
    def _weights_positive_sum(cls, backends: list[Backend]) -> list[Backend]:
        if sum(b.weight for b in backends) <= 0:
            raise ValueError("all weights are 0: give at least one backend a positive weight")
        check_unique([b.variant for b in backends], "variant", "merge the weights")
        return backends

    def accepts_task_type(self, task_type: str) -> bool:
        """Whether a request with this task type and no model can match this route."""
        return not self.match.model and (
            not self.match.task_type or task_type in self.match.task_type
        )


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

    key_id: str = Field(min_length=1, max_length=63, description="The API key's id.")
    requests_per_minute: int = Field(
        ge=1, le=10_000_000, description="That key's requests per minute."
    )


class RateLimit(KubeModel):
    """Requests per minute per API key, for the whole gateway."""

    requests_per_minute: int = Field(
        default=600, ge=1, le=10_000_000, description="Per API key, by default."
    )
    per_key: list[KeyRateLimit] = Field(
        default_factory=list, max_length=1000, description="Other limits for some keys."
    )


class GatewayTimeouts(KubeModel):
    """How long the gateway waits for clients and backends."""

    request_headers_seconds: float = Field(
        default=10,
        gt=0,
        le=3600,
        description="A client must send all headers of a request within this time of their "
        "first byte, or its connection is closed (slowloris).",
    )
    request_receive_seconds: float = Field(
        default=60,
        gt=0,
        le=3600,
        description="The whole request (headers and body) must arrive within this time, or "
        "the gateway answers 408.",
    )
    idle_connection_seconds: float = Field(
        default=300,
        gt=0,
        le=86400,
        description="A client connection with no request in flight is closed after this time.",
    )
    stream_idle_seconds: float = Field(
        default=300,
        gt=0,
        le=86400,
        description="A request on which neither side sends a byte for this long is ended. "
        "Inference routes wait their route timeout instead: a model server sends nothing "
        "until a non-streamed answer is complete.",
    )
    route_seconds: float = Field(
        default=600,
        gt=0,
        le=86400,
        description="Longest time from a request to the last byte of its answer (a stream "
        "included) on a route without slo.e2eSeconds; such a route uses slo.e2eSeconds.",
    )


class GatewayLimits(KubeModel):
    """What one gateway replica accepts."""

    max_body_bytes: int = Field(
        default=4 * MIB,
        ge=64 * 1024,
        le=64 * MIB,
        description="Largest request body the gateway reads to route and check it; a larger "
        "one gets 413 before any parsing. Reading costs time in proportion to the size.",
    )
    max_request_headers_kib: int = Field(
        default=60,
        ge=8,
        le=1024,
        description="Largest total size of a request's headers in KiB; larger gets 431.",
    )
    max_connections: int = Field(
        default=10000,
        ge=1,
        le=1_000_000,
        description="Open client connections per gateway replica; further connections are "
        "closed at once (the stats listener is not counted).",
    )


class GatewayFallback(KubeModel):
    """Retrying a failed request once on another backend, within a budget."""

    first_byte_seconds: float = Field(
        default=60,
        gt=0,
        le=86400,
        description="An attempt with no response byte after this long gets a second attempt "
        "on the fallback; the first of the two to answer wins and the other is cancelled. A "
        "non-streamed answer's first byte comes when it is complete.",
    )
    retry_budget_percent: float = Field(
        default=20,
        gt=0,
        le=100,
        description="Retries in flight stay below this share of the requests in flight to "
        "each first-choice variant, so a broken variant cannot double the load.",
    )
    min_retry_concurrency: int = Field(
        default=3,
        ge=0,
        le=10000,
        description="Retries allowed in flight whatever the budget, for quiet variants.",
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
    NetworkPolicy): where its config goes, its keys, limits, timeouts and pods."""

    config_map: DnsLabel = Field(
        description="ConfigMap the Envoy config is written to (the routes, which carry the "
        "keys, go to the Secret `<configMap>-routes`)."
    )
    listener_port: int = Field(
        default=8080, ge=1, le=65535, description="Port the gateway serves the OpenAI API on."
    )
    api_key_secret: DnsLabel = Field(
        description="Secret holding the API keys (entry keys.yaml: `keys: [{id, key, tenant}]`)."
    )
    rate_limit: RateLimit = Field(
        default_factory=RateLimit,
        description="Requests per minute per API key, for the whole gateway (each of its "
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
    timeouts: GatewayTimeouts = Field(
        default_factory=GatewayTimeouts, description="Client and backend timeouts."
    )
    limits: GatewayLimits = Field(
        default_factory=GatewayLimits, description="Body, header and connection limits."
    )
    fallback: GatewayFallback = Field(
        default_factory=GatewayFallback,
        description="When a failed request is retried on the route's fallback.",
    )


class PromptLength(KubeModel):
    """The prompt's length in a range (both ends included)."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "has(self.min) || has(self.max)",
                    "message": "promptLength needs min, max or both",
                },
                {
                    "rule": "!has(self.min) || !has(self.max) || self.min <= self.max",
                    "message": "promptLength.min must be <= promptLength.max",
                    "fieldPath": ".min",
                },
            ]
        }
    }

    min: int | None = Field(default=None, ge=0, description="Shortest matching prompt.")
    max: int | None = Field(default=None, ge=0, description="Longest matching prompt.")
    unit: Literal["tokens", "characters"] = Field(
        default="tokens",
        description="`characters` counts the bytes of the prompt's text as sent; `tokens` is "
        "that count divided by 4, rounded up (the gateway has no tokenizer).",
    )

    @model_validator(mode="after")
    def _a_range(self) -> PromptLength:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise FieldError("min", f"{self.min} is greater than max ({self.max})")
        return self


# RE2 has no lookaround and no backreferences; Envoy would refuse the render.
_NOT_RE2 = re.compile(r"\\\\|\\(?P<backref>[1-9])|(?P<lookaround>\(\?<?[=!])")


def check_re2(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as err:
        raise ValueError(f"not a regular expression: {err}") from None
    for found in _NOT_RE2.finditer(pattern):
        if found.group("backref"):
            raise ValueError(r"backreferences (\1 ...) are not RE2: rewrite without them")
        if found.group("lookaround"):
            raise ValueError("lookahead/lookbehind are not RE2: rewrite without them")
    return pattern


class ClassificationRule(KubeModel):
    """Assigns a task type to a request that names neither a task type nor a model."""

    model_config = KubeModel.model_config | {
        "json_schema_extra": {
            CEL: [
                {
                    "rule": "(has(self.keywords) && size(self.keywords) > 0 ? 1 : 0) + "
                    "(has(self.regex) ? 1 : 0) + (has(self.promptLength) ? 1 : 0) == 1",
                    "message": "a rule needs exactly one of keywords, regex or promptLength",
                }
            ]
        }
    }

    name: DnsLabel = Field(description="Shown in the audit log and the x-modelfleet-rule header.")
    task_type: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The task type a matching request is routed as.",
    )
    keywords: list[str] = Field(
        default_factory=list,
        max_length=MAX_KEYWORDS,
        description="Matches when the text contains any of these (case-insensitive).",
    )
    regex: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="Matches when this RE2 regular expression is found in the text.",
    )
    in_: Literal["lastUserMessage", "systemPrompt"] = Field(
        default="lastUserMessage",
        alias="in",
        description="The text keywords and regex look at: the last user message (a "
        "completion's prompt) or the system prompt (the first system or developer message).",
    )
    prompt_length: PromptLength | None = Field(
        default=None,
        description="Matches on the length of the whole prompt (every message's text).",
    )

    @field_validator("keywords")
    @classmethod
    def _keywords_not_blank(cls, keywords: list[str]) -> list[str]:
        for index, keyword in enumerate(keywords):
            if not keyword.strip():
                raise FieldError(f"[{index}]", "is blank: every keyword needs a character")
        return keywords

    @field_validator("regex")
    @classmethod
    def _regex_is_re2(cls, regex: str | None) -> str | None:
        return None if regex is None else check_re2(regex)

    @model_validator(mode="after")
    def _one_test(self) -> ClassificationRule:
        given = [bool(self.keywords), self.regex is not None, self.prompt_length is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of keywords, regex or promptLength")
        return self


class Classification(KubeModel):
    """Routing for requests with neither `task_type` nor `model` (nor x-task-type)."""

    rules: list[ClassificationRule] = Field(
        default_factory=list,
        max_length=MAX_CLASSIFICATION_RULES,
        description="Tried in order; the first that matches assigns its task type.",
    )
    default_route: DnsLabel | None = Field(
        default=None,
        description="The route for such requests when no rule matches and no route matches "
        "them as they are (instead of 404).",
    )
    text_prefix_bytes: int = Field(
        default=2048,
        ge=64,
        le=16384,
        description="Rules see at most this many bytes of each text, which bounds their cost.",
    )

    @field_validator("rules")
    @classmethod
    def _rule_names_unique(cls, rules: list[ClassificationRule]) -> list[ClassificationRule]:
        check_unique([r.name for r in rules], "name", "give each rule its own name")
        return rules


class RoutingPolicySpec(KubeModel):
    """How one gateway with one API key spreads requests over a pool's variants."""

    pool: DnsLabel = Field(description="The ModelPool, in the same namespace.")
    gateway: Gateway = Field(
        description="The gateway's Envoy: where its config goes, its API keys, limits, "
        "timeouts and fallback."
    )
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
    classification: Classification | None = Field(
        default=None,
        description="Task types for requests that name neither a task type nor a model.",
    )

    @field_validator("routes")
    @classmethod
    def _route_names_unique(cls, routes: list[Route]) -> list[Route]:
        check_unique([r.name for r in routes], "name", "give each route its own name")
        return routes

    @model_validator(mode="after")
    def _classification_has_routes(self) -> RoutingPolicySpec:
        if self.classification is None:
            return self
        names = [route.name for route in self.routes]
        default = self.classification.default_route
        if default is not None and default not in names:
            raise FieldError(
                "classification.defaultRoute",
                f"no route {default!r}: use one of {', '.join(names)}",
            )
        for index, rule in enumerate(self.classification.rules):
            if not any(route.accepts_task_type(rule.task_type) for route in self.routes):
                raise FieldError(
                    f"classification.rules[{index}].taskType",
                    f"no route serves task type {rule.task_type!r} to a request without a "
                    "model: add it to a route's match.taskType",
                )
        return self


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
