"""Where requests go: weights, body fields and headers in policy order, /v1/models, 404,
and what observations (readiness, backlog) change."""

from __future__ import annotations

from collections import Counter

import pytest

from modelfleet.observe.observation import VariantObservation

from .traffic import CHAT, MESSAGES, bearer, call, send_many

pytestmark = pytest.mark.envoy


@pytest.fixture
def app_key(fleet) -> dict[str, str]:
    return bearer(fleet.key("app").key)


def chat(gateway, headers, extra_headers=None, **fields):
    return call(
        gateway.url, CHAT, {"messages": MESSAGES, **fields}, {**headers, **(extra_headers or {})}
    )


# Envoy picks a weighted cluster at random: 4,000 requests (more than the 2,000 the issue
# names) keep a chance failure of the ±3-point bound below one in a million runs.
REQUESTS = 4000


def test_weights_split_requests_within_3_points(gateway, app_key):
    outcomes = send_many(
        gateway.url, [{"task_type": "chat", "messages": MESSAGES}] * REQUESTS, app_key
    )
    assert Counter(o.status for o in outcomes) == {200: REQUESTS}
    shares = Counter(o.variant for o in outcomes)
    for variant, weight in {"big": 70, "mid": 20, "small": 10}.items():
        percent = 100 * shares[variant] / len(outcomes)
        assert abs(percent - weight) <= 3, f"{variant}: {percent:.1f}% for weight {weight}"


@pytest.mark.parametrize(
    ("fields", "extra_headers", "variant"),
    [
        ({"model": "mid"}, {}, "mid"),
        ({"model": "org/mid-70b"}, {}, "mid"),
        ({"task_type": "code"}, {}, "small"),
        ({"task_type": "code-review"}, {}, "small"),
        ({}, {"x-task-type": "code"}, "small"),
        # The body's task_type wins over the header.
        ({"task_type": "code"}, {"x-task-type": "flip"}, "small"),
        # Policy order: `code` comes before `by-model-mid`.
        ({"task_type": "code", "model": "mid"}, {}, "small"),
        ({"task_type": "unknown", "model": "mid"}, {}, "mid"),
    ],
)
def test_routes_on_body_fields_and_task_type_header(
    gateway, app_key, fields, extra_headers, variant
):
    reply = chat(gateway, app_key, extra_headers, **fields)
    assert reply.status == 200, reply.text
    assert reply.variant == variant


def test_no_matching_route_is_an_openai_style_404(gateway, app_key, backends):
    before = backends.hits()
    reply = chat(gateway, app_key, model="gpt-unknown")
    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "/v1/models" in error["message"]
    assert call(gateway.url, "/v2/anything", headers=app_key).json()["error"]["code"] == (
        "unknown_url"
    )
    assert backends.hits() == before


def test_models_lists_the_names_routes_accept(gateway, app_key):
    reply = call(gateway.url, "/v1/models", headers=app_key)
    assert reply.status == 200
    assert reply.json()["object"] == "list"
    assert [m["id"] for m in reply.json()["data"]] == ["mid", "org/mid-70b"]
    assert call(gateway.url, "/v1/models").status == 401


def test_other_endpoints_are_routed_and_need_post(gateway, app_key):
    assert (
        call(gateway.url, "/v1/completions", {"model": "mid", "prompt": "Hi"}, app_key).variant
        == "mid"
    )
    assert (
        call(gateway.url, "/v1/embeddings", {"model": "mid", "input": ["Hi"]}, app_key).variant
        == "mid"
    )
    reply = call(gateway.url, CHAT, headers=app_key, method="GET")
    assert reply.status == 405 and reply.headers["allow"] == "POST"


def test_unready_variant_weight_moves_to_the_others(live_gateway, fleet, app_key):
    live_gateway.apply(observations=fleet.observe(big=VariantObservation(ready_replicas=0)))
    outcomes = send_many(
        live_gateway.url, [{"task_type": "chat", "messages": MESSAGES}] * 300, app_key
    )
    shares = Counter(o.variant for o in outcomes)
    assert shares["big"] == 0
    # 20:10 rescaled to 67:33.
    assert shares["mid"] + shares["small"] == 300
    assert 0.55 < shares["mid"] / 300 < 0.78


def test_degrade_route_sends_low_priority_to_the_fallback_above_the_threshold(
    live_gateway, fleet, app_key
):
    low = {"x-priority": "low"}
    body = {"task_type": "chat", "messages": MESSAGES}
    live_gateway.apply(observations=fleet.observe(big=VariantObservation(waiting=11)))
    outcomes = send_many(live_gateway.url, [body] * 100, {**app_key, **low})
    assert Counter(o.variant for o in outcomes) == {"small": 100}
    seen = call(live_gateway.url, CHAT, body, {**app_key, **low}).json()
    assert seen["variant"] == "small" and seen["headers"]["x-priority"] == "low"
    # Requests without the header keep the normal split.
    normal = send_many(live_gateway.url, [body] * 100, app_key)
    assert Counter(o.variant for o in normal)["big"] > 40

    live_gateway.apply(observations=fleet.observe(big=VariantObservation(waiting=10)))
    at_threshold = send_many(live_gateway.url, [body] * 100, {**app_key, **low})
    assert Counter(o.variant for o in at_threshold)["big"] > 40
