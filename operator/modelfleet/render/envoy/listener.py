"""LDS: the listener, its filter chain, the audit log and the error bodies Envoy makes.

Filter order: drop spoofable headers -> API key -> per-key rate limit -> read the JSON
body into metadata (re-picks the route) -> Lua input check -> router.
"""

from __future__ import annotations

from typing import Any

from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.render.envoy.errors import error_object
from modelfleet.render.envoy.lua import input_check_script
from modelfleet.render.envoy.names import (
    API_KEY_HEADERS,
    BODY_ERROR_KEY,
    CLIENT_ID_HEADER,
    HTTP_STAT_PREFIX,
    LISTENER_NAME,
    METADATA_NAMESPACE,
    MODEL_KEY,
    RATE_LIMIT_DESCRIPTOR_KEY,
    RATE_LIMIT_STAT_PREFIX,
    ROUTE_CONFIG_NAME,
    ROUTES_FILE,
    TASK_TYPE_HEADER,
    TASK_TYPE_KEY,
    TENANT_HEADER,
)
from modelfleet.render.envoy.xds import (
    HostPort,
    any_of,
    file_config_source,
    filter_name,
    socket_address,
)

LISTENER_TYPE = "envoy.config.listener.v3.Listener"
# Prompts are buffered whole (body routing, input check); 16 MiB fits long contexts and
# images. Larger requests get 413.
BODY_LIMIT_BYTES = 16 * 1024 * 1024

MAX_KEY_BUCKETS = 10_000

ACCESS_LOG_FIELDS = {
    "time": "%START_TIME%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "key_id": f"%REQ({CLIENT_ID_HEADER.upper()})%",
    "tenant": f"%REQ({TENANT_HEADER.upper()})%",
    "model": f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{MODEL_KEY})%",
    "task_type": f"%DYNAMIC_METADATA({METADATA_NAMESPACE}:{TASK_TYPE_KEY})%",
    "task_type_header": f"%REQ({TASK_TYPE_HEADER.upper()})%",
    "priority": "%REQ(X-PRIORITY)%",
    "method": "%REQ(:METHOD)%",
    # Without the query string: clients sometimes put secrets there.
    "path": "%PATH(NQ)%",
    "route": "%ROUTE_NAME%",
    "cluster": "%UPSTREAM_CLUSTER%",
    "upstream_host": "%UPSTREAM_HOST%",
    "status": "%RESPONSE_CODE%",
    "response_flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
}


def listener(
    policy: RoutingPolicy, listen: HostPort, config_dir: str, access_log_path: str
) -> dict[str, Any]:
    manager = {
        "@type": any_of(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        ),
        "stat_prefix": HTTP_STAT_PREFIX,
        "codec_type": "AUTO",
        "use_remote_address": True,
        # Clients can quote the id of the log line of their request.
        "always_set_request_id_in_response": True,
        "normalize_path": True,
        "merge_slashes": True,
        "rds": {
            "route_config_name": ROUTE_CONFIG_NAME,
            "config_source": file_config_source(f"{config_dir}/{ROUTES_FILE}", config_dir),
        },
        "access_log": [access_log(access_log_path)],
        "local_reply_config": local_reply_config(),
        "http_filters": http_filters(policy),
    }
    return {
        "@type": any_of(LISTENER_TYPE),
        "name": LISTENER_NAME,
        "address": socket_address(listen),
        "per_connection_buffer_limit_bytes": BODY_LIMIT_BYTES,
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


def http_filters(policy: RoutingPolicy) -> list[dict[str, Any]]:
    return [
        strip_gateway_headers(),
        api_key_auth(),
        rate_limit(policy),
        json_to_metadata(),
        lua(),
        {
            "name": filter_name("router"),
            "typed_config": {"@type": any_of("envoy.extensions.filters.http.router.v3.Router")},
        },
    ]


def strip_gateway_headers() -> dict[str, Any]:
    """A client must not pose as another key or tenant, not even in a 401's log line."""
    return {
        "name": filter_name("header_mutation"),
        "typed_config": {
            "@type": any_of("envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"),
            "mutations": {
                "request_mutations": [
                    {"remove": CLIENT_ID_HEADER},
                    {"remove": TENANT_HEADER},
                ]
            },
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


def json_to_metadata() -> dict[str, Any]:
    """`model` and `task_type` from the body into metadata for route matching and the log;
    an unparsable body is marked for the Lua check."""
    marked_unparsable = {
        "metadata_namespace": METADATA_NAMESPACE,
        "key": BODY_ERROR_KEY,
        "value": "invalid_json",
    }
    rules = [
        {
            "selectors": [{"key": key}],
            "on_present": {"metadata_namespace": METADATA_NAMESPACE, "key": key, "type": "STRING"},
            "on_error": marked_unparsable,
        }
        for key in (MODEL_KEY, TASK_TYPE_KEY)
    ]
    return {
        "name": filter_name("json_to_metadata"),
        "typed_config": {
            "@type": any_of("envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata"),
            "request_rules": {
                "rules": rules,
                # Parse whatever the client sent: `curl -d` says form-urlencoded, and a
                # body that is not JSON must get the 400, not slip through unparsed.
                "allow_content_types_regex": {"regex": ".*"},
                "allow_empty_content_type": True,
            },
        },
    }


def lua() -> dict[str, Any]:
    """The script without tenants; RDS replaces it per virtual host with the tenant map."""
    return {
        "name": filter_name("lua"),
        "typed_config": {
            "@type": any_of("envoy.extensions.filters.http.lua.v3.Lua"),
            "default_source_code": {"inline_string": input_check_script({})},
        },
    }


def local_reply_config() -> dict[str, Any]:
    """OpenAI-style JSON for the errors Envoy itself produces (direct responses and the Lua
    check already answer JSON and are not touched)."""

    def mapper(status: int, op: str, error: dict[str, Any]) -> dict[str, Any]:
        return {
            "filter": {
                "status_code_filter": {
                    "comparison": {
                        "op": op,
                        "value": {
                            "default_value": status,
                            "runtime_key": f"modelfleet.local_reply.{op.lower()}_{status}",
                        },
                    }
                }
            },
            "body_format_override": {"json_format": error},
        }

    return {
        "mappers": [
            mapper(
                401,
                "EQ",
                error_object(
                    "missing or unknown API key: send 'Authorization: Bearer <key>' or "
                    "'x-api-key: <key>'",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            ),
            mapper(
                413,
                "EQ",
                error_object(
                    f"request body larger than {BODY_LIMIT_BYTES // (1024 * 1024)} MiB",
                    "invalid_request_error",
                    "request_too_large",
                ),
            ),
            mapper(
                429,
                "EQ",
                error_object(
                    "rate limit reached for this API key: retry later",
                    "requests",
                    "rate_limit_exceeded",
                ),
            ),
            mapper(
                500,
                "GE",
                error_object(
                    "%LOCAL_REPLY_BODY%",
                    "server_error",
                    "upstream_unavailable",
                ),
            ),
        ]
    }
