"""The official `openai` Python SDK through the real gateway, in front of simulated vLLM
replicas: chat, a streamed chat routed by `task_type` (extra_body), completions, embeddings,
and the gateway's errors as the SDK's exception types. The token counters equal the usage
the model servers reported (docs/gateway.md shows the same calls)."""

from __future__ import annotations

import openai
import pytest

from .processes import SimBackends, wait_until
from .records import metric

pytestmark = pytest.mark.envoy

PROMPT = "envoy_modelfleet_prompt_tokens"
COMPLETION = "envoy_modelfleet_completion_tokens"


@pytest.fixture(scope="module")
def replicas(fleet):
    served = {
        variant.name: [variant.model, variant.name, fleet.pool.name]
        for variant in fleet.pool.spec.variants
    }
    sim = SimBackends(served)
    yield sim
    sim.stop()


@pytest.fixture
def client(live_gateway, replicas, fleet):
    """An SDK client of the gateway, whose variants are simulated vLLM replicas."""
    live_gateway.apply(backends=replicas.addresses())
    with openai.OpenAI(
        base_url=f"{live_gateway.url}/v1", api_key=fleet.key("other").key, max_retries=0
    ) as sdk:
        yield sdk


def tokens(gateway, route: str, variant: str) -> tuple[float, float]:
    text = gateway.envoy.prometheus()
    labels = {"key_id": "other", "tenant": "globex", "route": route, "variant": variant}
    return metric(text, PROMPT, **labels), metric(text, COMPLETION, **labels)


def grew(after: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


def grew_after_stream(gateway, route: str, variant: str, before: tuple[float, float]):
    """What a streamed answer added to the counters. The gateway counts a stream at its
    end, after passing the last chunk on: the client can have read it first."""
    return wait_until(
        lambda: (added := grew(tokens(gateway, route, variant), before))[1] > 0 and added,
        5,
        "the streamed answer's tokens counted",
    )


def test_chat(client, live_gateway):
    before = tokens(live_gateway, "by-model-mid", "mid")
    answer = client.chat.completions.create(
        model="mid", messages=[{"role": "user", "content": "Say hello."}], max_tokens=5
    )
    assert answer.choices[0].message.content
    assert answer.usage.completion_tokens == 5
    after = tokens(live_gateway, "by-model-mid", "mid")
    assert grew(after, before) == (answer.usage.prompt_tokens, answer.usage.completion_tokens)


def test_streamed_chat_routed_by_task_type(client, live_gateway):
    before = tokens(live_gateway, "code", "small")
    stream = client.chat.completions.create(
        model="gw",
        messages=[{"role": "user", "content": "Write a function that adds two numbers."}],
        max_tokens=6,
        stream=True,
        extra_body={"task_type": "code"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    # The client did not ask for usage and got none; the gateway counted it anyway.
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    prompt, completion = grew_after_stream(live_gateway, "code", "small", before)
    assert completion == 6 and prompt > 0
    # Asked for, the usage comes in the last chunk and is what was counted.
    before = tokens(live_gateway, "code", "small")
    stream = client.chat.completions.create(
        model="gw",
        messages=[{"role": "user", "content": "Write a function that adds two numbers."}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"task_type": "code"},
    )
    last = list(stream)[-1]
    assert last.choices == [] and last.usage.completion_tokens == 6
    assert last.usage.prompt_tokens == prompt
    assert grew_after_stream(live_gateway, "code", "small", before) == (prompt, completion)


def test_completions(client, live_gateway):
    before = tokens(live_gateway, "by-model-mid", "mid")
    answer = client.completions.create(model="org/mid-70b", prompt="Once upon a time", max_tokens=4)
    assert answer.choices[0].text and answer.usage.completion_tokens == 4
    assert grew(tokens(live_gateway, "by-model-mid", "mid"), before) == (
        answer.usage.prompt_tokens,
        4,
    )


def test_embeddings(client, live_gateway):
    before = tokens(live_gateway, "by-model-mid", "mid")
    answer = client.embeddings.create(model="mid", input=["first text", "second text"])
    assert len(answer.data) == 2 and len(answer.data[0].embedding) > 0
    assert grew(tokens(live_gateway, "by-model-mid", "mid"), before) == (
        answer.usage.prompt_tokens,
        0,
    )


def test_errors_are_the_sdks_exceptions(client, live_gateway, fleet):
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="mid", messages=[{"role": "user", "content": " "}])
    assert bad.value.code == "empty_input" and bad.value.param == "messages"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert missing.value.code == "model_not_found"
    stranger = openai.OpenAI(base_url=f"{live_gateway.url}/v1", api_key="sk-nobody", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        stranger.models.list()
    assert refused.value.code == "invalid_api_key"
    stranger.close()
    assert [m.id for m in client.models.list()] == ["mid", "org/mid-70b"]
