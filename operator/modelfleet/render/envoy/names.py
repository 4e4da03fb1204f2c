"""Names the gateway's pieces share: headers, metadata keys, paths, resource names."""

from __future__ import annotations

# Set by the Lua script for a key over a degrade budget (api/names.py: the plan matches on it).
from modelfleet.api.names import BUDGET_DEGRADED as BUDGET_DEGRADED
from modelfleet.api.names import BUDGET_HEADER as BUDGET_HEADER

# Set by the gateway for the backend; anything a client sends under these names is dropped.
CLIENT_ID_HEADER = "x-client-id"
TENANT_HEADER = "x-tenant"
# Read from the client.
TASK_TYPE_HEADER = "x-task-type"
API_KEY_HEADERS = ("authorization", "x-api-key")
# api_key_auth strips only "Bearer " (that spelling) from Authorization; a key sent with
# another spelling of the scheme arrives with it, so it is also listed that way.
BEARER_SPELLINGS = ("bearer ", "BEARER ")

# Set by the Lua script on requests with neither task type nor model, for classification rules
# (route matchers); never forwarded and never accepted from a client.
CLASSIFY_LAST_USER_HEADER = "x-modelfleet-last-user"
CLASSIFY_SYSTEM_HEADER = "x-modelfleet-system"
CLASSIFY_CHARS_HEADER = "x-modelfleet-prompt-chars"
CLASSIFY_TOKENS_HEADER = "x-modelfleet-prompt-tokens"
CLASSIFY_HEADERS = (
    CLASSIFY_LAST_USER_HEADER,
    CLASSIFY_SYSTEM_HEADER,
    CLASSIFY_CHARS_HEADER,
    CLASSIFY_TOKENS_HEADER,
)
# Told to the client: which classification rule routed its request, and as what task type.
RULE_RESPONSE_HEADER = "x-modelfleet-rule"
TASK_TYPE_RESPONSE_HEADER = "x-modelfleet-task-type"
DEFAULT_RULE = "default"

# Request headers that steer Envoy's router. A client must not raise its own retries or
# timeouts, so they are dropped before routing (Envoy honours them from "internal" clients).
ENVOY_CONTROL_HEADERS = (
    "x-envoy-max-retries",
    "x-envoy-retry-on",
    "x-envoy-retry-grpc-on",
    "x-envoy-retriable-status-codes",
    "x-envoy-retriable-header-names",
    "x-envoy-upstream-rq-timeout-ms",
    "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-hedge-on-per-try-timeout",
    "x-envoy-upstream-stream-duration-ms",
    "x-envoy-upstream-alt-stat-name",
)

# Where json_to_metadata puts what it read from the request body.
METADATA_NAMESPACE = "modelfleet.request"
MODEL_KEY = "model"
TASK_TYPE_KEY = "task_type"
# Only for a stream: "asked"/"injected" (whether the client asked for usage itself).
USAGE_KEY = "usage"
# "block" or "degrade": a budget of the request's key (or its tenant) is spent.
BUDGET_KEY = "budget"
# Where the Lua script puts the token counts it read from the answer.
RESPONSE_NAMESPACE = "modelfleet.response"
PROMPT_TOKENS_KEY = "prompt_tokens"
COMPLETION_TOKENS_KEY = "completion_tokens"
# Route metadata of the routes classification rules add.
ROUTE_NAMESPACE = "modelfleet.route"
RULE_KEY = "rule"
# Endpoint metadata: which variant a host belongs to (a fallback cluster spans two).
ENDPOINT_NAMESPACE = "modelfleet"
VARIANT_KEY = "variant"

# The OpenAI endpoints that carry a prompt, and the field that must not be empty.
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
INPUT_FIELD_BY_PATH = {
    CHAT_PATH: "messages",
    COMPLETIONS_PATH: "prompt",
    "/v1/embeddings": "input",
}
# The endpoints that stream (and so are asked for usage) and that classification rules read.
GENERATION_PATHS = (CHAT_PATH, COMPLETIONS_PATH)
MODELS_PATH = "/v1/models"

LISTENER_NAME = "gateway"
ROUTE_CONFIG_NAME = "gateway"
HTTP_STAT_PREFIX = "gateway"
RATE_LIMIT_STAT_PREFIX = "rate_limit"
RATE_LIMIT_DESCRIPTOR_KEY = "client_id"
# Counters from the access log: envoy_modelfleet_{requests,prompt_tokens,completion_tokens}
# of each answer with usage, envoy_modelfleet_calls of every request (refused ones too).
TOKEN_STAT_PREFIX = "modelfleet"
REQUESTS_STAT = "requests"
CALLS_STAT = "calls"
# Their constant tags: which policy's gateway, over which pool.
POLICY_TAG = "policy"
POOL_TAG = "pool"

# The read-only listener for probes and scrapes, and the admin interface behind it.
STATS_LISTENER_NAME = "stats"
STATS_STAT_PREFIX = "stats"
ADMIN_CLUSTER = "modelfleet-admin"
STATS_PATHS = ("/stats/prometheus", "/ready")

# Stat tags extracted from the per-key virtual clusters, named `<tenant>_<key id>`.
TENANT_TAG = "tenant"
KEY_ID_TAG = "key_id"
# ... and from fallback clusters, named `<variant>.fallback-<variant>`.
FALLBACK_TAG = "fallback"
FALLBACK_INFIX = "fallback-"

BOOTSTRAP_FILE = "envoy.yaml"
LISTENERS_FILE = "lds.yaml"
CLUSTERS_FILE = "cds.yaml"
ROUTES_FILE = "rds.yaml"
# Renamed into place in this order: clusters before the routes that name them.
SWAP_ORDER = (BOOTSTRAP_FILE, CLUSTERS_FILE, LISTENERS_FILE, ROUTES_FILE)


def virtual_cluster_name(tenant: str, key_id: str) -> str:
    return f"{tenant}_{key_id}"


def fallback_cluster_name(variant: str, fallback: str) -> str:
    """The cluster of requests whose first choice is `variant`, retried on `fallback`."""
    return f"{variant}.{FALLBACK_INFIX}{fallback}"
