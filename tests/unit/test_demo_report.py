"""The demo's report, pure: tokens per tenant from the gateway's counters, each tenant's
bill, and a budget's story (when hit, its states in order, where its calls went after)."""

from modelfleet_testbed.demo.loadgen import Outcome
from modelfleet_testbed.demo.monitor import Sample, Timeline, tokens_by_tenant
from modelfleet_testbed.demo.report import budget_story, tenant_lines


def sample(hour: float, state: str, spend: float) -> Sample:
    budget = {"state": state, "spend": spend, "amount": 1.0, "action": "degrade"}
    budget["resets_at"] = "2026-12-04T16:00:00Z" if hour >= 24 else "2026-12-03T16:00:00Z"
    return Sample(
        0, hour, "day", {}, {}, 0, 0, {}, 0, {"research/day": {**budget, "currency": "USD"}}
    )


def call(hour: float, task: str, served_by: str, key: str = "research-app") -> Outcome:
    return Outcome(0, hour, "day", key, task, "", 200, 0.1, served_by)


def test_tokens_and_bill_per_tenant():
    tokens = tokens_by_tenant(
        {
            "requests": [{"metric": {"tenant": "acme"}, "value": [0, "3"]}],
            "prompt_tokens": [{"metric": {"tenant": "acme"}, "value": [0, "120"]}],
            "completion_tokens": [{"metric": {}, "value": [0, "7"]}],
        }
    )
    assert tokens == {
        "(none)": {"requests": 0.0, "prompt_tokens": 0.0, "completion_tokens": 7.0},
        "acme": {"requests": 3.0, "prompt_tokens": 120.0, "completion_tokens": 0.0},
    }
    billed = {"acme": {"onDemand": 0.5, "reserved": 2.0}, "(pool)": {"pool": 99.0}}
    lines = tenant_lines(tokens, billed)
    assert lines["acme"] == {
        "calls": 3.0,
        "prompt_tokens": 120.0,
        "completion_tokens": 0.0,
        "billed": 2.5,
    }
    assert "(pool)" not in lines


def test_a_budget_story_from_the_samples():
    timeline = Timeline(
        [
            sample(8, "WithinBudget", 0.2),
            sample(10, "SoftLimitReached", 0.6),
            sample(12, "Degraded", 1.1),
            sample(20, "Degraded", 1.4),
            sample(24.5, "WithinBudget", 0.0),
        ]
    )
    outcomes = [
        call(11, "chat", "chat-qwen3-30b-moe"),  # before the hit
        call(12.1, "chat", "chat-qwen3-30b-moe"),  # in flight while the routes swap
        call(13, "chat", "chat-qwen25-7b"),
        call(14, "summary", "chat-qwen25-7b"),
        call(15, "legal", "chat-qwen3-235b"),
        call(15, "chat", "chat-qwen3-30b-moe", key="support-app"),  # someone else
        call(25, "chat", "chat-qwen3-30b-moe"),  # after midnight
    ]
    story = budget_story(timeline, outcomes, {"research-app": "research", "support-app": "s"})
    research = story["research/day"]
    assert research["hit_at_hour"] == 12 and research["max_spend"] == 1.4
    assert research["states"] == ["WithinBudget", "SoftLimitReached", "Degraded", "WithinBudget"]
    assert research["final_state"] == "WithinBudget"
    assert research["resets_at"] == "2026-12-03T16:00:00Z"
    assert research["reset_seen_at_hour"] == 24.5
    assert research["after_hit"]["served_by"] == {
        "chat-summary": {"chat-qwen25-7b": 2},
        "legal-medical": {"chat-qwen3-235b": 1},
    }
    assert research["after_hit"]["by_status"] == {"200": 3}


def test_a_budget_never_hit_has_no_after():
    timeline = Timeline([sample(8, "WithinBudget", 0.2)])
    story = budget_story(timeline, [call(9, "chat", "x")], {"research-app": "research"})
    assert story["research/day"]["hit_at_hour"] is None
    assert story["research/day"]["after_hit"]["served_by"] == {}
    assert story["research/day"]["resets_at"] is None
