"""Names the gateway's pieces share: headers, metadata keys, paths, resource names."""

from __future__ import annotations

# Set by the gateway for the backend; anything a client sends under these names is dropped.
CLIENT_ID_HEADER = "x-client-id"
TENANT_HEADER = "x-tenant"
# Read from the client.
TASK_TYPE_HEADER = "x-task-type"
API_KEY_HEADERS = ("authorization", "x-api-key")

# Where json_to_metadata puts what it read from the request body.
METADATA_NAMESPACE = "modelfleet.request"
MODEL_KEY = "model"
TASK_TYPE_KEY = "task_type"
BODY_ERROR_KEY = "body_error"

# The OpenAI endpoints that carry a prompt, and the field that must not be empty.
INPUT_FIELD_BY_PATH = {
    "/v1/chat/completions": "messages",
    "/v1/completions": "prompt",
    "/v1/embeddings": "input",
}
MODELS_PATH = "/v1/models"

LISTENER_NAME = "gateway"
ROUTE_CONFIG_NAME = "gateway"
HTTP_STAT_PREFIX = "gateway"
RATE_LIMIT_STAT_PREFIX = "rate_limit"
RATE_LIMIT_DESCRIPTOR_KEY = "client_id"

# Stat tags extracted from the per-key virtual clusters, named `<tenant>_<key id>`.
TENANT_TAG = "tenant"
KEY_ID_TAG = "key_id"

BOOTSTRAP_FILE = "envoy.yaml"
LISTENERS_FILE = "lds.yaml"
CLUSTERS_FILE = "cds.yaml"
ROUTES_FILE = "rds.yaml"
# Renamed into place in this order: clusters before the routes that name them.
SWAP_ORDER = (BOOTSTRAP_FILE, CLUSTERS_FILE, LISTENERS_FILE, ROUTES_FILE)


def virtual_cluster_name(tenant: str, key_id: str) -> str:
    return f"{tenant}_{key_id}"
