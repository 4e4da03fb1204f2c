"""CDS: one cluster per variant, so /stats/prometheus counts requests per variant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelfleet.api.modelpool import ModelPool, Variant
from modelfleet.render.envoy.xds import HostPort, any_of, is_ip, socket_address

CLUSTER_TYPE = "envoy.config.cluster.v3.Cluster"
# Envoy's default of 1024 concurrent requests per cluster is low for long LLM streams.
MAX_CONCURRENT = 100_000


def service_address(pool: ModelPool, variant: Variant) -> HostPort:
    """The variant's Service inside the cluster."""
    return (f"{pool.name}-{variant.name}.{pool.namespace}.svc.cluster.local", variant.port)


def variant_clusters(pool: ModelPool, backends: Mapping[str, HostPort]) -> list[dict[str, Any]]:
    unknown = sorted(set(backends) - {v.name for v in pool.spec.variants})
    if unknown:
        known = ", ".join(v.name for v in pool.spec.variants)
        raise ValueError(
            f"backend for unknown variant {unknown[0]!r}: pool {pool.name!r} has {known}"
        )
    return [
        cluster(variant.name, backends.get(variant.name) or service_address(pool, variant))
        for variant in pool.spec.variants
    ]


def cluster(name: str, address: HostPort) -> dict[str, Any]:
    limits = {
        "max_connections": MAX_CONCURRENT,
        "max_pending_requests": MAX_CONCURRENT,
        "max_requests": MAX_CONCURRENT,
    }
    resolved: dict[str, Any] = (
        {"type": "STATIC"}
        if is_ip(address[0])
        else {"type": "STRICT_DNS", "dns_lookup_family": "V4_PREFERRED"}
    )
    return {
        "@type": any_of(CLUSTER_TYPE),
        "name": name,
        **resolved,
        "connect_timeout": "5s",
        "circuit_breakers": {"thresholds": [limits]},
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(address)}}]}],
        },
    }
