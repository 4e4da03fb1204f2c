"""Every name the operator and its readers agree on, stated once: the API group and its
plurals, the labels and annotations on written objects, the names of derived objects, the
field manager."""

from __future__ import annotations

from typing import Any

GROUP = "modelfleet.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# kind -> plural of the three custom resources (crds/ is generated from this table too).
PLURALS = {
    "ModelPool": "modelpools",
    "Reservation": "reservations",
    "RoutingPolicy": "routingpolicies",
}
POOLS, RESERVATIONS, POLICIES = (PLURALS[k] for k in ("ModelPool", "Reservation", "RoutingPolicy"))

# Server-side apply: the operator owns what it writes under this manager.
FIELD_MANAGER = "modelfleet"

MANAGED_BY = {"app.kubernetes.io/managed-by": "modelfleet"}
POOL_LABEL = f"{GROUP}/pool"
VARIANT_LABEL = f"{GROUP}/variant"
POLICY_LABEL = f"{GROUP}/routing-policy"
# On a gateway's ConfigMap and Secret: the hash of the files they carry together, the same
# value as the RoutingPolicy's status.configHash.
CONFIG_HASH_ANNOTATION = f"{GROUP}/config-hash"
# Informational in a cluster; the local cluster's node agent delays readiness by it.
STARTUP_ANNOTATION = f"{GROUP}/startup-seconds"

# The entry of a RoutingPolicy's API-key Secret: YAML `keys: [{id, key, tenant}]`.
API_KEYS_FIELD = "keys.yaml"


def workload_name(pool: str, variant: str) -> str:
    """The Deployment and Service of one variant."""
    return f"{pool}-{variant}"


def routes_secret_name(config_map: str) -> str:
    """The Secret beside a gateway's ConfigMap: the routes, which carry the API keys."""
    return f"{config_map}-routes"


def owner_reference(owner: Any) -> dict[str, Any]:
    """A controller reference to a parsed custom resource: what it owns goes with it."""
    return {
        "apiVersion": API_VERSION,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


# Set by the gateway (never accepted from a client) on a request whose API key is over a
# `degrade` budget; the routing table's budget companions match on it.
BUDGET_HEADER = "x-modelfleet-budget"
BUDGET_DEGRADED = "degrade"
