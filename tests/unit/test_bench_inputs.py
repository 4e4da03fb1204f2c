"""The fleets the benchmarks build load through the product's loader without an error.

A new bound in the models (e.g. on `rateLimit.requestsPerMinute`) can make a benchmark's
own input invalid; the benchmark then fails only when someone runs it, minutes in. These
checks run in the fast suite instead."""

from __future__ import annotations

from pathlib import Path

import bench.gateway as gateway_bench
import bench.operator_delays as delays_bench
import bench.operator_fleet as fleet_bench
import pytest
import yaml

from modelfleet.api.load import load_resources, parse_resource


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return load_resources([path])  # raises with every bad field named


def test_the_gateway_benchmark_fleet_loads(tmp_path):
    resources = load_text(tmp_path, gateway_bench.FLEET)
    (policy,) = resources.policies
    assert resources.pool(policy.namespace, policy.spec.pool) is not None
    # The benchmark measures latency, never the rate limit: the limit must stay out of reach.
    assert policy.spec.gateway.rate_limit.requests_per_minute >= 1_000_000


def test_the_gateway_benchmark_renders_its_gateway(tmp_path):
    """The same call the benchmark makes, up to the files Envoy reads (validated by Envoy)."""
    pytest.importorskip("envoy")
    config = tmp_path / "gateway"
    gateway_bench.render_bench_gateway(
        config, {"echo": "127.0.0.1:1", "stream": "127.0.0.1:2"}, tmp_path / "access.log"
    )
    assert {"envoy.yaml", "lds.yaml", "cds.yaml", "rds.yaml"} <= {p.name for p in config.iterdir()}


def test_the_operator_delays_benchmark_objects_load(tmp_path):
    documents = [delays_bench.POOL, delays_bench.policy(18080, 70, 30)]
    resources = load_text(tmp_path, yaml.safe_dump_all(documents))
    assert len(resources.pools) == 1 and len(resources.policies) == 1


@pytest.mark.parametrize("seed", [1, 7, 42])
def test_the_operator_benchmark_synthetic_fleet_validates(seed):
    fleet = fleet_bench.build_fleet(pools=4, seed=seed)
    documents = [*fleet.pools, *fleet.policies, *fleet.reservations]
    for document in documents:
        model, errors = parse_resource(document, "bench/operator_fleet.py")
        assert errors == [] and model is not None, errors
