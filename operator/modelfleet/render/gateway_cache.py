"""Rendering a gateway in proportion to what changed.

A gateway's files are mostly YAML that depends on the specs, the keys and the Service
addresses, which change rarely; the route weights change whenever readiness or load does.
So per policy the cache keeps:

- the bootstrap and listener files, and apart from them the clusters file (the only one
  a change of the table's shape can touch), each for the inputs it was rendered from;
- the routes file rendered once per *shape* of the routing table (which routes, which
  backends, no weights) with a unique placeholder in place of each weight, and the
  canonical JSON its version is the digest of. A weight change fills the placeholders in
  both and takes the new digest: no YAML is built.

The result is byte-identical to a full `render_gateway` (tests compare them on random
changes); a placeholder that does not appear exactly once falls back to the full render.
Memory stays flat: one entry per policy, holding the last inputs and the last shape.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.routing.table import RoutingTable
from modelfleet.render.envoy.fallback import fallback_pairs
from modelfleet.render.envoy.names import ROUTES_FILE
from modelfleet.render.envoy.render import (
    check_inputs,
    clusters_files,
    dump_yaml,
    listener_files,
    routes_file,
)
from modelfleet.render.envoy.routes import route_configuration
from modelfleet.render.envoy.xds import HostPort, discovery_response, short_digest

# Placeholders no real weight (1..100), port or limit can be: 9,876,500,000 + i.
_FIRST_PLACEHOLDER = 9_876_500_000
_PLACEHOLDER_YAML = re.compile(r"weight: (98765\d{5})\n")
_PLACEHOLDER_JSON = re.compile(r'"weight":(98765\d{5})')


@dataclass(frozen=True)
class RoutesTemplate:
    """The routes file of one table shape, weights left open."""

    text: str
    canonical: str
    version: str
    slots: int

    def fill(self, weights: Sequence[int]) -> str:
        by_placeholder = {str(_FIRST_PLACEHOLDER + i): str(w) for i, w in enumerate(weights)}
        canonical = _PLACEHOLDER_JSON.sub(
            lambda m: f'"weight":{by_placeholder[m.group(1)]}', self.canonical
        )
        text = _PLACEHOLDER_YAML.sub(lambda m: f"weight: {by_placeholder[m.group(1)]}\n", self.text)
        return text.replace(self.version, short_digest(canonical), 1)


def _shape(table: RoutingTable) -> tuple[RoutingTable, list[int]]:
    """The table with each weight replaced by its placeholder, and the weights in order."""
    weights: list[int] = []
    routes = []
    for route in table.routes:
        backends = []
        for backend in route.backends:
            backends.append(replace(backend, weight=_FIRST_PLACEHOLDER + len(weights)))
            weights.append(backend.weight)
        routes.append(replace(route, backends=tuple(backends), note=""))
    return replace(table, routes=tuple(routes)), weights


def _template(
    shape: RoutingTable, pool: ModelPool, policy: RoutingPolicy, keys: Sequence[ApiKey]
) -> RoutesTemplate | None:
    resources = [route_configuration(shape, pool, policy, keys)]
    canonical = json.dumps(resources, sort_keys=True, separators=(",", ":"))
    document = discovery_response(resources, canonical)
    text = dump_yaml(document)
    slots = sum(len(route.backends) for route in shape.routes)
    version = document["version_info"]
    # A route that matches in several ways repeats its weights; every placeholder must
    # stand where a weight is, as often in the YAML as in the JSON, and nowhere else.
    in_yaml = Counter(_PLACEHOLDER_YAML.findall(text))
    in_json = Counter(_PLACEHOLDER_JSON.findall(canonical))
    placeholders = {str(_FIRST_PLACEHOLDER + i) for i in range(slots)}
    if (
        in_yaml != in_json
        or set(in_yaml) != placeholders
        or any(text.count(p) != n or canonical.count(p) != n for p, n in in_yaml.items())
        or text.count(version) != 1
    ):
        return None
    return RoutesTemplate(text, canonical, version, slots)


@dataclass
class _Entry:
    listener_key: tuple | None = None
    listener: dict[str, str] = field(default_factory=dict)
    clusters_key: tuple | None = None
    clusters: dict[str, str] = field(default_factory=dict)
    routes_key: tuple | None = None
    template: RoutesTemplate | None = None


class GatewayRenderCache:
    """What one operator process remembers of each policy's last render."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, namespace: str, policy: str) -> None:
        self._entries.pop((namespace, policy), None)

    def render(
        self,
        table: RoutingTable,
        pool: ModelPool,
        policy: RoutingPolicy,
        keys: Sequence[ApiKey],
        backends: Mapping[str, HostPort],
        listen: HostPort,
        admin: HostPort,
        config_dir: str,
        access_log_path: str,
        stats: HostPort,
    ) -> dict[str, str]:
        check_inputs(table, pool, policy, admin)
        key = (policy.namespace, policy.name)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        # Specs change rarely; each is written out once per render to compare it.
        policy_spec, pool_spec = policy.spec.model_dump_json(), pool.spec.model_dump_json()
        listener_key = (
            # A route's backends and weights reach the files only through the table.
            policy.spec.model_dump_json(exclude={"routes": {"__all__": {"backends"}}}),
            listen,
            admin,
            config_dir,
            access_log_path,
            stats,
        )
        if entry.listener_key != listener_key:
            entry.listener_key = listener_key
            entry.listener = listener_files(
                policy, listen, admin, config_dir, access_log_path, stats
            )
        # The clusters depend on the table only through the fallback pairs its routes use:
        # a variant leaving a route (unready, say) changes them, never the listener.
        pairs = tuple(fallback_pairs(policy, table))
        clusters_key = (
            pool.name,
            pool_spec,
            policy.spec.gateway.fallback.model_dump_json(),
            tuple(sorted(backends.items())),
            pairs,
        )
        if entry.clusters_key != clusters_key:
            entry.clusters_key = clusters_key
            entry.clusters = clusters_files(pool, policy, backends, pairs)
        static = {**entry.listener, **entry.clusters}
        shape, weights = _shape(table)
        # The routes also carry the keys and what the specs say of each route.
        routes_key = (
            shape,
            policy_spec,
            pool_spec,
            tuple(keys),
        )
        if entry.routes_key != routes_key:
            entry.routes_key, entry.template = routes_key, _template(shape, pool, policy, keys)
        if entry.template is None:  # a shape the placeholders cannot stand in for
            return {**static, ROUTES_FILE: routes_file(table, pool, policy, keys)}
        return {**static, ROUTES_FILE: entry.template.fill(weights)}
