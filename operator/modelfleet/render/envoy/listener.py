"""LDS: the listener, its filter chain, timeouts, the audit log, the token counters and the
error bodies Envoy makes.

Filter order: drop spoofable headers -> API key -> per-key rate limit -> Lua (reads the
body once: routing fields, input check, classification text, stream usage) -> router.
"""

from __future__ import annotations

from typing import Any

from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.render.envoy.lua import UNROUTED_SCRIPT
from modelfleet.render.envoy.names import (
    API_KEY_HEADERS,
    BUDGET_HEADER,
    BUDGET_KEY,
    CALLS_STAT,
    CLASSIFY_HEADERS,
    CLIENT_ID_HEADER,
    COMPLETION_TOKENS_KEY,
    ENDPOINT_NAMESPACE,
    ENVOY_CONTROL_HEADERS,
    HTTP_STAT_PREFIX,
    LISTENER_NAME,
    METADATA_NAMESPACE,
    MODEL_KEY,
    POLICY_TAG,
    POOL_TAG,
    PROMPT_TOKENS_KEY,
    RATE_LIMIT_DESCRIPTOR_KEY,
    RATE_LIMIT_STAT_PREFIX,
    REQUESTS_STAT,
    RESPONSE_NAMESPACE,
    ROUTE_CONFIG_NAME,
    ROUTE_NAMESPACE,
    ROUTES_FILE,
    RULE_KEY,
    TASK_TYPE_HEADER,
    TASK_TYPE_KEY,
    TENANT_HEADER,
    TOKEN_STAT_PREFIX,
    USAGE_KEY,
    VARIANT_KEY,
)
from modelfleet.render.envoy.replies import local_reply_config
from modelfleet.render.envoy.xds import (
    HostPort,
    any_of,
    duration,
    file_config_source,
    filter_name,
    socket_address,
)

LISTENER_TYPE = "envoy.config.listener.v3.Listener"
HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

MAX_KEY_BUCKETS = 10_000


def _request_metadata(key: str) -> str:
    return f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{key})%"


def _response_metadata(key: str) -> str:
    return f"%DYNAMIC_METADATA({RESPONSE_NAMESPACE}:{key})%"


VARIANT = f"%UPSTREAM_METADATA({ENDPOINT_NAMESPACE}:{VARIANT_KEY})%"
KEY_ID = f"%REQ({CLIENT_ID_HEADER.upper()})%"
TENANT = f"%REQ({TENANT_HEADER.upper()})%"

ACCESS_LOG_FIELDS = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "key_id": KEY_ID,
    "tenant": TENANT,
    "model": _request_metadata(MODEL_KEY),
    "task_type": _request_metadata(TASK_TYPE_KEY),
    "task_type_header": f"%REQ({TASK_TYPE_HEADER.upper()})%",
    # Set when a classification rule (or the default route) routed the request.
    "rule": f"%METADATA(ROUTE:{ROUTE_NAMESPACE}:{RULE_KEY})%",
    "assigned_task_type": f"%METADATA(ROUTE:{ROUTE_NAMESPACE}:{TASK_TYPE_KEY})%",
    "priority": "%REQ(X-PRIORITY)%",
    "method": "%REQ(:METHOD)%",
    # Without the query string: clients sometimes put secrets there.
    "path": "%PATH(NQ)%",
    "route": "%ROUTE_NAME%",
    # The first choice's cluster: a variant, or `<variant>.fallback-<variant>`.
    "cluster": "%UPSTREAM_CLUSTER%",
    # The variant that answered, after a retry the fallback.
    "variant": VARIANT,
    "upstream_host": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "status": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "stream_usage": _request_metadata(USAGE_KEY),
    # "block" or "degrade" while a budget of the key or its tenant is spent.
    "budget": _request_metadata(BUDGET_KEY),
    "prompt_tokens": _response_metadata(PROMPT_TOKENS_KEY),
    "completion_tokens": _response_metadata(COMPLETION_TOKENS_KEY),
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
}


def listener(
    policy: RoutingPolicy, listen: HostPort, config_dir: str, access_log_path: str
) -> dict[str, Any]:
    gateway = policy.spec.gateway
    timeouts = gateway.timeouts
    manager = {
        "@type": any_of(HCM_TYPE),
        "stat_prefix": HTTP_STAT_PREFIX,
        "codec_type": "AUTO",
        "use_remote_address": True,
        # No client is "internal" (trusted with x-envoy-* control headers), whatever its
        # address: an empty list would mean Envoy's default (private and loopback ranges),
        # so the one range is an address no client has.
        "internal_address_config": {
            "cidr_ranges": [{"address_prefix": "0.0.0.0", "prefix_len": 32}]
        },
        # Clients can quote the id of the log line of their request.
        "always_set_request_id_in_response": True,
        "normalize_path": True,
        "merge_slashes": True,
        "request_headers_timeout": duration(timeouts.request_headers_seconds),
        "request_timeout": duration(timeouts.request_receive_seconds),
        "stream_idle_timeout": duration(timeouts.stream_idle_seconds),
        "common_http_protocol_options": {
            "idle_timeout": duration(timeouts.idle_connection_seconds),
        },
        "max_request_headers_kb": gateway.limits.max_request_headers_kib,
        # Old clients and load balancers' probes still speak HTTP/1.0, often without Host.
        "http_protocol_options": {
            "accept_http_10": True,
            "default_host_for_http_10": LISTENER_NAME,
        },
        "rds": {
            "route_config_name": ROUTE_CONFIG_NAME,
            "config_source": file_config_source(f"{config_dir}/{ROUTES_FILE}", config_dir),
        },
        "access_log": [
            access_log(access_log_path),
            token_counters(policy),
            call_counter(policy),
        ],
        "local_reply_config": local_reply_config(policy.spec.gateway.limits.max_body_bytes),
        "http_filters": http_filters(policy),
    }
    return {
        "@type": any_of(LISTENER_TYPE),
        "name": LISTENER_NAME,
        "address": socket_address(listen),
        # Bodies are read whole (routing, input check); a larger one gets 413 unread.
        "per_connection_buffer_limit_bytes": gateway.limits.max_body_bytes,
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def access_log(path: str) -> dict[str, Any]:
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": any_of("envoy.extensions.access_loggers.file.v3.FileAccessLog"),
            "path": path,
            "log_format": {"json_format": ACCESS_LOG_FIELDS},
        },
    }


def _scope_tags(policy: RoutingPolicy) -> list[dict[str, str]]:
    """Which gateway counted: budgets and the ledger select the counters by them."""
    return [
        {"name": POLICY_TAG, "value_format": policy.name},
        {"name": POOL_TAG, "value_format": policy.spec.pool},
    ]


def token_counters(policy: RoutingPolicy) -> dict[str, Any]:
    """envoy_modelfleet_{requests,prompt_tokens,completion_tokens}{key_id, tenant, route,
    variant, policy, pool} on /stats/prometheus: each answer with usage counts once, its
    usage added to the token counters (requests without usage are not counted here). What
    the billing and the budgets charge."""
    tags = [
        {"name": "key_id", "value_format": KEY_ID},
        {"name": "tenant", "value_format": TENANT},
        {"name": "route", "value_format": "%ROUTE_NAME%"},
        {"name": "variant", "value_format": VARIANT},
        *_scope_tags(policy),
    ]
    return {
        "name": "envoy.access_loggers.stats",
        "filter": {
            "metadata_filter": {
                "matcher": {
                    "filter": RESPONSE_NAMESPACE,
                    "path": [{"key": PROMPT_TOKENS_KEY}],
                    "value": {"present_match": True},
                },
                "match_if_key_not_found": False,
            }
        },
        "typed_config": {
            "@type": any_of("envoy.extensions.access_loggers.stats.v3.Config"),
            "stats_scope": {"prefix": TOKEN_STAT_PREFIX},
            "counters": [
                {"stat": {"name": REQUESTS_STAT, "tags": tags}, "value_fixed": 1},
                *(
                    {
                        "stat": {"name": key, "tags": tags},
                        "value_format": _response_metadata(key),
                    }
                    for key in (PROMPT_TOKENS_KEY, COMPLETION_TOKENS_KEY)
                ),
            ],
        },
    }


def call_counter(policy: RoutingPolicy) -> dict[str, Any]:
    """envoy_modelfleet_calls{key_id, tenant, response_code, policy, pool}: every request,
    those the gateway refused too (401 with no key id, 429, 400...): what the alerts on a
    key's calls count."""
    tags = [
        {"name": "key_id", "value_format": KEY_ID},
        {"name": "tenant", "value_format": TENANT},
        {"name": "response_code", "value_format": "%RESPONSE_CODE%"},
        *_scope_tags(policy),
    ]
    return {
        "name": "envoy.access_loggers.stats",
        "typed_config": {
            "@type": any_of("envoy.extensions.access_loggers.stats.v3.Config"),
            "stats_scope": {"prefix": TOKEN_STAT_PREFIX},
            "counters": [{"stat": {"name": CALLS_STAT, "tags": tags}, "value_fixed": 1}],
        },
    }


def http_filters(policy: RoutingPolicy) -> list[dict[str, Any]]:
    return [
        strip_gateway_headers(),
        api_key_auth(),
        rate_limit(policy),
        lua(),
        {
            "name": filter_name("router"),
            "typed_config": {"@type": any_of("envoy.extensions.filters.http.router.v3.Router")},
        },
    ]


def strip_gateway_headers() -> dict[str, Any]:
    """A client must not pose as another key or tenant (not even in a 401's log line), mark
    itself over budget, feed classification rules its own text, or steer Envoy's retries and
    timeouts."""
    removed = [
        CLIENT_ID_HEADER,
        TENANT_HEADER,
        BUDGET_HEADER,
        *CLASSIFY_HEADERS,
        *ENVOY_CONTROL_HEADERS,
    ]
    return {
        "name": filter_name("header_mutation"),
        "typed_config": {
            "@type": any_of("envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"),
            "mutations": {"request_mutations": [{"remove": name} for name in removed]},
        },
    }


def api_key_auth() -> dict[str, Any]:
    """Where keys come from and what the backend sees; the keys themselves are in RDS."""
    return {
        "name": filter_name("api_key_auth"),
        "typed_config": {
            "@type": any_of("envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth"),
            "key_sources": [{"header": name} for name in API_KEY_HEADERS],
            "forwarding": {"header": CLIENT_ID_HEADER, "hide_credentials": True},
        },
    }


def token_bucket(requests_per_minute: int) -> dict[str, Any]:
    return {
        "max_tokens": requests_per_minute,
        "tokens_per_fill": requests_per_minute,
        "fill_interval": "60s",
    }


def per_replica(requests_per_minute: int, replicas: int) -> int:
    """A gateway replica's share of a limit: each Envoy counts only what it serves, and the
    Service spreads a key's requests over the replicas."""
    return max(1, -(-requests_per_minute // replicas))


def rate_limit(policy: RoutingPolicy) -> dict[str, Any]:
    """One token bucket per API key: the per-key overrides by value, every other key by the
    descriptor without a value (Envoy makes a bucket per distinct key id). Limits are per
    gateway; each replica enforces its share."""
    limits = policy.spec.gateway.rate_limit
    replicas = policy.spec.gateway.replicas
    enabled = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
    overrides = sorted(limits.per_key, key=lambda k: k.key_id)
    descriptors = [
        {
            "entries": [{"key": RATE_LIMIT_DESCRIPTOR_KEY, "value": override.key_id}],
            "token_bucket": token_bucket(per_replica(override.requests_per_minute, replicas)),
        }
        for override in overrides
    ]
    descriptors.append(
        {
            "entries": [{"key": RATE_LIMIT_DESCRIPTOR_KEY}],
            "token_bucket": token_bucket(per_replica(limits.requests_per_minute, replicas)),
        }
    )
    return {
        "name": filter_name("local_ratelimit"),
        "typed_config": {
            "@type": any_of("envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"),
            "stat_prefix": RATE_LIMIT_STAT_PREFIX,
            "token_bucket": token_bucket(per_replica(limits.requests_per_minute, replicas)),
            "filter_enabled": {**enabled, "runtime_key": "modelfleet.rate_limit.enabled"},
            "filter_enforced": {**enabled, "runtime_key": "modelfleet.rate_limit.enforced"},
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            # The fallback bucket only serves requests no descriptor matches (none do:
            # every authenticated request has a key id); by default Envoy would drain it for
            # every request and so cap all keys together.
            "always_consume_default_token_bucket": False,
            # Buckets of keys without an override live in an LRU of this size; an evicted
            # key would start again with a full bucket.
            "max_dynamic_descriptors": MAX_KEY_BUCKETS,
            "descriptors": descriptors,
            "rate_limits": [
                {
                    "actions": [
                        {
                            "request_headers": {
                                "header_name": CLIENT_ID_HEADER,
                                "descriptor_key": RATE_LIMIT_DESCRIPTOR_KEY,
                            }
                        }
                    ]
                }
            ],
        },
    }


def lua() -> dict[str, Any]:
    """The filter in the chain (the routes' `LuaPerRoute` needs it there); its script comes
    from the routes file's virtual host. Its own script refuses what that does not cover."""
    return {
        "name": filter_name("lua"),
        "typed_config": {
            "@type": any_of("envoy.extensions.filters.http.lua.v3.Lua"),
            "default_source_code": {"inline_string": UNROUTED_SCRIPT},
        },
    }
