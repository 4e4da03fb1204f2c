"""What the gateway refuses before a model server sees it: no or unknown key (401), empty,
broken or ambiguous input (400), too large a body (413), too many requests for a key (429);
and what the backend is told. tests/envoy/test_gateway_lua.py checks the body reading on
many more inputs without Envoy."""

from __future__ import annotations

import json
import socket

import pytest
import yaml

from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.files import publish_gateway
from modelfleet.render.envoy.lua import UNROUTED_MESSAGE
from modelfleet.render.envoy.names import ROUTES_FILE
from modelfleet.render.envoy.render import dump_yaml
from modelfleet.render.envoy.xds import filter_name

from .traffic import CHAT, MESSAGES, bearer, call

pytestmark = pytest.mark.envoy

ROUTED = {"model": "mid", "messages": MESSAGES}


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("sk-not-a-key"), {"x-api-key": "sk-not-a-key"}, {"authorization": "sk-test"}],
    ids=["no-key", "wrong-bearer", "wrong-x-api-key", "not-bearer"],
)
def test_missing_or_unknown_key_is_401_and_never_reaches_a_backend(gateway, backends, headers):
    before = backends.hits()
    reply = call(gateway.url, CHAT, ROUTED, headers)
    assert reply.status == 401
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["code"] == "invalid_api_key"
    assert backends.hits() == before


@pytest.mark.parametrize("key_header", ["authorization", "bearer", "x-api-key"])
def test_backend_sees_key_id_and_tenant_never_the_key(gateway, fleet, key_header):
    key = fleet.key("other")
    credentials = {
        # Authorization wins when both are sent; the other header must not leak either.
        "authorization": {"authorization": f"Bearer {key.key}", "x-api-key": "sk-stray"},
        # The scheme is case-insensitive (RFC 9110).
        "bearer": {"authorization": f"bearer {key.key}"},
        "x-api-key": {"x-api-key": key.key},
    }[key_header]
    spoofed = {"x-client-id": "app", "x-tenant": "acme"}
    reply = call(gateway.url, CHAT, ROUTED, {**credentials, **spoofed})
    assert reply.status == 200, reply.text
    seen = reply.json()["headers"]
    assert seen["x-client-id"] == "other"
    assert seen["x-tenant"] == "globex"
    assert "authorization" not in seen and "x-api-key" not in seen
    assert key.key not in json.dumps(seen)
    # No client is trusted as internal (which would let it steer retries and timeouts).
    assert "x-envoy-internal" not in seen


@pytest.mark.parametrize(
    ("path", "raw", "code", "param"),
    [
        (CHAT, b'{"model": "mid", "messages": []}', "empty_input", "messages"),
        (CHAT, b'{"model": "mid", "messages": [ \n ] }', "empty_input", "messages"),
        (CHAT, b'{"model": "mid"}', "missing_required_parameter", "messages"),
        (CHAT, b'{"model": "mid", "messages": null}', "empty_input", "messages"),
        # Only the top-level field counts, not one nested or inside a string.
        (
            CHAT,
            b'{"meta": {"messages": [1]}, "note": "\\"messages\\": [1]", "messages": []}',
            "empty_input",
            "messages",
        ),
        (CHAT, b'{"model": "mid", "messages": [{"content": " \\n "}]}', "empty_input", "messages"),
        (CHAT, b'{"model": "mid", "messages": [""]}', "invalid_type", "messages"),
        (CHAT, b'{"model": "mid", "messages": [{}]}', "empty_input", "messages"),
        # The gateway and the model server must read the same value: no key twice.
        (
            CHAT,
            b'{"model": "mid", "messages": [{"content": "hi"}], "messages": []}',
            "duplicate_key",
            "messages",
        ),
        (
            CHAT,
            b'{"model": "mid", "messages": [{"content": "hi", "content": ""}]}',
            "duplicate_key",
            "messages[0].content",
        ),
        (CHAT, b'{"model": "mid", "messages": [}', "invalid_json", None),
        (CHAT, b"model=mid&messages=hi", "invalid_json", None),
        (CHAT, b'["messages"]', "invalid_json", None),
        (CHAT, b"", "missing_body", None),
        ("/v1/completions", b'{"model": "mid", "prompt": ""}', "empty_input", "prompt"),
        ("/v1/completions", b'{"model": "mid", "prompt": []}', "empty_input", "prompt"),
        ("/v1/completions", b'{"model": "mid", "prompt": " \\t"}', "empty_input", "prompt"),
        ("/v1/embeddings", b'{"model": "mid"}', "missing_required_parameter", "input"),
        ("/v1/embeddings", b'{"model": "mid", "input": ""}', "empty_input", "input"),
    ],
)
def test_empty_or_broken_input_is_400_before_any_backend(
    gateway, fleet, backends, path, raw, code, param
):
    before = backends.hits()
    reply = call(gateway.url, path, headers=bearer(fleet.key("app").key), raw=raw, method="POST")
    assert reply.status == 400, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert backends.hits() == before


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [{"role": "user", "content": "{[\\"]}"}], "model": "mid"}',
        b'{"note": "\\\\", "messages": [{"role": "user", "content": "x"}], "model": "mid"}',
        b'  {"model":"mid","messages":[{"content":"hi","role":"user"}]}  ',
    ],
)
def test_non_empty_input_passes_however_it_is_written(gateway, fleet, raw):
    reply = call(gateway.url, CHAT, headers=bearer(fleet.key("app").key), raw=raw, method="POST")
    assert reply.status == 200, reply.text
    assert reply.variant == "mid"


def test_requests_past_a_keys_limit_get_429_and_other_keys_are_unaffected(gateway, fleet):
    limited = bearer(fleet.key("limited").key)
    statuses = [call(gateway.url, CHAT, ROUTED, limited).status for _ in range(7)]
    # perKey allows `limited` 5 a minute (and nothing else ran under this key).
    assert statuses == [200] * 5 + [429] * 2
    refused = call(gateway.url, CHAT, ROUTED, limited)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-limit"] == "5"
    assert call(gateway.url, CHAT, ROUTED, bearer(fleet.key("app").key)).status == 200


def test_a_body_of_many_keys_is_routed_and_forwarded_whole(gateway, fleet, backends):
    """The shape whose reading was once quadratic (each key searched to the body's end for an
    escape): through the real Envoy it is read, routed on an escaped model name and sent on
    unchanged. tests/envoy/test_gateway_lua.py shows the reading is linear."""
    members = ",".join(f'"k{index}":0' for index in range(50_000))
    head = '{"model":"m\\u0069d","messages":[{"role":"user","content":"hi",'
    raw = (head + members + "}]}").encode()
    reply = call(gateway.url, CHAT, raw=raw, headers=bearer(fleet.key("app").key))
    assert reply.status == 200, reply.text
    answer = reply.json()
    assert (answer["variant"], answer["body_bytes"]) == ("mid", len(raw))
    forwarded = backends.last("mid")["body"]
    assert forwarded == raw[: len(forwarded)].decode()


def test_a_body_over_the_limit_is_413_before_any_backend(gateway, fleet, backends):
    before = backends.hits()
    limit = fleet.policy.spec.gateway.limits.max_body_bytes
    # Just over the limit, so that the whole body fits in the sockets' buffers and this
    # client (which sends all before it reads) sees the answer; larger bodies get it too, if
    # the client reads while it sends (curl does).
    huge = {"model": "mid", "messages": [{"role": "user", "content": "x" * (limit + 1)}]}
    reply = call(gateway.url, CHAT, huge, bearer(fleet.key("app").key))
    assert reply.status == 413
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["code"] == "request_too_large"
    assert "4 MiB" in error["message"]
    assert backends.hits() == before


def test_the_body_limit_is_the_policys(live_gateway, fleet):
    data = fleet.policy.to_wire()
    data["spec"]["gateway"]["limits"] = {"maxBodyBytes": 65536}
    live_gateway.apply(RoutingPolicy.model_validate(data))
    key = bearer(fleet.key("app").key)
    fits = {"model": "mid", "messages": [{"role": "user", "content": "x" * 60_000}]}
    assert call(live_gateway.url, CHAT, fits, key).status == 200
    over = {"model": "mid", "messages": [{"role": "user", "content": "x" * 70_000}]}
    reply = call(live_gateway.url, CHAT, over, key)
    assert reply.status == 413
    assert "0.0625 MiB" in reply.json()["error"]["message"]
    # Also without a content-length (chunked): refused once the buffer is full.
    assert call(live_gateway.url, CHAT, over, key, chunked=True).status == 413


def test_an_unreachable_variant_is_an_openai_style_5xx(live_gateway, fleet):
    with socket.socket() as probe:  # a port nothing listens on once this is closed
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    live_gateway.apply(backends={"mid": ("127.0.0.1", closed)})
    reply = call(live_gateway.url, CHAT, ROUTED, bearer(fleet.key("app").key))
    assert reply.status == 503
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_unavailable")


@pytest.mark.parametrize(
    "body",
    [ROUTED, {"model": "mid", "messages": []}],
    ids=["valid", "empty-input"],
)
def test_routes_without_the_gateway_script_refuse_every_request(
    live_gateway, backends, fleet, body
):
    """The listener's own Lua script runs only where the routes file gives none (here a
    virtual host without the script): no request may then reach a model server without the
    script's budget and input checks."""
    files = live_gateway.render()
    routes = yaml.safe_load(files[ROUTES_FILE])
    (host,) = routes["resources"][0]["virtual_hosts"]
    del host["typed_per_filter_config"][filter_name("lua")]
    routes["version_info"] = "without-the-script"
    files[ROUTES_FILE] = dump_yaml(routes)
    publish_gateway(live_gateway.config_dir, files)  # Envoy accepts it
    live_gateway.applied = files
    live_gateway.wait_for_routes(files)
    before = backends.hits()
    reply = call(live_gateway.url, CHAT, body, bearer(fleet.key("app").key))
    assert reply.status == 503, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"] == {
        "message": UNROUTED_MESSAGE,
        "type": "server_error",
        "param": None,
        "code": "upstream_unavailable",
    }
    assert backends.hits() == before
    # The key check still comes first.
    assert call(live_gateway.url, CHAT, body).status == 401
