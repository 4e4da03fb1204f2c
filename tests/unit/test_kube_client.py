"""The operator's API client against a small server on 127.0.0.1."""

import kopf
import pytest
from aiohttp import web

from modelfleet.apply.kube import ApiError, Conflict, KubeClient


@pytest.fixture
async def server():
    calls = {"conflicts": 1, "busy": 2}

    async def handle(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer fresh":
            return web.json_response({"reason": "Unauthorized"}, status=401)
        if request.path.endswith("/busy") and calls["busy"]:
            calls["busy"] -= 1
            return web.json_response({}, status=429, headers={"Retry-After": "0"})
        if request.path.endswith("/conflict"):
            return web.json_response({"reason": "Conflict"}, status=409)
        return web.json_response({"items": [{"name": request.path}]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


def info(server: str, token: str) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=server, token=token, scheme="Bearer")


async def test_a_rotated_token_is_picked_up_by_logging_in_again(server):
    client = KubeClient(info(server, "expired"), relogin=lambda: info(server, "fresh"))
    try:
        assert await client.list("/api/v1/namespaces") == [{"name": "/api/v1/namespaces"}]
    finally:
        await client.close()


async def test_without_a_fresh_login_401_is_an_error(server):
    client = KubeClient(info(server, "expired"), relogin=lambda: None)
    try:
        with pytest.raises(ApiError, match="401"):
            await client.list("/api/v1/namespaces")
    finally:
        await client.close()


async def test_throttling_is_retried_and_conflicts_are_raised(server):
    client = KubeClient(info(server, "fresh"), backoff=0.01)
    try:
        assert await client.get("/api/v1/busy") == {"items": [{"name": "/api/v1/busy"}]}
        with pytest.raises(Conflict):
            await client.request("PATCH", "/api/v1/conflict", body={})
    finally:
        await client.close()


def test_every_kind_the_operator_writes_has_its_api_path(tmp_path):
    """The model servers, the gateway configs and everything that runs a gateway: each
    object `desired()` returns is written at the path the API server serves its kind."""
    from modelfleet.apply.kube import object_path
    from modelfleet.render.desired import desired
    from tests.golden.desired_cases import CASES_DIR, inputs_of

    result = desired(inputs_of(CASES_DIR / "full-templates.in.yaml", tmp_path))
    objects = [*result.workloads]
    for gateway in result.gateways.values():
        objects += [gateway.config_map, gateway.secret]
    paths = {obj["kind"]: object_path(obj).rsplit("/", 1)[0] for obj in objects}
    assert paths == {
        "Deployment": "/apis/apps/v1/namespaces/llm/deployments",
        "Service": "/api/v1/namespaces/llm/services",
        "ServiceAccount": "/api/v1/namespaces/llm/serviceaccounts",
        "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/llm/roles",
        "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/llm/rolebindings",
        "PodDisruptionBudget": "/apis/policy/v1/namespaces/llm/poddisruptionbudgets",
        "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/llm/networkpolicies",
        "ConfigMap": "/api/v1/namespaces/llm/configmaps",
        "Secret": "/api/v1/namespaces/llm/secrets",
    }
