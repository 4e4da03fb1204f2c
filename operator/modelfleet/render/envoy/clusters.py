"""CDS: one cluster per variant, so /stats/prometheus counts requests per variant, and one
aggregate cluster per (first choice, fallback) pair that a route retries through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modelfleet.api.modelpool import ModelPool, Variant
from modelfleet.api.routingpolicy import GatewayFallback
from modelfleet.render.envoy.names import (
    ENDPOINT_NAMESPACE,
    VARIANT_KEY,
    fallback_cluster_name,
)
from modelfleet.render.envoy.xds import HostPort, any_of, is_ip, socket_address

CLUSTER_TYPE = "envoy.config.cluster.v3.Cluster"
# Envoy's default of 1024 concurrent requests per cluster is low for long LLM streams.
MAX_CONCURRENT = 100_000


def service_address(pool: ModelPool, variant: Variant) -> HostPort:
    """The variant's Service inside the cluster."""
    return (f"{pool.name}-{variant.name}.{pool.namespace}.svc.cluster.local", variant.port)


def variant_clusters(
    pool: ModelPool,
    backends: Mapping[str, HostPort],
    fallback: GatewayFallback,
    pairs: Sequence[tuple[str, str]] = (),
) -> list[dict[str, Any]]:
    clusters = [
        cluster(variant, address, fallback)
        for variant, address in variant_addresses(pool, backends)
    ]
    clusters.extend(fallback_cluster(first, then, fallback) for first, then in pairs)
    return clusters


def variant_addresses(
    pool: ModelPool, backends: Mapping[str, HostPort]
) -> list[tuple[str, HostPort]]:
    """Each variant's cluster address: `backends`' (checked to name the pool's variants),
    else its Service's."""
    unknown = sorted(set(backends) - {v.name for v in pool.spec.variants})
    if unknown:
        known = ", ".join(v.name for v in pool.spec.variants)
        raise ValueError(
            f"backend for unknown variant {unknown[0]!r}: pool {pool.name!r} has {known}"
        )
    return [
        (variant.name, backends.get(variant.name) or service_address(pool, variant))
        for variant in pool.spec.variants
    ]


def circuit_breakers(fallback: GatewayFallback) -> dict[str, Any]:
    return {
        "thresholds": [
            {
                "max_connections": MAX_CONCURRENT,
                "max_pending_requests": MAX_CONCURRENT,
                "max_requests": MAX_CONCURRENT,
                # Retries are checked against the cluster a route sends to: at most this
                # share of its requests in flight may be retries.
                "retry_budget": {
                    "budget_percent": {"value": float(fallback.retry_budget_percent)},
                    "min_retry_concurrency": fallback.min_retry_concurrency,
                },
            }
        ]
    }


def cluster(name: str, address: HostPort, fallback: GatewayFallback) -> dict[str, Any]:
    resolved: dict[str, Any] = (
        {"type": "STATIC"}
        if is_ip(address[0])
        else {"type": "STRICT_DNS", "dns_lookup_family": "V4_PREFERRED"}
    )
    endpoint = {
        "endpoint": {"address": socket_address(address)},
        # The audit log and the token counters name the variant that answered by this, also
        # when a fallback cluster sent the request here.
        "metadata": {"filter_metadata": {ENDPOINT_NAMESPACE: {VARIANT_KEY: name}}},
    }
    return {
        "@type": any_of(CLUSTER_TYPE),
        "name": name,
        **resolved,
        "connect_timeout": "5s",
        "circuit_breakers": circuit_breakers(fallback),
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [endpoint]}]},
    }


def fallback_cluster(first: str, then: str, fallback: GatewayFallback) -> dict[str, Any]:
    """Requests go to `first`; with the route's retry priority set to skip priorities already
    tried, the retry goes to `then`. Envoy counts requests (completed, 5xx, latency, retries)
    on this cluster: the stats tags make them envoy_cluster_name=<first>, fallback=<then>."""
    return {
        "@type": any_of(CLUSTER_TYPE),
        "name": fallback_cluster_name(first, then),
        "connect_timeout": "5s",
        "lb_policy": "CLUSTER_PROVIDED",
        "cluster_type": {
            "name": "envoy.clusters.aggregate",
            "typed_config": {
                "@type": any_of("envoy.extensions.clusters.aggregate.v3.ClusterConfig"),
                "clusters": [first, then],
            },
        },
        "circuit_breakers": circuit_breakers(fallback),
    }
