"""The operator's API client logs in from a kubeconfig the way `modelfleet run` does, over
HTTPS with a bearer token and a cluster CA (the local cluster's secured mode)."""

import os

import kopf
import pytest

from modelfleet.apply.kube import KubeClient, resource_path
from modelfleet_testbed.local.cluster import LocalCluster

pytestmark = pytest.mark.e2e


async def test_kubeconfig_login_over_https_with_a_token(monkeypatch):
    async with LocalCluster(token="") as secured:
        monkeypatch.setitem(os.environ, "KUBECONFIG", str(secured.kubeconfig_path))
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
        assert info is not None and info.server.startswith("https://")
        client = KubeClient(info)
        try:
            names = [
                n["metadata"]["name"] for n in await client.list(resource_path("v1", "namespaces"))
            ]
            assert "llm" in names
            pools = await client.list(resource_path("modelfleet.io/v1alpha1", "modelpools", "llm"))
            assert pools == []
        finally:
            await client.close()
