"""Rendering a gateway in proportion to what changed.

A gateway's files are mostly YAML that depends on the specs, the keys and the Service
addresses, which change rarely; the route weights change whenever readiness or load does.
So per policy the cache keeps:

- the bootstrap and listener files, and apart from them the clusters file (the only one
  a change of the table's shape can touch), each for the inputs it was rendered from;
- the routes file rendered once per *shape* of the routing table (which routes, which
  backends, in which weight order) and budget gates (the keys over a spent budget), with
  a placeholder in place of each weight. A weight change fills the numbers in and takes
  the digest of the text for the version line: no YAML is built.
  A new shape rebuilds only the routes that changed (`render/routes_template.py`).

The result is byte-identical to a full `render_gateway` (tests compare them on random
changes); a template whose placeholders cannot be trusted falls back to the full render.
Memory stays flat: one entry per policy, holding the last inputs, shape and result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.budgets import Gate
from modelfleet.plan.routing.table import RoutingTable, TableRoute
from modelfleet.render.envoy.clusters import cluster as variant_cluster
from modelfleet.render.envoy.clusters import fallback_cluster, variant_addresses
from modelfleet.render.envoy.fallback import fallback_pairs
from modelfleet.render.envoy.listener import listener
from modelfleet.render.envoy.lua import script_body
from modelfleet.render.envoy.names import (
    BOOTSTRAP_FILE,
    CLUSTERS_FILE,
    LISTENERS_FILE,
    ROUTES_FILE,
)
from modelfleet.render.envoy.parts import Part, PartWriter
from modelfleet.render.envoy.pieces import FileText, GatewayFiles
from modelfleet.render.envoy.render import (
    bootstrap,
    check_inputs,
    clusters_files,
    dump_yaml,
    listener_files,
    routes_file,
)
from modelfleet.render.envoy.routes import per_filter_config
from modelfleet.render.envoy.xds import HostPort, short_digest
from modelfleet.render.routes_template import (
    ANY_PLACEHOLDER,
    RouteParts,
    RoutesTemplate,
    route_parts_of,
    routes_template,
    shape_key,
    shape_of,
)

T = TypeVar("T")


def _as_parts(value: Any) -> Any:
    """A non-empty mapping as a part, a list's non-empty mappings as parts."""
    if isinstance(value, dict) and value:
        return Part.of(value)
    if isinstance(value, list):
        return [Part.of(item) if isinstance(item, dict) and item else item for item in value]
    return value


@dataclass
class _SpecDigests:
    """A digest of a policy's and its pool's specs as JSON, for comparison, once per spec
    object (the operator parses a spec once per generation, so the object stands for it;
    a digest, not the text: the texts were 11 KB per policy held only to be compared)."""

    policy_spec: object = None
    pool_spec: object = None
    policy: str = ""
    listener: str = ""
    fallback: str = ""
    pool: str = ""

    def update(self, policy: RoutingPolicy, pool: ModelPool) -> None:
        if self.policy_spec is not policy.spec:
            self.policy_spec = policy.spec
            self.policy = short_digest(policy.spec.model_dump_json())
            # A route's backends and weights reach the listener only through the table.
            self.listener = short_digest(
                policy.spec.model_dump_json(exclude={"routes": {"__all__": {"backends"}}})
            )
            self.fallback = short_digest(policy.spec.gateway.fallback.model_dump_json())
        if self.pool_spec is not pool.spec:
            self.pool_spec = pool.spec
            self.pool = short_digest(pool.spec.model_dump_json())


@dataclass(frozen=True)
class _Inputs:
    """What one render read: the table and the specs by identity, the rest by value."""

    table: RoutingTable
    policy_spec: object
    pool_spec: object
    pool_name: str
    keys: tuple[ApiKey, ...]
    gates: dict[str, Gate]
    backends: dict[str, HostPort]
    settings: tuple[HostPort, HostPort, str, str, HostPort]  # listen, admin, dir, log, stats

    def same_as(self, other: _Inputs) -> bool:
        return (
            self.table is other.table
            and self.policy_spec is other.policy_spec
            and self.pool_spec is other.pool_spec
            and self.pool_name == other.pool_name
            and self.keys == other.keys
            and self.gates == other.gates
            and self.backends == other.backends
            and self.settings == other.settings
        )


@dataclass
class _Entry:
    specs: _SpecDigests = field(default_factory=_SpecDigests)
    listener_key: tuple | None = None
    listener: dict[str, str] = field(default_factory=dict)
    clusters_key: tuple | None = None
    clusters: dict[str, FileText] = field(default_factory=dict)
    # The fallback pairs, for the table shape and policy spec they were found for.
    pairs_key: tuple | None = None
    pairs: tuple[tuple[str, str], ...] = ()
    filter_key: tuple | None = None
    filter_config: Part | None = None
    routes_key: tuple | None = None
    template: RoutesTemplate | None = None
    weights: dict[int, int] | None = None
    routes: FileText = ""
    # Each table route's Envoy routes as parts, for the policy spec they were made from.
    route_parts: dict[TableRoute, RouteParts] = field(default_factory=dict)
    route_parts_spec: str = ""
    # Each cluster as a part (by variant and address, or fallback pair), for the fallback
    # spec they were made with.
    cluster_parts: dict[tuple[str, str, Any], Part] = field(default_factory=dict)
    cluster_parts_fallback: str = ""
    # The last result: handed out again while nothing in it changed.
    files: GatewayFiles | None = None
    inputs: _Inputs | None = None  # what `files` was rendered from
    made: tuple[GatewayFiles, str | None, Any] | None = None


class GatewayRenderCache:
    """What one operator process remembers of each policy's last render."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        # Every gateway's Lua script ends in the same code: one copy for all of them (and,
        # holding no weight's digits, not searched for weights).
        common = [script_body()] if not ANY_PLACEHOLDER.search(script_body()) else []
        self.parts = PartWriter(common_texts=common)

    def __len__(self) -> int:
        return len(self._entries)

    def forget(self, namespace: str, policy: str) -> None:
        self._entries.pop((namespace, policy), None)

    def made_from(
        self, policy: RoutingPolicy, files: Mapping[str, str], make: Callable[[], T]
    ) -> T:
        """`make()` (what is built from the files, e.g. their hash and objects), made again
        only when the files or the policy changed since the last call."""
        entry = self._entries[(policy.namespace, policy.name)]
        made = entry.made
        if made is not None and made[0] is files and made[1] == policy.metadata.uid:
            return made[2]
        value = make()
        entry.made = (files, policy.metadata.uid, value)
        return value

    @staticmethod
    def _route_parts(entry: _Entry, policy: RoutingPolicy) -> Callable[[TableRoute], RouteParts]:
        """Each table route's Envoy routes, made once per shape of the route: a template
        for a new table shape remakes only the routes that changed. Only the routes of the
        latest table are kept, and only by key (their YAML is in the part store)."""
        if entry.route_parts_spec != entry.specs.policy:
            entry.route_parts, entry.route_parts_spec = {}, entry.specs.policy
        before, kept = entry.route_parts, {}

        def parts_of(route: TableRoute) -> RouteParts:
            found = before.get(route)
            if found is None:
                found = route_parts_of(route, policy)
                kept[route] = found.lean()
            else:
                kept[route] = found
            entry.route_parts = kept
            return found

        return parts_of

    def _clusters(
        self,
        entry: _Entry,
        pool: ModelPool,
        policy: RoutingPolicy,
        backends: Mapping[str, HostPort],
        pairs: Sequence[tuple[str, str]],
    ) -> dict[str, FileText]:
        """The clusters file, each cluster made and written once per content: a fallback
        pair that comes or goes makes and writes only its own cluster. (The parts are kept
        by key: the store holds their YAML.)"""
        fallback = policy.spec.gateway.fallback
        if entry.cluster_parts_fallback != entry.specs.fallback:
            entry.cluster_parts, entry.cluster_parts_fallback = {}, entry.specs.fallback
        wanted: list[tuple[tuple[str, str, Any], Callable[[], dict[str, Any]]]] = [
            (("variant", name, address), partial(variant_cluster, name, address, fallback))
            for name, address in variant_addresses(pool, backends)
        ]
        wanted += [
            (("pair", first, then), partial(fallback_cluster, first, then, fallback))
            for first, then in pairs
        ]
        before, kept, parts = entry.cluster_parts, {}, []
        for key, make in wanted:
            part = before.get(key)
            if part is None:
                part = Part.remakeable(make(), make)
            kept[key] = part if part.value is None else part.lean()
            parts.append(part)
        entry.cluster_parts = kept
        written = self.parts.xds_pieces(parts)
        if written is None:
            return clusters_files(pool, policy, backends, pairs)
        return {CLUSTERS_FILE: written}

    def _listener_files(
        self,
        policy: RoutingPolicy,
        listen: HostPort,
        admin: HostPort,
        config_dir: str,
        access_log_path: str,
        stats: HostPort,
    ) -> dict[str, FileText]:
        """Bootstrap and listeners; the listeners file in pieces: what its HTTP filters
        configure (the access log, the local replies, the filter chain: most of the file,
        and the same in most gateways) stands as parts, written once for all."""
        directory = config_dir.rstrip("/") or "/"
        document = listener(policy, listen, directory, access_log_path)
        for chain in document.get("filter_chains", ()):
            for network_filter in chain.get("filters", ()):
                config = network_filter.get("typed_config") or {}
                for key, value in config.items():
                    config[key] = _as_parts(value)
        pieced = self.parts.xds_pieces([document])
        if pieced is None:
            return dict(listener_files(policy, listen, admin, config_dir, access_log_path, stats))
        return {
            BOOTSTRAP_FILE: dump_yaml(bootstrap(policy, admin, stats, directory)),
            LISTENERS_FILE: pieced,
        }

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
        gates: Mapping[str, Gate] | None = None,
    ) -> GatewayFiles:
        check_inputs(table, pool, policy, admin)
        gates = gates or {}
        key = (policy.namespace, policy.name)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        # The same table object (the routing cache hands it out again while nothing it
        # reads moved) and the same specs and settings: the files as they were.
        inputs = _Inputs(
            table,
            policy.spec,
            pool.spec,
            pool.name,
            tuple(keys),
            dict(gates),
            dict(backends),
            (listen, admin, config_dir, access_log_path, stats),
        )
        if entry.files is not None and entry.inputs is not None and inputs.same_as(entry.inputs):
            return entry.files
        try:
            files = self._render(entry, inputs, pool, policy)
        except BaseException:
            # A render that failed half-way leaves keys that no longer describe what is
            # kept: the policy starts again from nothing next time.
            del self._entries[key]
            raise
        entry.inputs = inputs
        return files

    def _render(
        self, entry: _Entry, inputs: _Inputs, pool: ModelPool, policy: RoutingPolicy
    ) -> GatewayFiles:
        table, keys, gates, backends = inputs.table, inputs.keys, inputs.gates, inputs.backends
        listen, admin, config_dir, access_log_path, stats = inputs.settings
        specs = entry.specs
        specs.update(policy, pool)
        listener_key = (specs.listener, listen, admin, config_dir, access_log_path, stats)
        static_changed = False
        if entry.listener_key != listener_key:
            entry.listener_key = listener_key
            entry.listener = self._listener_files(
                policy, listen, admin, config_dir, access_log_path, stats
            )
            static_changed = True
        shaped = shape_key(table)
        # The clusters depend on the table only through the fallback pairs its routes use
        # (a variant leaving a route, unready say, changes them, never the listener), and
        # the pairs on it only through its shape.
        if shaped is None:
            pairs = tuple(fallback_pairs(policy, table))
        elif entry.pairs_key != (shaped[0], specs.policy):
            entry.pairs_key = (shaped[0], specs.policy)
            pairs = entry.pairs = tuple(fallback_pairs(policy, table))
        else:
            pairs = entry.pairs
        clusters_key = (
            pool.name,
            specs.pool,
            specs.fallback,
            tuple(sorted(backends.items())),
            pairs,
        )
        if entry.clusters_key != clusters_key:
            entry.clusters_key = clusters_key
            entry.clusters = self._clusters(entry, pool, policy, backends, pairs)
            static_changed = True
        if shaped is None:
            entry.routes_key = entry.template = entry.weights = entry.pairs_key = None
            entry.files = GatewayFiles(
                {
                    **entry.listener,
                    **entry.clusters,
                    ROUTES_FILE: routes_file(table, pool, policy, keys, gates),
                }
            )
            return entry.files
        table_shape, weights = shaped
        # The routes also carry the keys, the budget gates and what the specs say of each
        # route.
        routes_key = (
            table_shape,
            specs.policy,
            specs.pool,
            tuple(keys),
            tuple(sorted(gates.items())),
        )
        if entry.routes_key != routes_key:
            entry.routes_key = routes_key
            filter_key = routes_key[1:]
            filter_config = entry.filter_config
            if entry.filter_key != filter_key or filter_config is None:
                entry.filter_key = filter_key
                make = partial(per_filter_config, policy, tuple(keys), dict(gates))
                filter_config = Part.remakeable(make(), make)
                # Kept by key: the Lua script in it is the largest text of the routes.
                entry.filter_config = filter_config.lean()
            shape = shape_of(table)
            entry.template = routes_template(
                shape,
                weights,
                pool,
                policy,
                keys,
                gates,
                filter_config,
                self._route_parts(entry, policy),
                self.parts,
            )
            entry.weights = None
        if entry.template is None:  # a shape the placeholders cannot stand in for
            routes = routes_file(table, pool, policy, keys, gates)
        elif entry.weights == weights:
            routes = entry.routes
        else:
            routes = entry.template.fill(weights)
        entry.weights = weights if entry.template is not None else None
        if static_changed or entry.files is None or routes is not entry.routes:
            entry.routes = routes
            entry.files = GatewayFiles({**entry.listener, **entry.clusters, ROUTES_FILE: routes})
        return entry.files
