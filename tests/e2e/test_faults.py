"""Faults the operator, the sidecar and the gateway must survive, injected into the real
`modelfleet run` and `modelfleet gateway-sync` on the local cluster: Prometheus down while
replicas load, samples that lie, gateway objects deleted or edited by hand, an empty key
Secret, watch streams cut mid-event and an API server gone for two minutes. The gateway is
the one the operator runs for the policy (its pod's sidecar and Envoy, started by the node
agent), but in the outage test, whose sidecar must reach the API server through the
faulty proxy."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from modelfleet_testbed.local.fleet import GATEWAY_CONFIG_DIR
from modelfleet_testbed.local.processes import ManagedProcess, free_port
from tests.e2e.fault_injection import ApiProxy, LyingPrometheus
from tests.e2e.operator_harness import BIN, Fleet, eventually

pytestmark = pytest.mark.e2e

API_KEY = "sk-faults-0123456789abcdef"


def keys_secret(name: str, namespace: str, keys: list[dict]) -> dict:
    encoded = base64.b64encode(yaml.safe_dump({"keys": keys}).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"keys.yaml": encoded},
    }


def loading_pool(name: str, namespace: str, prometheus_url: str, **variant: object) -> dict:
    """One variant whose replicas take minutes to load, scaled on its queue."""
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelPool",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "gpuBudget": 64,
            "metrics": {
                "prometheusUrl": prometheus_url,
                "refreshSeconds": 1,
                "staleAfterSeconds": 10,
            },
            "variants": [
                {
                    "name": "big",
                    "model": "org/large-70b",
                    "gpusPerReplica": 1,
                    "startupSeconds": 600,
                    "replicas": {"min": 1, "max": 10},
                    "queue": {
                        "targetPerReplica": 4,
                        "scaleDown": {"stabilizationSeconds": 0},
                    },
                    **variant,
                }
            ],
        },
    }


def gateway_policy(name: str, namespace: str, pool: str, config_map: str) -> dict:
    """One gateway pod on a free listener port."""
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "RoutingPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "pool": pool,
            "gateway": {
                "configMap": config_map,
                "listenerPort": free_port(),
                "apiKeySecret": f"{name}-keys",
                "replicas": 1,
            },
            "routes": [{"name": "all", "backends": [{"variant": "big", "weight": 1}]}],
        },
    }


def apply(fleet: Fleet, *objects: dict) -> None:
    fleet.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))


@pytest.fixture(scope="module")
def fleet():
    started = Fleet(max_num_seqs=4, speedup=5.0).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def liar():
    prometheus = LyingPrometheus().start()
    try:
        yield prometheus
    finally:
        prometheus.stop()


def spec_replicas(fleet: Fleet, name: str, namespace: str = "llm") -> int:
    return fleet.deployment_replicas(name, namespace)


def test_prometheus_failing_while_replicas_load_holds_what_was_planned(fleet, liar):
    liar.mode, liar.waiting, liar.running = "fresh", {"big": 20.0}, {"big": 4.0}
    apply(fleet, loading_pool("loading", "llm", liar.url))
    eventually(lambda: spec_replicas(fleet, "loading-big") == 6, 30, "6 replicas planned")
    assert fleet.ready("loading-big") == 0, "the replicas are still loading their model"
    liar.mode = "503"
    down = eventually(
        lambda: (
            fleet.condition("modelpool", "loading", "MetricsAvailable").get("status") == "False"
            and fleet.condition("modelpool", "loading", "MetricsAvailable")
        ),
        20,
        "MetricsAvailable=False",
    )
    assert "503" in down["message"]
    assert "secret-internal-host" not in json.dumps(fleet.get("modelpool", "loading"))
    # Several refreshes later the replicas still loading are all still planned.
    for _ in range(6):
        time.sleep(1)
        assert spec_replicas(fleet, "loading-big") == 6
    down = [e for e in fleet.events("Scaled") if "loading" in str(e) and "-> 1" in e["message"]]
    assert down == [], [e["message"] for e in down]


def test_a_lying_sample_is_no_sample_and_the_loop_goes_on(fleet, liar):
    liar.mode, liar.waiting, liar.running = "fresh", {"big": 20.0}, {"big": 4.0}
    apply(fleet, loading_pool("liar", "llm", liar.url))
    eventually(lambda: spec_replicas(fleet, "liar-big") == 6, 30, "6 replicas planned")
    liar.mode = "inf"
    held = eventually(
        lambda: (
            "inf" in fleet.condition("modelpool", "liar", "MetricsAvailable").get("message", "")
            and fleet.condition("modelpool", "liar", "MetricsAvailable")
        ),
        20,
        "the +Inf sample refused with its reason",
    )
    assert held["status"] == "False"
    assert spec_replicas(fleet, "liar-big") == 6
    # The pool's loop is alive: a spec change is acted on at once, not after kopf's restart.
    fleet.kubectl(
        "patch",
        "modelpool",
        "liar",
        "-n",
        "llm",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/spec/variants/0/replicas/min", "value": 8}]),
    )
    eventually(lambda: spec_replicas(fleet, "liar-big") == 8, 10, "the new floor applied")
    reconciled = fleet.condition("modelpool", "liar", "Reconciled")
    assert reconciled.get("status") == "True", reconciled
    assert "Traceback" not in fleet.operator_log()


@pytest.fixture(scope="module")
def published(fleet, liar):
    liar.mode, liar.waiting, liar.running = "fresh", {"big": 0.0}, {"big": 0.0}
    pool = loading_pool("gw", "llm", liar.url, startupSeconds=0)
    keys = keys_secret("gw-keys", "llm", [{"id": "app", "key": API_KEY, "tenant": "a"}])
    apply(fleet, pool, keys, gateway_policy("gw", "llm", "gw", "gw-gateway"))
    fleet.gateway_url("gw")
    eventually(
        lambda: fleet.condition("routingpolicy", "gw", "Ready").get("status") == "True",
        30,
        "the gateway published and running",
    )
    return _settled_hash(fleet, "gw", "gw-gateway")


def _settled_hash(fleet: Fleet, policy: str, config_map: str) -> str:
    """The config hash once it stopped moving (the first renders follow the Services'
    cluster IPs as they are assigned)."""

    def settled() -> str | None:
        before = fleet.get("routingpolicy", policy)["status"]["configHash"]
        time.sleep(2)
        after = fleet.get("routingpolicy", policy)["status"]["configHash"]
        return after if before == after == _hash_of(fleet, "configmap", config_map) else None

    return eventually(settled, 30, "the gateway config settled")


def _hash_of(fleet: Fleet, kind: str, name: str) -> str | None:
    obj = fleet.get(kind, name)
    return None if obj is None else obj["metadata"]["annotations"]["modelfleet.io/config-hash"]


def test_gateway_objects_deleted_or_edited_by_hand_are_restored(fleet, published):
    fleet.kubectl("delete", "configmap", "gw-gateway", "-n", "llm")
    fleet.kubectl("delete", "secret", "gw-gateway-routes", "-n", "llm")
    eventually(lambda: _hash_of(fleet, "configmap", "gw-gateway") == published, 15, "restored")
    eventually(lambda: _hash_of(fleet, "secret", "gw-gateway-routes") == published, 15, "restored")
    fleet.kubectl(
        "patch",
        "configmap",
        "gw-gateway",
        "-n",
        "llm",
        "--type=merge",
        "-p",
        json.dumps({"data": {"cds.yaml": "resources: []\n"}}),
    )
    eventually(
        lambda: "resources: []" not in fleet.get("configmap", "gw-gateway")["data"]["cds.yaml"],
        15,
        "the hand edit reverted",
    )
    restored = eventually(lambda: fleet.events("GatewayConfigRestored"), 10, "an Event")
    messages = " ".join(e["message"] for e in restored)
    assert "deleted by hand" in messages and "edited by hand" in messages
    assert fleet.condition("routingpolicy", "gw", "Ready")["status"] == "True"


def test_an_empty_key_secret_keeps_the_last_good_gateway(fleet, published):
    apply(fleet, keys_secret("gw-keys", "llm", []))
    refused = eventually(
        lambda: (
            fleet.condition("routingpolicy", "gw", "Ready").get("reason") == "NoApiKeys"
            and fleet.condition("routingpolicy", "gw", "Ready")
        ),
        15,
        "Ready=False NoApiKeys",
    )
    assert refused["status"] == "False" and "401" in refused["message"]
    assert _hash_of(fleet, "configmap", "gw-gateway") == published
    assert eventually(lambda: fleet.events("NoApiKeys"), 10, "a NoApiKeys Event")
    apply(fleet, keys_secret("gw-keys", "llm", [{"id": "app", "key": API_KEY, "tenant": "a"}]))
    eventually(
        lambda: fleet.condition("routingpolicy", "gw", "Ready").get("status") == "True",
        15,
        "Ready again",
    )


def _stable(read, seconds: float = 3.0):
    """What `read()` gives, once it gave the same for `seconds`; None while it moves."""
    before = read()
    time.sleep(seconds)
    return before if read() == before else None


def _proxied_kubeconfig(fleet: Fleet, proxy: ApiProxy, directory: Path) -> Path:
    document = yaml.safe_load(fleet.cluster.kubeconfig_path.read_text())
    for cluster in document["clusters"]:
        server = cluster["cluster"]["server"]
        cluster["cluster"]["server"] = server.rsplit(":", 1)[0] + f":{proxy.port}"
    path = directory / "kubeconfig-proxied"
    path.write_text(yaml.safe_dump(document))
    return path


def _files_hash(directory: Path) -> str | None:
    """The versions of the xDS files Envoy would read from `directory`."""
    names = ("lds.yaml", "cds.yaml", "rds.yaml")
    if not all((directory / name).exists() for name in names):
        return None
    return "/".join(yaml.safe_load((directory / n).read_text())["version_info"] for n in names)


def test_operator_and_sidecar_survive_cut_watches_and_a_two_minute_outage(fleet, liar, tmp_path):
    """Both processes reach the API server through a proxy that first cuts every stream
    mid-event, then refuses every connection for two minutes."""
    liar.mode, liar.waiting, liar.running = "fresh", {"big": 0.0}, {"big": 0.0}
    apply(fleet, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "outage"}})
    proxy = ApiProxy(int(fleet.cluster.url.rsplit(":", 1)[1])).start()
    kubeconfig = _proxied_kubeconfig(fleet, proxy, tmp_path)
    out = tmp_path / "gateway"
    operator = ManagedProcess(
        [
            str(BIN / "modelfleet"),
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--standalone",
            "-n",
            "outage",
            "--health",
            f"127.0.0.1:{free_port()}",
            "--metrics-port",
            "0",
            "--gateway-config-dir",
            str(out),
            "--gateway-listen-host",
            "127.0.0.1",
            "--gateway-admin",
            f"127.0.0.1:{free_port()}",
        ],
        tmp_path / "operator.log",
    )
    sidecar = ManagedProcess(
        [
            str(BIN / "modelfleet"),
            "gateway-sync",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            "outage",
            "--config-map",
            "out-gateway",
            "--out",
            str(out),
        ],
        tmp_path / "sidecar.log",
    )
    try:
        operator.start()
        sidecar.start()
        keys = keys_secret("out-keys", "outage", [{"id": "app", "key": API_KEY, "tenant": "a"}])
        apply(
            fleet,
            loading_pool("out", "outage", liar.url, startupSeconds=0),
            keys,
            gateway_policy("out", "outage", "out", "out-gateway"),
        )
        first = eventually(lambda: _files_hash(out), 30, "the sidecar's first files")
        # A watch cut mid-event: the next change still arrives in seconds, not at resync.
        proxy.cut()
        _change_port(fleet, "outage", "out", 4)
        eventually(
            lambda: (h := _files_hash(out)) != first and h, 20, "the change after a cut watch"
        )
        settled = eventually(
            lambda: _stable(
                lambda: (
                    _files_hash(out),
                    fleet.get("routingpolicy", "out", "outage")["status"]["configHash"],
                ),
                seconds=5,
            ),
            40,
            "the operator's and the sidecar's config settled",
        )
        second = settled[0]
        # Two minutes without an API server: both processes keep running and serving.
        proxy.go_dark()
        for _ in range(12):
            time.sleep(10)
            assert operator.running(), operator.log_tail(40)
            assert sidecar.running(), sidecar.log_tail(40)
        assert _files_hash(out) == second, sidecar.log_tail(30)
        proxy.restore()
        _change_port(fleet, "outage", "out", 5)
        eventually(lambda: _files_hash(out) not in (None, second), 60, "changes flow again")
        eventually(lambda: spec_replicas(fleet, "out-big", "outage") >= 1, 30, "the pool planned")
        assert "watch_failed" in sidecar.log_tail(400)
    finally:
        sidecar.stop()
        operator.stop()
        proxy.stop()


def _change_port(fleet: Fleet, namespace: str, pool: str, offset: int) -> None:
    """A change the gateway's files carry: the variant's port (its cluster's address)."""
    fleet.kubectl(
        "patch",
        "modelpool",
        pool,
        "-n",
        namespace,
        "--type=json",
        "-p",
        json.dumps([{"op": "add", "path": "/spec/variants/0/port", "value": 8000 + offset}]),
    )


def _chat(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        data=json.dumps(
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        ).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_the_sidecar_never_writes_files_envoy_refuses(fleet, published):
    """In the gateway pod the operator runs: its sidecar refuses, its Envoy keeps serving."""
    (pod,) = fleet.gateway_pods("gw")
    out = pod.directory / GATEWAY_CONFIG_DIR
    good = eventually(lambda: _files_hash(out), 30, "the pod's files")
    good_cds = (out / "cds.yaml").read_text()
    # Someone writes a broken config into both objects with a matching hash. The operator
    # puts its own back within a refresh (a second here), and may do so between the two
    # edits: then the sidecar never sees a matching pair, so the pair is written again.
    broken = "resources:\n- '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: x\n  connect_timeout: -1s\n"

    def refused() -> bool:
        return "files_refused" in pod.log_tail("gateway-sync", 2000)

    for _ in range(6):
        for kind, name, data in (
            ("configmap", "gw-gateway", {"cds.yaml": broken}),
            ("secret", "gw-gateway-routes", None),
        ):
            patch = {"metadata": {"annotations": {"modelfleet.io/config-hash": "handmade"}}}
            if data:
                patch["data"] = data
            fleet.kubectl("patch", kind, name, "-n", "llm", "--type=merge", "-p", json.dumps(patch))
        try:
            eventually(refused, 10, "the sidecar refused")
            break
        except AssertionError:
            continue
    assert refused(), "the sidecar never refused the broken pair (six tries)"
    assert (out / "cds.yaml").read_text() == good_cds
    assert _files_hash(out) == good
    assert _chat(pod.port) == 200, "Envoy serves the last good files"
    # The operator puts its own config back, and the sidecar follows.
    eventually(lambda: _hash_of(fleet, "configmap", "gw-gateway") == published, 20, "restored")
    assert pod.sidecar.running() and pod.envoy.running()
    assert fleet.condition("routingpolicy", "gw", "Ready").get("status") == "True"
