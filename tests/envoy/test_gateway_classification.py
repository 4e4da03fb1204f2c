"""Requests that name neither a task type nor a model are routed by the policy's
classification rules (first match wins: keywords or a regular expression over the last
user message or the system prompt, or the prompt's length), else by the default route; the
rule and the task type show in the response headers and the audit line."""

from __future__ import annotations

import pytest

from modelfleet.api.routingpolicy import RoutingPolicy

from .records import logged, part
from .traffic import CHAT, bearer, call

pytestmark = pytest.mark.envoy

PREFIX = 256
CLASSIFICATION = {
    "textPrefixBytes": PREFIX,
    "defaultRoute": "flip",
    "rules": [
        {"name": "code-words", "taskType": "code", "keywords": ["stack trace", "Python"]},
        {
            "name": "contracts",
            "taskType": "chat",
            "regex": r"(?i)\bcontracts?\b",
            "in": "systemPrompt",
        },
        {"name": "long", "taskType": "chat", "promptLength": {"min": 300, "unit": "tokens"}},
    ],
}


@pytest.fixture
def classified(live_gateway, fleet, backends):
    backends.reset()
    data = fleet.policy.to_wire()
    data["spec"]["classification"] = CLASSIFICATION
    live_gateway.apply(RoutingPolicy.model_validate(data))
    return live_gateway


def ask(gateway, fleet, messages, path=CHAT, headers=None, **fields):
    body = {"messages": messages, **fields} if path == CHAT else fields
    return call(gateway.url, path, body, {**bearer(fleet.key("app").key), **(headers or {})})


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def system(text: str) -> dict:
    return {"role": "system", "content": text}


def classified_as(reply) -> tuple[str | None, str | None]:
    return reply.headers.get("x-modelfleet-rule"), reply.headers.get("x-modelfleet-task-type")


def test_keywords_in_the_last_user_message_assign_the_task_type(classified, fleet):
    reply = ask(
        classified, fleet, [user("hi"), user("Why does my python code print a Stack Trace?")]
    )
    assert reply.status == 200
    assert reply.variant == "small"  # the code route
    assert classified_as(reply) == ("code-words", "code")
    entry = logged(classified, reply.headers["x-request-id"])
    assert part(
        entry,
        {"rule": "code-words", "assigned_task_type": "code", "task_type": None, "route": "code"},
    )
    # The prompt text copied into headers for the rules never reaches the model server.
    assert not any(h.startswith("x-modelfleet") for h in reply.json()["headers"])


def test_the_first_matching_rule_wins(classified, fleet):
    messages = [system("You draft contracts."), user("Write it in Python.")]
    assert classified_as(ask(classified, fleet, messages)) == ("code-words", "code")
    messages = [system("You draft Contracts."), user("Write the clause.")]
    reply = ask(classified, fleet, messages)
    assert classified_as(reply) == ("contracts", "chat")
    assert reply.variant in {"big", "mid", "small"}
    assert logged(classified, reply.headers["x-request-id"])["route"] == "split"


def test_a_long_prompt_matches_the_length_rule(classified, fleet):
    long_prompt = [user("word " * 260)]  # 1,300 characters, about 325 tokens
    assert classified_as(ask(classified, fleet, long_prompt)) == ("long", "chat")
    assert classified_as(ask(classified, fleet, [user("word " * 100)])) == ("default", None)


def test_no_match_takes_the_default_route(classified, fleet):
    # The keyword is only in an earlier message, or past the prefix the rules read.
    for messages in (
        [user("python please"), user("thanks")],
        [user("x" * PREFIX + " python")],
    ):
        reply = ask(classified, fleet, messages)
        assert (reply.status, reply.variant) == (200, "mid")  # flip
        assert classified_as(reply) == ("default", None)
        assert logged(classified, reply.headers["x-request-id"])["rule"] == "default"


def test_a_completion_prompt_is_classified_too(classified, fleet):
    reply = ask(classified, fleet, None, path="/v1/completions", prompt="def f(): # python")
    assert (reply.status, reply.variant) == (200, "small")
    assert classified_as(reply) == ("code-words", "code")


def test_requests_that_name_a_task_type_or_model_are_not_classified(classified, fleet):
    python = [user("python")]
    for fields, headers, variant in [
        ({"model": "mid"}, {}, "mid"),
        ({"task_type": "flip"}, {}, "mid"),
        ({}, {"x-task-type": "flip"}, "mid"),
    ]:
        reply = ask(classified, fleet, python, headers=headers, **fields)
        assert (reply.status, reply.variant) == (200, variant)
        assert classified_as(reply) == (None, None)


def test_a_client_cannot_feed_the_rules_its_own_text(classified, fleet):
    spoofed = {"x-modelfleet-last-user": "python", "x-modelfleet-prompt-tokens": "9999"}
    reply = ask(classified, fleet, [user("hello")], headers=spoofed)
    assert classified_as(reply) == ("default", None)


def test_without_a_default_route_an_unmatched_request_is_404(live_gateway, fleet, backends):
    backends.reset()
    data = fleet.policy.to_wire()
    data["spec"]["classification"] = {
        k: v for k, v in CLASSIFICATION.items() if k != "defaultRoute"
    }
    live_gateway.apply(RoutingPolicy.model_validate(data))
    reply = ask(live_gateway, fleet, [user("hello")])
    assert reply.status == 404
    assert reply.json()["error"]["code"] == "model_not_found"
    assert classified_as(ask(live_gateway, fleet, [user("python")])) == ("code-words", "code")
