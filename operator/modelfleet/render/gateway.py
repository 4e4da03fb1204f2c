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
from modelfleet.render.envoy.pieces import files_digest
from modelfleet.render.envoy.render import DEFAULT_ACCESS_LOG, DEFAULT_STATS_PORT, render_gateway
from modelfleet.render.envoy.xds import HostPort
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
    """One gateway's files, their hash, and what the ConfigMap + Secret that carry them
    are named and owned by. The two objects are built when asked for, not kept: the
    Secret's base64 text would be one more copy of the routes per policy."""

    namespace: str
    policy: str
    files: Mapping[str, str]
    config_hash: str
    config_map_name: str
    owner: Mapping[str, Any]  # the policy's ownerReference

    @property
    def config_map(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self._metadata(self.config_map_name),
            "data": {file: self.files[file] for file in CONFIGMAP_FILES},
        }

    @property
    def secret(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": self._metadata(self.secret_name),
            "data": {file: _base64(self.files[file]) for file in SECRET_FILES},
        }

    def _metadata(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**MANAGED_BY, POLICY_LABEL: self.policy},
            "annotations": {CONFIG_HASH_ANNOTATION: self.config_hash},
            "ownerReferences": [dict(self.owner)],
        }

    @property
    def secret_name(self) -> str:
        return routes_secret_name(self.config_map_name)

    def in_config_map(self, live: Mapping[str, Any] | None) -> bool:
        """Whether a live ConfigMap carries its files under this hash (keys others added
        are theirs: the sidecar and Envoy ignore files they do not know)."""
        data = self._data_if_ours(live)
        return data is not None and all(data.get(f) == self.files[f] for f in CONFIGMAP_FILES)

    def in_secret(self, live: Mapping[str, Any] | None) -> bool:
        """The same for the Secret: its data decoded to compare (no encoded copy kept)."""
        data = self._data_if_ours(live)
        return data is not None and all(
            _decoded(data.get(f)) == self.files[f] for f in SECRET_FILES
        )

    def _data_if_ours(self, live: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """A live object's data when it carries this hash."""
        if live is None:
            return None
        annotations = (live.get("metadata") or {}).get("annotations") or {}
        if annotations.get(CONFIG_HASH_ANNOTATION) != self.config_hash:
            return None
        return live.get("data") or {}


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _decoded(encoded: Any) -> str | None:
    """A Secret value's text, or None when it is not base64 of UTF-8."""
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None


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
        return GatewayConfig(
            policy.namespace,
            policy.name,
            files,
            files_digest(files),
            policy.spec.gateway.config_map,
            owner_reference(policy),
        )

    return make() if cache is None else cache.made_from(policy, files, make)


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
