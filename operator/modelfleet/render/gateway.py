"""Pure: one RoutingPolicy's gateway as files and as the two objects that carry them.

The bootstrap, listeners and clusters go into the ConfigMap named by
`spec.gateway.configMap`; the routes into the Secret `<configMap>-routes`, because they
carry the API keys (Envoy's api_key_auth reads its credentials from the route
configuration). Both objects carry the files' hash, which is also the policy's
`status.configHash`: the sidecar publishes the files only when the two agree.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.names import (
    CONFIG_HASH_ANNOTATION,
    MANAGED_BY,
    POLICY_LABEL,
    owner_reference,
    routes_secret_name,
)
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.budgets import Gate
from modelfleet.plan.routing.table import RoutingTable
from modelfleet.render.envoy.names import (
    BOOTSTRAP_FILE,
    CLUSTERS_FILE,
    LISTENERS_FILE,
    ROUTES_FILE,
)
from modelfleet.render.envoy.render import DEFAULT_ACCESS_LOG, DEFAULT_STATS_PORT, render_gateway
from modelfleet.render.envoy.xds import HostPort, short_digest
from modelfleet.render.gateway_cache import GatewayRenderCache

CONFIGMAP_FILES = (BOOTSTRAP_FILE, LISTENERS_FILE, CLUSTERS_FILE)
SECRET_FILES = (ROUTES_FILE,)


@dataclass(frozen=True)
class GatewaySettings:
    """Where the gateway pods run Envoy: the directory the sidecar writes the files into,
    the listener's address (its port is the policy's `listenerPort` unless set here), the
    admin address (loopback: nothing outside the pod may reach it), the port of the
    read-only stats listener (/stats/prometheus and /ready, on the listener's host) and the
    audit log."""

    config_dir: str = "/etc/modelfleet/gateway"
    listen_host: str = "0.0.0.0"
    listen_port: int | None = None
    admin: HostPort = ("127.0.0.1", 9901)
    access_log: str = DEFAULT_ACCESS_LOG
    # The read-only listener for /stats/prometheus and the /ready probe.
    stats_port: int = DEFAULT_STATS_PORT
    # The gateway pods the operator runs for each policy: their image (Envoy and the
    # modelfleet sidecar; None: the operator writes configs only) and Envoy's resources.
    image: str | None = None
    ready_path: str = "/ready"
    resources: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class GatewayConfig:
    """One gateway's files, their hash and the ConfigMap + Secret that carry them."""

    namespace: str
    policy: str
    files: Mapping[str, str]
    config_hash: str
    config_map: dict[str, Any]
    secret: dict[str, Any]


def config_hash(files: Mapping[str, str]) -> str:
    return short_digest(*(part for name in sorted(files) for part in (name, files[name])))


def gateway_config(
    table: RoutingTable,
    pool: ModelPool,
    policy: RoutingPolicy,
    keys: Sequence[ApiKey],
    backends: Mapping[str, HostPort],
    settings: GatewaySettings,
    cache: GatewayRenderCache | None = None,
    gates: Mapping[str, Gate] | None = None,
) -> GatewayConfig:
    """The gateway of `policy`; with a `cache`, rendered in proportion to what changed
    since the policy's last render (the same bytes either way). `gates`: the API keys over
    a spent budget."""
    port = settings.listen_port
    if port is None:
        port = policy.spec.gateway.listener_port
    render = render_gateway if cache is None else cache.render
    files = render(
        table,
        pool,
        policy,
        keys,
        backends,
        listen=(settings.listen_host, port),
        admin=settings.admin,
        config_dir=settings.config_dir,
        access_log_path=settings.access_log,
        stats=(settings.listen_host, settings.stats_port),
        gates=gates,
    )

    def make() -> GatewayConfig:
        digest = config_hash(files)
        config_map, secret = gateway_objects(policy, files, digest)
        return GatewayConfig(policy.namespace, policy.name, files, digest, config_map, secret)

    return make() if cache is None else cache.made_from(policy, files, make)


def gateway_objects(
    policy: RoutingPolicy, files: Mapping[str, str], digest: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ConfigMap and Secret that carry one gateway's files."""
    name = policy.spec.gateway.config_map
    metadata = {
        "namespace": policy.namespace,
        "labels": {**MANAGED_BY, POLICY_LABEL: policy.name},
        "annotations": {CONFIG_HASH_ANNOTATION: digest},
        "ownerReferences": [owner_reference(policy)],
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **metadata},
        "data": {file: files[file] for file in CONFIGMAP_FILES},
    }
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": routes_secret_name(name), **metadata},
        "data": {file: base64.b64encode(files[file].encode()).decode() for file in SECRET_FILES},
    }
    return config_map, secret


def files_from_objects(
    config_map: Mapping[str, Any], secret: Mapping[str, Any]
) -> tuple[dict[str, str], str] | None:
    """The gateway's files and their hash as read back from the two objects, or None while
    they come from different renders (or one carries no hash)."""
    hashes = {
        (obj.get("metadata", {}).get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)
        for obj in (config_map, secret)
    }
    if len(hashes) != 1 or None in hashes:
        return None
    files = dict(config_map.get("data") or {})
    for name, encoded in (secret.get("data") or {}).items():
        files[name] = base64.b64decode(encoded).decode()
    return files, hashes.pop()
