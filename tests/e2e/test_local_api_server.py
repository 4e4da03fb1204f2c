"""What the local API server does like a real one: object bookkeeping, patches, server-side
apply, watches and discovery (the shortfalls of kmock 0.8 listed in TESTBED-NOTES)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import kmock
import pytest

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
