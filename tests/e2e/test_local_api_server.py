"""What the local API server does like a real one: object bookkeeping, patches, server-side
apply, watches and discovery (the shortfalls of kmock 0.8 listed in TESTBED-NOTES), and
what kubectl needs from it: OpenAPI, admission, Tables, counted Events, CRDs."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import pytest
import yaml

from modelfleet.api.crd import crd_documents
from modelfleet_testbed.local.cluster import LocalCluster
from modelfleet_testbed.local.emulator import parse_api_path
from modelfleet_testbed.local.errors import ApiError
from modelfleet_testbed.local.store import ObjectStore, managers_of

pytestmark = pytest.mark.e2e

DEPLOYMENTS = "apps/v1/deployments"
POOLS = "modelfleet.io/v1alpha1/modelpools"


def two_container_deployment(name: str = "web") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"app": name, "team": "a"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {"name": "main", "image": "one", "env": [{"name": "A", "value": "1"}]},
                        {"name": "sidecar", "image": "two"},
                    ]
                },
            },
        },
    }


def test_paths_of_namespaces_are_namespaces() -> None:
    assert parse_api_path("/api/v1/namespaces").plural == "namespaces"
    named = parse_api_path("/api/v1/namespaces/llm")
    assert (named.plural, named.name, named.namespace) == ("namespaces", "llm", None)
    status = parse_api_path("/api/v1/namespaces/llm/status")
    assert (status.plural, status.name, status.subresource) == ("namespaces", "llm", "status")
    pods = parse_api_path("/api/v1/namespaces/status/pods/p/log")
    assert (pods.namespace, pods.plural, pods.name, pods.subresource) == (
        "status",
        "pods",
        "p",
        "log",
    )


async def test_objects_get_identity_versions_and_generations(cluster: LocalCluster) -> None:
    store = cluster.emulator.store
    first = store.create(
        "v1/events", {"metadata": {"generateName": "kopf-event-"}}, namespace="llm"
    )
    second = store.create(
        "v1/events", {"metadata": {"generateName": "kopf-event-"}}, namespace="llm"
    )
    assert first["metadata"]["name"].startswith("kopf-event-")
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert first["metadata"]["namespace"] == "llm" and first["metadata"]["uid"]
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert first["metadata"]["creationTimestamp"].endswith("Z")

    created = store.create(DEPLOYMENTS, two_container_deployment(), namespace="llm")
    assert created["metadata"]["generation"] == 1
    relabelled = store.patch(
        DEPLOYMENTS, "llm", "web", {"metadata": {"labels": {"x": "y"}}}, patch_type="merge"
    )
    assert relabelled["metadata"]["generation"] == 1
    with_status = store.patch(
        DEPLOYMENTS,
        "llm",
        "web",
        {"status": {"replicas": 2}},
        patch_type="merge",
        subresource="status",
    )
    assert with_status["metadata"]["generation"] == 1 and with_status["status"] == {"replicas": 2}
    ignored = store.patch(
        DEPLOYMENTS, "llm", "web", {"status": {"replicas": 9}}, patch_type="merge"
    )
    assert ignored["status"] == {"replicas": 2}, "the main resource does not write status"
    scaled = store.patch(DEPLOYMENTS, "llm", "web", {"spec": {"replicas": 3}}, patch_type="merge")
    assert scaled["metadata"]["generation"] == 2
    same = store.patch(DEPLOYMENTS, "llm", "web", {"spec": {"replicas": 3}}, patch_type="merge")
    assert same["metadata"]["resourceVersion"] == scaled["metadata"]["resourceVersion"]

    with pytest.raises(ApiError) as failed_test:
        store.patch(
            DEPLOYMENTS,
            "llm",
            "web",
            [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"}],
            patch_type="json",
        )
    assert failed_test.value.status == 422
    with pytest.raises(ApiError) as stale:
        store.replace(
            DEPLOYMENTS,
            "llm",
            "web",
            {**scaled, "metadata": {**scaled["metadata"], "resourceVersion": "1"}},
        )
    assert stale.value.status == 409
    with pytest.raises(ApiError) as nowhere:
        store.create("v1/configmaps", {"metadata": {"name": "x"}}, namespace="missing")
    assert nowhere.value.status == 404
    put_new = store.replace(
        "v1/configmaps", "llm", "fresh", {"metadata": {"name": "fresh"}, "data": {"k": "v"}}
    )
    assert put_new["metadata"]["uid"] and put_new["data"] == {"k": "v"}


async def test_strategic_merge_patch_merges_keyed_lists(cluster: LocalCluster) -> None:
    store = cluster.emulator.store
    store.create(DEPLOYMENTS, two_container_deployment(), namespace="llm")
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "main", "env": [{"name": "B", "value": "2"}]},
                        {"name": "sidecar", "$patch": "delete"},
                        {"name": "extra", "image": "three"},
                    ]
                }
            }
        }
    }
    patched = store.patch(DEPLOYMENTS, "llm", "web", patch, patch_type="strategic")
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "extra"]
    assert containers[0]["image"] == "one"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]

    merged = store.patch(DEPLOYMENTS, "llm", "web", patch, patch_type="merge")
    assert len(merged["spec"]["template"]["spec"]["containers"]) == 3, (
        "a merge patch replaces lists"
    )
    store.create(POOLS, {"metadata": {"name": "chat"}, "spec": {}}, namespace="llm")
    with pytest.raises(ApiError) as custom:
        store.patch(POOLS, "llm", "chat", {"spec": {"a": 1}}, patch_type="strategic")
    assert custom.value.status == 415


async def test_server_side_apply_owns_removes_and_conflicts(cluster: LocalCluster) -> None:
    store = cluster.emulator.store
    config = {"apiVersion": "apps/v1", "kind": "Deployment", **two_container_deployment()}
    created = store.patch(
        DEPLOYMENTS, "llm", "web", config, patch_type="apply", manager="modelfleet"
    )
    assert created["metadata"]["uid"] and created["metadata"]["labels"]["team"] == "a"

    fewer = json.loads(json.dumps(config))
    del fewer["metadata"]["labels"]["team"]
    fewer["spec"]["template"]["spec"]["containers"].pop()
    applied = store.patch(
        DEPLOYMENTS, "llm", "web", fewer, patch_type="apply", manager="modelfleet"
    )
    assert "team" not in applied["metadata"]["labels"], "a field no longer applied is removed"
    assert [c["name"] for c in applied["spec"]["template"]["spec"]["containers"]] == ["main"]

    # Someone scales by hand: the next apply conflicts unless forced, and then owns it again.
    store.patch(
        DEPLOYMENTS,
        "llm",
        "web",
        {"spec": {"replicas": 5}},
        patch_type="merge",
        subresource="scale",
        manager="kubectl",
    )
    with pytest.raises(ApiError) as conflict:
        store.patch(DEPLOYMENTS, "llm", "web", fewer, patch_type="apply", manager="modelfleet")
    assert conflict.value.status == 409 and "spec.replicas" in conflict.value.message
    forced = store.patch(
        DEPLOYMENTS, "llm", "web", fewer, patch_type="apply", manager="modelfleet", force=True
    )
    assert forced["spec"]["replicas"] == 2
    owners = {entry.manager: entry.fields for entry in managers_of(forced)}
    assert ("f:spec", "f:replicas") in owners["modelfleet"]
    assert ("f:spec", "f:replicas") not in owners.get("kubectl", set())


async def test_watch_replays_from_a_resource_version_and_filters(cluster: LocalCluster) -> None:
    store = cluster.emulator.store
    store.create(
        "v1/configmaps", {"metadata": {"name": "a", "labels": {"keep": "yes"}}}, namespace="llm"
    )
    base = f"{cluster.url}/api/v1/namespaces/llm/configmaps"
    async with aiohttp.ClientSession() as session:
        async with session.get(base) as response:
            listing = await response.json()
        assert listing["kind"] == "ConfigMapList" and listing["apiVersion"] == "v1"
        since = listing["metadata"]["resourceVersion"]
        store.patch("v1/configmaps", "llm", "a", {"data": {"x": "1"}}, patch_type="merge")
        store.create(
            "v1/configmaps", {"metadata": {"name": "b", "labels": {"keep": "no"}}}, namespace="llm"
        )

        params = {
            "watch": "true",
            "resourceVersion": since,
            "labelSelector": "keep=yes",
            "timeoutSeconds": "5",
        }
        async with session.get(base, params=params) as response:
            assert response.content_type == "application/json"
            replayed = await _next_event(response)
            assert (replayed["type"], replayed["object"]["data"]) == ("MODIFIED", {"x": "1"})
            store.patch(
                "v1/configmaps",
                "llm",
                "a",
                {"metadata": {"labels": {"keep": "no"}}},
                patch_type="merge",
            )
            left = await _next_event(response)
            assert (left["type"], left["object"]["metadata"]["name"]) == ("DELETED", "a")

        initial = {
            "watch": "1",
            "sendInitialEvents": "true",
            "resourceVersionMatch": "NotOlderThan",
        }
        async with session.get(base, params={**initial, "timeoutSeconds": "5"}) as response:
            names = [(await _next_event(response))["object"]["metadata"]["name"] for _ in range(2)]
            assert names == ["a", "b"]
            bookmark = await _next_event(response)
            assert bookmark["type"] == "BOOKMARK"
            assert bookmark["object"]["metadata"]["annotations"] == {
                "k8s.io/initial-events-end": "true"
            }

        async with session.get(base, params={"watch": "true", "resourceVersion": "1"}) as response:
            gone = await _next_event(response)
            assert gone["type"] == "ERROR" and gone["object"]["code"] == 410

        async with session.get(f"{cluster.url}/api/v1/namespaces") as response:
            assert [n["metadata"]["name"] for n in (await response.json())["items"]] == [
                "default",
                "llm",
            ]


async def _next_event(response: aiohttp.ClientResponse) -> dict[str, Any]:
    line = await asyncio.wait_for(response.content.readline(), 5)
    return json.loads(line)


async def test_scale_subresource_and_discovery_speak_autoscaling(cluster: LocalCluster) -> None:
    store = cluster.emulator.store
    store.create(DEPLOYMENTS, two_container_deployment(), namespace="llm")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{cluster.url}/apis/apps/v1/namespaces/llm/deployments/web/scale"
        ) as response:
            scale = await response.json()
        assert (scale["apiVersion"], scale["kind"]) == ("autoscaling/v1", "Scale")
        assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=web"
        async with session.get(f"{cluster.url}/apis/apps/v1") as response:
            resources = {r["name"]: r for r in (await response.json())["resources"]}
        assert resources["deployments/scale"]["group"] == "autoscaling"
        assert resources["deployments/scale"]["kind"] == "Scale"


def test_an_old_resource_version_is_gone_once_the_log_moves_on() -> None:
    store = ObjectStore(kmock.ObjectsArray(), events_kept=3)
    store.register("v1/namespaces", kind="Namespace", namespaced=False)
    start = store.revision
    for index in range(5):
        store.create("v1/namespaces", {"metadata": {"name": f"ns{index}"}})
    with pytest.raises(Exception, match="too old"):
        store.events_since(kmock.resource("v1/namespaces"), start)
    assert [
        e.object["metadata"]["name"]
        for e in store.events_since(kmock.resource("v1/namespaces"), start + 3)
    ] == [
        "ns3",
        "ns4",
    ]


# -- what kubectl needs: OpenAPI, admission, Tables, Events, CRDs -------------------------------

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def sample(kind: str) -> dict[str, Any]:
    for path in sorted(SAMPLES.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj and obj["kind"] == kind:
                return obj
    raise AssertionError(f"no {kind} sample")


async def _request(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.json(), response.headers


async def test_openapi_v3_and_v2_describe_every_served_kind(cluster: LocalCluster) -> None:
    async with aiohttp.ClientSession() as session:
        _, index, _ = await _request(session, "GET", f"{cluster.url}/openapi/v3")
        paths = index["paths"]
        assert {"api/v1", "apis/apps/v1", "apis/modelfleet.io/v1alpha1"} <= set(paths)
        url = paths["apis/modelfleet.io/v1alpha1"]["serverRelativeURL"]
        assert url.startswith("/openapi/v3/apis/modelfleet.io/v1alpha1?hash=")
        _, document, _ = await _request(session, "GET", f"{cluster.url}{url}")
        _, apps, _ = await _request(session, "GET", f"{cluster.url}/openapi/v3/apis/apps/v1")
        _, v2, _ = await _request(session, "GET", f"{cluster.url}/openapi/v2")
        status, _, _ = await _request(session, "GET", f"{cluster.url}/openapi/v3/apis/nope/v1")
    assert status == 404

    pool = document["components"]["schemas"]["io.modelfleet.v1alpha1.ModelPool"]
    assert pool["x-kubernetes-group-version-kind"] == [
        {"group": "modelfleet.io", "version": "v1alpha1", "kind": "ModelPool"}
    ]
    crd = next(doc for doc in crd_documents() if doc["spec"]["names"]["kind"] == "ModelPool")
    served = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert pool["properties"]["spec"] == served, "the CRD's schema, as it is"
    assert pool["properties"]["metadata"]["allOf"][0]["$ref"].endswith("meta.v1.ObjectMeta")

    # kubectl validates on the server when the PATCH operation takes fieldValidation.
    patch = document["paths"][
        "/apis/modelfleet.io/v1alpha1/namespaces/{namespace}/modelpools/{name}"
    ]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "ModelPool"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    deployment = apps["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    containers = deployment["properties"]["spec"]["properties"]["template"]["properties"]["spec"][
        "properties"
    ]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert "io.k8s.api.core.v1.Event" in v2["definitions"]
    assert "io.modelfleet.v1alpha1.RoutingPolicy" in v2["definitions"]


def invalid_pool() -> dict[str, Any]:
    pool = sample("ModelPool")
    pool["metadata"] = {"name": "broken"}
    pool["spec"]["variants"][0]["replicas"] = {"min": 9, "max": 2}
    pool["spec"]["variants"][0].pop("schedules", None)
    return pool


ADMISSION_REFUSALS = [
    pytest.param(
        "ModelPool",
        lambda o: o["spec"]["variants"][0].update(replicas={"min": 9, "max": 2}, schedules=[]),
        "spec.variants[0].replicas.min",
        'Invalid value: "object": replicas.min must be <= replicas.max',
        id="cel-rule-at-its-field-path",
    ),
    pytest.param(
        "ModelPool",
        lambda o: o["spec"].update(gpuBudget="lots"),
        "spec.gpuBudget",
        'Invalid value: "lots": spec.gpuBudget in body must be of type integer: "string"',
        id="type",
    ),
    pytest.param(
        "ModelPool",
        lambda o: o["spec"]["variants"][0].update(gpusPerReplica=0),
        "spec.variants[0].gpusPerReplica",
        "Invalid value: 0: spec.variants[0].gpusPerReplica in body should be greater than or "
        "equal to 1",
        id="minimum",
    ),
    pytest.param(
        "ModelPool",
        lambda o: o["spec"]["variants"][0].update(name="Big_One"),
        "spec.variants[0].name",
        'Invalid value: "Big_One": spec.variants[0].name in body should match '
        "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        id="pattern",
    ),
    pytest.param(
        "Reservation",
        lambda o: o["spec"]["billing"].update(mode="prepaid"),
        "spec.billing.mode",
        'Unsupported value: "prepaid": supported values: "reserved", "onDemand", "hybrid"',
        id="enum",
    ),
    pytest.param(
        "Reservation",
        lambda o: o["spec"].pop("tenant"),
        "spec.tenant",
        "Required value",
        id="required",
    ),
    pytest.param(
        "Reservation",
        lambda o: o["spec"].update(window={"start": "tomorrow"}),
        "spec.window.start",
        'Invalid value: "tomorrow": spec.window.start in body must be of type date-time: '
        '"tomorrow"',
        id="format",
    ),
]


@pytest.mark.parametrize(("kind", "mutate", "field", "message"), ADMISSION_REFUSALS)
async def test_admission_refuses_what_the_crd_refuses_in_kube_apiservers_words(
    cluster: LocalCluster, kind: str, mutate: Any, field: str, message: str
) -> None:
    obj = sample(kind)
    obj["metadata"] = {"name": "x"}
    mutate(obj)
    plural = {"ModelPool": "modelpools", "Reservation": "reservations"}[kind]
    url = f"{cluster.url}/apis/modelfleet.io/v1alpha1/namespaces/llm/{plural}"
    async with aiohttp.ClientSession() as session:
        status, body, _ = await _request(session, "POST", url, json=obj)
    assert status == 422, body
    assert body["reason"] == "Invalid"
    assert body["message"] == f'{kind}.modelfleet.io "x" is invalid: {field}: {message}'
    assert body["details"]["kind"] == kind and body["details"]["name"] == "x"
    assert [(c["field"], c["message"]) for c in body["details"]["causes"]] == [(field, message)]
    assert cluster.store.get(f"modelfleet.io/v1alpha1/{plural}", "llm", "x") is None


async def test_unknown_fields_strict_warned_or_ignored_nulls_dropped_defaults_filled(
    cluster: LocalCluster,
) -> None:
    url = f"{cluster.url}/apis/modelfleet.io/v1alpha1/namespaces/llm/modelpools"
    pool = sample("ModelPool")
    pool["metadata"] = {"name": "chat"}
    pool["spec"]["colour"] = "blue"
    pool["spec"]["metrics"] = {"refreshSeconds": None}
    del pool["spec"]["timezone"]
    async with aiohttp.ClientSession() as session:
        status, strict, _ = await _request(
            session, "POST", url, json=pool, params={"fieldValidation": "Strict"}
        )
        assert (status, strict["reason"]) == (400, "BadRequest")
        assert strict["message"] == (
            'ModelPool in version "v1alpha1" cannot be handled as a ModelPool: '
            'strict decoding error: unknown field "spec.colour"'
        )
        status, created, headers = await _request(session, "POST", url, json=pool)
    assert status == 201
    assert headers.getall("Warning") == ['299 - "unknown field \\"spec.colour\\""']
    assert "colour" not in created["spec"]
    assert created["spec"]["metrics"]["refreshSeconds"] == 30, "null dropped, then defaulted"
    assert created["spec"]["timezone"] == "UTC"


async def test_updates_are_not_refused_for_what_they_leave_unchanged(cluster: LocalCluster) -> None:
    # An object from before a stricter schema (written here past admission) keeps working:
    # its status can be written and its other fields edited, like validation ratcheting.
    store = cluster.store
    pools = "modelfleet.io/v1alpha1/modelpools"
    store.create(pools, invalid_pool(), namespace="llm")
    url = f"{cluster.url}/apis/modelfleet.io/v1alpha1/namespaces/llm/modelpools/broken"
    merge = {"Content-Type": "application/merge-patch+json"}
    async with aiohttp.ClientSession() as session:
        status, _, _ = await _request(
            session, "PATCH", f"{url}/status", json={"status": {"gpuBudget": 3}}, headers=merge
        )
        assert status == 200
        status, _, _ = await _request(
            session, "PATCH", url, json={"spec": {"gpuBudget": 300}}, headers=merge
        )
        assert status == 200
        # The same bad replicas are forgiven; new bad replicas are not.
        same = {**invalid_pool()["spec"]["variants"][0], "priority": 2}
        status, _, _ = await _request(
            session, "PATCH", url, json={"spec": {"variants": [same]}}, headers=merge
        )
        assert status == 200
        changed = {**same, "replicas": {"min": 8, "max": 2}}
        status, refused, _ = await _request(
            session,
            "PATCH",
            url,
            json={"spec": {"variants": [changed]}},
            headers=merge,
        )
    assert status == 422, "a changed variant must be valid"
    assert "replicas.min must be <= replicas.max" in refused["message"]
    assert store.get(pools, "llm", "broken")["spec"]["gpuBudget"] == 300


async def test_tables_carry_printer_columns_and_kube_apiservers_columns(
    cluster: LocalCluster,
) -> None:
    store = cluster.store
    pool = sample("ModelPool")
    pool["metadata"] = {"name": "chat"}
    store.create("modelfleet.io/v1alpha1/modelpools", pool, namespace="llm")
    store.patch(
        "modelfleet.io/v1alpha1/modelpools",
        "llm",
        "chat",
        {"status": {"readyReplicas": 7, "desiredReplicas": 9, "gpusPlanned": 40}},
        patch_type="merge",
        subresource="status",
    )
    policy = sample("RoutingPolicy")
    policy["metadata"] = {"name": "chat"}
    store.create("modelfleet.io/v1alpha1/routingpolicies", policy, namespace="llm")
    condition = {"type": "Ready", "status": "True", "reason": "ConfigPublished"}
    store.patch(
        "modelfleet.io/v1alpha1/routingpolicies",
        "llm",
        "chat",
        {"status": {"configHash": "abc", "conditions": [condition]}},
        patch_type="merge",
        subresource="status",
    )
    store.create(DEPLOYMENTS, two_container_deployment(), namespace="llm")
    store.patch(
        DEPLOYMENTS,
        "llm",
        "web",
        {"status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}},
        patch_type="merge",
        subresource="status",
    )
    base = f"{cluster.url}/apis/modelfleet.io/v1alpha1/namespaces/llm"
    async with aiohttp.ClientSession(headers={"Accept": TABLE}) as session:
        _, pools, _ = await _request(session, "GET", f"{base}/modelpools")
        _, one, _ = await _request(session, "GET", f"{base}/routingpolicies/chat")
        _, deployments, _ = await _request(
            session, "GET", f"{cluster.url}/apis/apps/v1/namespaces/llm/deployments"
        )
        _, full, _ = await _request(
            session, "GET", f"{base}/modelpools", params={"includeObject": "Object"}
        )

    assert (pools["kind"], pools["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert [c["name"] for c in pools["columnDefinitions"]] == [
        "Name", "Ready", "Desired", "GPUs", "Budget", "Age",
    ]  # fmt: skip
    (row,) = pools["rows"]
    assert row["cells"][:5] == ["chat", 7, 9, 40, 256]
    assert row["cells"][5].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "chat"
    assert full["rows"][0]["object"]["spec"]["gpuBudget"] == 256
    assert [c["name"] for c in one["columnDefinitions"]][:4] == ["Name", "Pool", "Hash", "Ready"]
    assert one["rows"][0]["cells"][:4] == ["chat", "chat", "abc", "True"]
    shown = [c["name"] for c in deployments["columnDefinitions"] if c["priority"] == 0]
    assert shown == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    assert deployments["rows"][0]["cells"][:4] == ["web", "1/2", 2, 1]


async def test_a_watch_as_tables_sends_the_columns_once(cluster: LocalCluster) -> None:
    store = cluster.store
    store.create("v1/configmaps", {"metadata": {"name": "a"}, "data": {"k": "v"}}, namespace="llm")
    url = f"{cluster.url}/api/v1/namespaces/llm/configmaps"
    params = {"watch": "true", "timeoutSeconds": "5"}
    async with (
        aiohttp.ClientSession(headers={"Accept": TABLE}) as session,
        session.get(url, params=params) as response,
    ):
        first = await _next_event(response)
        store.patch("v1/configmaps", "llm", "a", {"data": {"j": "w"}}, patch_type="merge")
        second = await _next_event(response)
    assert first["object"]["kind"] == "Table"
    assert [c["name"] for c in first["object"]["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert first["object"]["rows"][0]["cells"][:2] == ["a", 1]
    assert second["type"] == "MODIFIED"
    assert second["object"]["columnDefinitions"] == []
    assert second["object"]["rows"][0]["cells"][:2] == ["a", 2]


def kopf_style_event(message: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "metadata": {"namespace": "llm", "generateName": "kopf-event-"},
        "action": "Action?",
        "type": "Warning",
        "reason": "InvalidSpec",
        "message": message,
        "reportingComponent": "kopf",
        "reportingInstance": "dev",
        "source": {"component": "kopf"},
        "involvedObject": {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "ModelPool",
            "name": "chat",
            "namespace": "llm",
            "uid": "0e9d1b36-0000-4000-8000-000000000001",
        },
        "firstTimestamp": now,
        "lastTimestamp": now,
        "eventTime": now,
    }


async def test_identical_events_are_counted_on_one_object(cluster: LocalCluster) -> None:
    url = f"{cluster.url}/api/v1/namespaces/llm/events"
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            await _request(session, "POST", url, json=kopf_style_event("spec.timezone: unknown"))
        status, other, _ = await _request(
            session, "POST", url, json=kopf_style_event("spec.gpuBudget: too small")
        )
        _, table_view, _ = await _request(session, "GET", url, headers={"Accept": TABLE})
    assert status == 201
    events = cluster.store.list("v1/events", "llm")
    assert len(events) == 2
    (counted,) = [e for e in events if e["message"] == "spec.timezone: unknown"]
    assert counted["count"] == 3 and counted["series"]["count"] == 3
    assert re.fullmatch(r"chat\.[0-9a-f]+", counted["metadata"]["name"])
    assert other["count"] == 1 and other["metadata"]["name"] != counted["metadata"]["name"]
    columns = [c["name"] for c in table_view["columnDefinitions"]]
    assert columns[:4] == ["Last Seen", "Type", "Reason", "Object"]
    counts = sorted(row["cells"][columns.index("Count")] for row in table_view["rows"])
    assert counts == [1, 3]
    assert {row["cells"][3] for row in table_view["rows"]} == {"modelpool/chat"}


async def test_a_crd_created_through_the_api_is_served_from_its_schema(
    cluster: LocalCluster,
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "maximum": 3}},
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    crds = f"{cluster.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    widgets = f"{cluster.url}/apis/example.com/v1/namespaces/llm/widgets"
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    async with aiohttp.ClientSession() as session:
        status, _, _ = await _request(session, "POST", crds, json=crd)
        assert status == 201
        _, discovery, _ = await _request(session, "GET", f"{cluster.url}/apis/example.com/v1")
        assert discovery["resources"][0]["shortNames"] == ["wd"]
        status, _, _ = await _request(
            session, "POST", widgets, json={**widget, "spec": {"size": 9}}
        )
        assert status == 422
        status, created, _ = await _request(
            session, "POST", widgets, json={**widget, "spec": {"size": 2}, "extra": 1}
        )
        assert status == 201
        assert (created["apiVersion"], created["kind"]) == ("example.com/v1", "Widget")
        assert "extra" not in created, "unknown fields are pruned, the envelope never"
        await _request(session, "DELETE", f"{crds}/widgets.example.com")
        status, _, _ = await _request(session, "GET", widgets)
    assert status == 404
