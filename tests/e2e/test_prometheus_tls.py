"""A real Prometheus behind TLS and a bearer token (as kube-rbac-proxy fronts it in
OpenShift and many managed clusters): the client reaches it with the CA and the token and
refuses it with an untrusted certificate; the real operator does the same for a pool whose
`spec.metrics` names the CA and token Secrets."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import yaml

from modelfleet.observe.prometheus_http import (
    MetricsUnavailable,
    PrometheusAuth,
    PrometheusClient,
)
from modelfleet_testbed.local.cluster import self_signed_certificate
from modelfleet_testbed.local.prometheus import Prometheus
from modelfleet_testbed.local.tls_proxy import BearerTokenProxy
from tests.e2e.operator_harness import Fleet, eventually

pytestmark = pytest.mark.e2e

TOKEN = "prom-reader-" + secrets.token_urlsafe(12)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("certs")
    serving, serving_key = self_signed_certificate(directory, "prometheus")
    other, _ = self_signed_certificate(directory, "someone-else")
    return {"cert": serving, "key": serving_key, "other": other}


async def _ask(url: str, auth: PrometheusAuth) -> list[dict]:
    # A fractional timeout: Prometheus must accept how the client sends it.
    async with PrometheusClient(url, auth, timeout_seconds=2.5) as client:
        return await client.query("vector(42)")


async def test_the_client_reaches_prometheus_with_the_ca_and_token_and_refuses_a_stranger(
    certificates, tmp_path
):
    async with (
        Prometheus(tmp_path / "targets.json", workdir=tmp_path) as prometheus,
        BearerTokenProxy(prometheus.url, TOKEN, certificates["cert"], certificates["key"]) as proxy,
    ):
        trusted = certificates["cert"].read_text()
        answer = await _ask(proxy.url, PrometheusAuth(ca_pem=trusted, bearer_token=TOKEN))
        assert [sample["value"][1] for sample in answer] == ["42"]  # evaluated by Prometheus
        assert proxy.passed == 1

        with pytest.raises(MetricsUnavailable, match="TLS certificate is not trusted"):
            await _ask(proxy.url, PrometheusAuth(bearer_token=TOKEN))  # system trust store
        with pytest.raises(MetricsUnavailable, match="TLS certificate is not trusted"):
            stranger = certificates["other"].read_text()
            await _ask(proxy.url, PrometheusAuth(ca_pem=stranger, bearer_token=TOKEN))
        assert proxy.passed == 1, "no request may pass before the certificate is trusted"

        with pytest.raises(MetricsUnavailable, match=r"refused the credentials \(HTTP 401\)"):
            await _ask(proxy.url, PrometheusAuth(ca_pem=trusted, bearer_token="wrong"))
        assert proxy.refused == 1


# -- the operator ----------------------------------------------------------------------


def pool(name: str, metrics: dict) -> dict:
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": name, "namespace": "llm"},
        "spec": {
            "gpuBudget": 4,
            "metrics": {"refreshSeconds": 1, "staleAfterSeconds": 30, **metrics},
            "variants": [
                {
                    "name": "small",
                    "model": "org/tiny-7b",
                    "gpusPerReplica": 1,
                    "startupSeconds": 0,
                    "replicas": {"min": 1, "max": 2},
                    "queue": {"targetPerReplica": 4},
                }
            ],
        },
    }


def secret(name: str, data: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "llm"},
        "stringData": data,
    }


@pytest.fixture(scope="module")
def fleet():
    started = Fleet().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def proxy(fleet, certificates):
    front = BearerTokenProxy(fleet.prometheus.url, TOKEN, certificates["cert"], certificates["key"])
    fleet.background.run(front.__aenter__())
    try:
        yield front
    finally:
        fleet.background.run(front.__aexit__(None, None, None))


def metrics_condition(fleet: Fleet, name: str) -> dict:
    return fleet.condition("modelpool", name, "MetricsAvailable")


def test_the_operator_queries_prometheus_over_tls_with_the_pool_s_secrets(
    fleet, proxy, certificates
):
    objects = [
        secret("prometheus-ca", {"ca.crt": certificates["cert"].read_text()}),
        secret("prometheus-reader", {"token": TOKEN}),
        pool(
            "tls",
            {
                "prometheusUrl": proxy.url,
                "tls": {"caSecret": {"name": "prometheus-ca", "key": "ca.crt"}},
                "auth": {"bearerTokenSecret": {"name": "prometheus-reader", "key": "token"}},
            },
        ),
        # The same Prometheus without its CA: the system trust store does not know it.
        pool(
            "untrusted",
            {
                "prometheusUrl": proxy.url,
                "auth": {"bearerTokenSecret": {"name": "prometheus-reader", "key": "token"}},
            },
        ),
        # A Secret that is not there: the field and the Secret are named.
        pool(
            "no-secret",
            {
                "prometheusUrl": proxy.url,
                "tls": {"caSecret": {"name": "prometheus-ca", "key": "ca.crt"}},
                "auth": {"bearerTokenSecret": {"name": "missing", "key": "token"}},
            },
        ),
    ]
    fleet.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))

    eventually(lambda: fleet.ready("tls-small") == 1, 30, "a ready replica of tls/small")
    # The replica's vLLM metrics, scraped by Prometheus, came back through the proxy.
    observed = eventually(
        lambda: (fleet.variant_status("tls", "small").get("observed") or {}).get("sampledAt"),
        30,
        "observations of tls/small",
    )
    assert observed
    condition = metrics_condition(fleet, "tls")
    assert condition["status"] == "True", condition
    assert proxy.passed > 0

    refused = eventually(
        lambda: (
            metrics_condition(fleet, "untrusted").get("status") == "False"
            and metrics_condition(fleet, "untrusted")
        ),
        30,
        "MetricsAvailable=False on the untrusted pool",
    )
    assert "TLS certificate is not trusted" in refused["message"]
    assert "spec.metrics.tls.caSecret" in refused["message"]

    missing = eventually(
        lambda: (
            metrics_condition(fleet, "no-secret").get("status") == "False"
            and metrics_condition(fleet, "no-secret")
        ),
        30,
        "MetricsAvailable=False on the pool whose Secret is missing",
    )
    assert "spec.metrics.auth.bearerTokenSecret" in missing["message"]
    assert "llm/missing does not exist" in missing["message"]
    for condition in (refused, missing):
        assert TOKEN not in condition["message"]
    assert TOKEN not in fleet.operator_log()


def test_a_file_url_is_refused_with_its_field_path(fleet):
    # The API server refuses it by the CRD's pattern; one stored before the pattern existed
    # is refused by the operator itself, which touches nothing.
    bad = pool("file-url", {"prometheusUrl": "file:///etc/passwd"})
    applied = fleet.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert applied.returncode == 1
    assert "spec.metrics.prometheusUrl in body should match" in applied.stderr
    fleet.store_directly("modelfleet.io/v1alpha1/modelpools", bad)
    refused = eventually(
        lambda: (
            fleet.condition("modelpool", "file-url", "Ready").get("reason") == "InvalidSpec"
            and fleet.condition("modelpool", "file-url", "Ready")
        ),
        20,
        "InvalidSpec on the file:// pool",
    )
    assert "spec.metrics.prometheusUrl" in refused["message"]
    assert "only http and https URLs are queried" in refused["message"]
    assert fleet.get("deployment", "file-url-small") is None
