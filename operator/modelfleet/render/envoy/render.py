"""Pure: RoutingTable + pool + policy + keys -> the gateway's Envoy files (name -> text)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from modelfleet.api.keys import ApiKey
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.plan.budgets import Gate
from modelfleet.plan.routing.table import RoutingTable
from modelfleet.render.envoy.clusters import variant_clusters
from modelfleet.render.envoy.fallback import fallback_pairs
from modelfleet.render.envoy.listener import listener
from modelfleet.render.envoy.names import (
    BOOTSTRAP_FILE,
    CLUSTERS_FILE,
    FALLBACK_INFIX,
    FALLBACK_TAG,
    KEY_ID_TAG,
    LISTENERS_FILE,
    ROUTES_FILE,
    TENANT_TAG,
)
from modelfleet.render.envoy.routes import route_configuration
from modelfleet.render.envoy.stats import admin_cluster, stats_listener
from modelfleet.render.envoy.xds import (
    HostPort,
    any_of,
    file_config_source,
    short_digest,
    socket_address,
)

DEFAULT_ACCESS_LOG = "/dev/stdout"
DEFAULT_STATS_PORT = 9902
NODE_CLUSTER = "modelfleet-gateway"
# Classification rules are RE2 over request headers; Envoy refuses regexes whose compiled
# program is larger than this (its default, 100, is a few keywords).
MAX_REGEX_PROGRAM_SIZE = 10_000

# Per-key virtual clusters are named `<tenant>_<key id>` (neither may contain `_` or `.`);
# these turn the two halves into Prometheus labels on every vhost.vcluster stat.
_VCLUSTER = r"^vhost\.[^.]+\.vcluster\."
# Fallback clusters are named `<variant>.fallback-<variant>`: Envoy's own tag takes the first
# part as envoy_cluster_name, this one the second as `fallback`.
STATS_TAGS = [
    {"tag_name": TENANT_TAG, "regex": _VCLUSTER + r"(([^._]+)_)[^._]+\."},
    {"tag_name": KEY_ID_TAG, "regex": _VCLUSTER + r"[^._]+_(([^._]+)\.)"},
    {"tag_name": FALLBACK_TAG, "regex": rf"^cluster\.[^.]+\.({FALLBACK_INFIX}([^.]+)\.)"},
]


def render_gateway(
    table: RoutingTable,
    pool: ModelPool,
    policy: RoutingPolicy,
    api_keys: Sequence[ApiKey],
    backends: Mapping[str, HostPort],
    listen: HostPort,
    admin: HostPort,
    config_dir: str,
    access_log_path: str = DEFAULT_ACCESS_LOG,
    stats: HostPort = ("0.0.0.0", DEFAULT_STATS_PORT),
    gates: Mapping[str, Gate] | None = None,
) -> dict[str, str]:
    """The files of one gateway: `envoy.yaml` (bootstrap) reads lds/cds/rds from
    `config_dir`, the directory the files will be in when Envoy runs.

    `backends` overrides a variant's upstream (default: its Service in the cluster).
    `gates`: the API keys over a spent budget, blocked or degraded (in the routes file).
    `admin` should be a loopback address: probes and scrapes use `stats`, a listener that
    forwards only /stats/prometheus and /ready to it.
    The same input always gives byte-identical files.
    """
    check_inputs(table, pool, policy, admin)
    files = static_files(
        pool,
        policy,
        backends,
        fallback_pairs(policy, table),
        listen,
        admin,
        config_dir,
        access_log_path,
        stats,
    )
    return {**files, ROUTES_FILE: routes_file(table, pool, policy, api_keys, gates)}


def check_inputs(
    table: RoutingTable, pool: ModelPool, policy: RoutingPolicy, admin: HostPort
) -> None:
    if admin[1] == 0:
        raise ValueError(
            "the admin port must be fixed (not 0): the stats listener forwards "
            "/stats/prometheus and /ready to it"
        )
    if (table.namespace, table.policy, table.pool) != (policy.namespace, policy.name, pool.name):
        raise ValueError(
            f"routing table of {table.namespace}/{table.policy} (pool {table.pool}) does not "
            f"belong to RoutingPolicy {policy.namespace}/{policy.name} over pool {pool.name}"
        )


def static_files(
    pool: ModelPool,
    policy: RoutingPolicy,
    backends: Mapping[str, HostPort],
    pairs: Sequence[tuple[str, str]],
    listen: HostPort,
    admin: HostPort,
    config_dir: str,
    access_log_path: str = DEFAULT_ACCESS_LOG,
    stats: HostPort = ("0.0.0.0", DEFAULT_STATS_PORT),
) -> dict[str, str]:
    """The files that depend on the routing table only through its fallback `pairs`:
    bootstrap, listeners, clusters."""
    return {
        **listener_files(policy, listen, admin, config_dir, access_log_path, stats),
        **clusters_files(pool, policy, backends, pairs),
    }


def listener_files(
    policy: RoutingPolicy,
    listen: HostPort,
    admin: HostPort,
    config_dir: str,
    access_log_path: str = DEFAULT_ACCESS_LOG,
    stats: HostPort = ("0.0.0.0", DEFAULT_STATS_PORT),
) -> dict[str, str]:
    """Bootstrap and listeners: the policy and where the gateway runs, never the table."""
    config_dir = config_dir.rstrip("/") or "/"
    return {
        BOOTSTRAP_FILE: dump_yaml(bootstrap(policy, admin, stats, config_dir)),
        LISTENERS_FILE: xds_text([listener(policy, listen, config_dir, access_log_path)]),
    }


def clusters_files(
    pool: ModelPool,
    policy: RoutingPolicy,
    backends: Mapping[str, HostPort],
    pairs: Sequence[tuple[str, str]],
) -> dict[str, str]:
    """The clusters: the pool's variants, and one per fallback pair the table's routes use."""
    fallback = policy.spec.gateway.fallback
    return {CLUSTERS_FILE: xds_text(variant_clusters(pool, backends, fallback, list(pairs)))}


def routes_file(
    table: RoutingTable,
    pool: ModelPool,
    policy: RoutingPolicy,
    api_keys: Sequence[ApiKey],
    gates: Mapping[str, Gate] | None = None,
) -> str:
    """The routes (weights, API keys, budget gates): the file that changes at run time."""
    return xds_text([route_configuration(table, pool, policy, api_keys, gates)])


def bootstrap(
    policy: RoutingPolicy, admin: HostPort, stats: HostPort, config_dir: str
) -> dict[str, Any]:
    """What only a restart changes: admin, the stats listener, the connection cap."""
    return {
        "node": {"id": f"{policy.namespace}.{policy.name}", "cluster": NODE_CLUSTER},
        "admin": {"address": socket_address(admin)},
        "static_resources": {
            "listeners": [stats_listener(stats)],
            "clusters": [admin_cluster(admin)],
        },
        "dynamic_resources": {
            "lds_config": file_config_source(f"{config_dir}/{LISTENERS_FILE}", config_dir),
            "cds_config": file_config_source(f"{config_dir}/{CLUSTERS_FILE}", config_dir),
        },
        "stats_config": {"stats_tags": STATS_TAGS},
        # Latency histograms reach /stats/prometheus when the workers' samples are merged, at
        # each flush: every second instead of Envoy's 5 s keeps scrapes nearly current.
        "stats_flush_interval": "1s",
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": any_of(
                            "envoy.extensions.resource_monitors.downstream_connections.v3"
                            ".DownstreamConnectionsConfig"
                        ),
                        "max_active_downstream_connections": (
                            policy.spec.gateway.limits.max_connections
                        ),
                    },
                }
            ]
        },
        "layered_runtime": {
            "layers": [
                {
                    "name": "modelfleet",
                    "static_layer": {
                        "re2.max_program_size.error_level": MAX_REGEX_PROGRAM_SIZE,
                        "re2.max_program_size.warn_level": MAX_REGEX_PROGRAM_SIZE,
                    },
                }
            ]
        },
    }


def xds_text(resources: list[Any]) -> str:
    """A file-based xDS document: its resources under a version_info that is a digest of
    their text (the YAML is deterministic: equal content, equal version), so the version
    Envoy reports in /config_dump tells which render it runs."""
    return versioned(dump_yaml({"resources": resources}))


def versioned(body: str) -> str:
    """`body` (the YAML of `{"resources": [...]}`) under its version line: the bytes of
    `dump_yaml({"version_info": <digest of body>, "resources": [...]})`."""
    return version_line(short_digest(body)) + body


def version_line(version: str) -> str:
    """`dump_yaml({"version_info": version})` without the emitter: quoted as the dumper
    quotes a digest YAML would read as a number (all digits, say)."""
    if _RESOLVER.resolve(yaml.ScalarNode, version, (True, False)) == _STR:
        return f"version_info: {version}\n"
    return f"version_info: '{version}'\n"


# libyaml's emitter writes the same bytes as the pure-Python one, about 6x faster
# (bench/results/operator.json: YAML emission dominated a cycle over 1,000 gateways).
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_STR, _INT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "bool", "null"))
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_RESOLVER = yaml.resolver.Resolver()


class _Dumper(_BaseDumper):
    """SafeDumper's output for the JSON-like documents of a gateway, built faster: nodes
    straight from dicts, lists and scalars (no aliases, block style, scripts as block
    literals), and each scalar's implicit-type check done once per distinct value."""

    _resolved: dict[tuple[Any, str, tuple[bool, bool]], str] = {}

    def ignore_aliases(self, data: Any) -> bool:
        # Shared sub-documents are written out in full: anchors make the files hard to read.
        return True

    def represent_data(self, data: Any) -> yaml.Node:
        kind = type(data)
        if kind is str:
            # Scripts stay readable (and diffable) as block literals.
            return yaml.ScalarNode(_STR, data, style="|" if "\n" in data else None)
        if kind is dict:
            pairs = [(self.represent_data(k), self.represent_data(v)) for k, v in data.items()]
            return yaml.MappingNode(_MAP, pairs, flow_style=False)
        if kind is list:
            return yaml.SequenceNode(_SEQ, [self.represent_data(v) for v in data], flow_style=False)
        if kind is bool:
            return yaml.ScalarNode(_BOOL, "true" if data else "false")
        if kind is int:
            return yaml.ScalarNode(_INT, str(data))
        if data is None:
            return yaml.ScalarNode(_NULL, "null")
        return super().represent_data(data)

    # No path-dependent resolvers are registered: nothing to track per node.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)
        key = (value, kind.id, implicit)
        found = self._resolved.get(key)
        if found is None:
            found = super().resolve(kind, value, implicit)
            if len(self._resolved) < 200_000:  # bounded: values are mostly repeated keys
                self._resolved[key] = found
        return found


def dump_yaml(document: Any, width: int = 100) -> str:
    return yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=width,
        allow_unicode=True,
    )
