"""The GPU speed model and the continuous-batching engine, without any server."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet_testbed.sim.batching import (
    BatchEngine,
    FinishedRequest,
    RequestTooLong,
    _stretch_terms,
)
from modelfleet_testbed.sim.gpu import PROFILES, PrefillChunk, get_profile, profile_for_model
from modelfleet_testbed.sim.replica_set import memoized

ALL_PROFILES = pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
SEVENTY_B = PROFILES["llama-3.1-70b/4xH100"]


def run_to_end(engine: BatchEngine, until: float = 1e6) -> dict[object, FinishedRequest]:
    events = engine.advance_to(until)
    assert engine.idle
    return {event.request_id: event for event in events if isinstance(event, FinishedRequest)}


# -- the step model ----------------------------------------------------------------------


@ALL_PROFILES
def test_decode_step_grows_with_batch_and_context(profile):
    by_batch = [profile.step_seconds(batch, batch * 1000) for batch in (1, 2, 8, 64, 256, 1024)]
    assert by_batch == sorted(by_batch)
    assert by_batch[-1] > by_batch[0]
    by_context = [profile.step_seconds(32, context) for context in (0, 10_000, 100_000, 400_000)]
    assert by_context == sorted(by_context)
    assert by_context[-1] > by_context[0]


@ALL_PROFILES
def test_time_to_first_token_grows_with_prompt_length(profile):
    ttfts = [profile.prefill_seconds(tokens) for tokens in (16, 512, 2048, 8192, 32768)]
    assert all(shorter < longer for shorter, longer in zip(ttfts, ttfts[1:], strict=False))


@ALL_PROFILES
def test_decode_throughput_saturates(profile):
    batches = (1, 4, 16, 64, 256, 1024, 4096)
    rates = [profile.decode_tokens_per_second(batch, 1500) for batch in batches]
    assert rates == sorted(rates)
    gains = [later / earlier for earlier, later in zip(rates, rates[1:], strict=False)]
    assert all(gain < 4 for gain in gains)  # a 4x batch never buys 4x the tokens
    # Past a few hundred sequences each 4x buys less, ending below 2x: a ceiling nears.
    assert gains[-3] > gains[-2] > gains[-1]
    assert gains[-1] < 2
    # ... while every sequence waits longer for each token.
    per_token = [batch / rate for batch, rate in zip(batches, rates, strict=False)]
    assert per_token == sorted(per_token)


def test_prefill_is_compute_bound_and_decode_memory_bound_on_a_dense_model():
    long_prefill = SEVENTY_B.step_seconds(0, 0, [PrefillChunk(8192)])
    memory_only = SEVENTY_B.fixed_step_seconds + SEVENTY_B.kv_read_seconds_per_token * 8192
    assert long_prefill > 2 * memory_only
    assert SEVENTY_B.step_seconds(1, 1000) == pytest.approx(
        SEVENTY_B.fixed_step_seconds + SEVENTY_B.kv_read_seconds_per_token * 1000
    )


@pytest.mark.parametrize(
    "profile",
    [
        SEVENTY_B,
        PROFILES["qwen3-235b-a22b/8xH100"],
        # compute-bound for the first steps, then memory-bound as the context grows
        dataclasses.replace(
            SEVENTY_B, matmul_flops_per_token=SEVENTY_B.matmul_flops_per_token * 40
        ),
    ],
    ids=["dense", "moe", "crossing"],
)
def test_decode_stretch_equals_the_sum_of_its_steps(profile):
    batch, context = 48, 48 * 700
    for steps in (1, 2, 7, 300):
        one_by_one = sum(profile.step_seconds(batch, context + batch * j) for j in range(steps))
        assert profile.decode_stretch_seconds(batch, context, steps) == pytest.approx(one_by_one)


def test_sample_variants_get_the_nearest_profiles():
    assert profile_for_model("Qwen/Qwen3-235B-A22B-Instruct-2507").name == "qwen3-235b-a22b/8xH100"
    assert profile_for_model("Qwen/Qwen2.5-72B-Instruct").name == "llama-3.1-70b/4xH100"
    assert profile_for_model("Qwen/Qwen3-30B-A3B-Instruct-2507").name == "qwen3-30b-a3b/1xH100"
    assert profile_for_model("Qwen/Qwen2.5-7B-Instruct").name == "mistral-7b/1xL40S"
    assert profile_for_model("meta-llama/Llama-3.1-8B").gpu_type == "L40S"


def test_unknown_profiles_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="mistral-7b/1xL40S"):
        profile_for_model("my-company/chat-model")
    with pytest.raises(ValueError, match="unknown GPU profile 'a100'"):
        get_profile("a100")


# -- the batching engine ----------------------------------------------------------------


def test_requests_beyond_max_num_seqs_wait_in_fifo_order():
    engine = BatchEngine(SEVENTY_B, max_num_seqs=4)
    for request_id in range(10):
        engine.submit(request_id, 400, 60, at=0.0)
    engine.advance_to(0.5)  # well inside the first wave
    assert (engine.num_running, engine.num_waiting) == (4, 6)
    finished = run_to_end(engine)
    admitted = sorted(finished.values(), key=lambda request: request.admitted_at)
    assert [request.request_id for request in admitted] == list(range(10))
    assert all(finished[i].queued_seconds == 0 for i in range(4))
    assert all(finished[i].queued_seconds > 0 for i in range(4, 10))
    # nobody runs alongside more than three others: admissions wait for departures
    for request in finished.values():
        overlapping = [
            other
            for other in finished.values()
            if other.admitted_at <= request.admitted_at < other.finished_at
        ]
        assert len(overlapping) <= 4


def test_engine_time_to_first_token_grows_with_prompt_length():
    ttfts = []
    for prompt in (10, 1_000, 5_000, 20_000):
        engine = BatchEngine(SEVENTY_B)
        engine.submit("only", prompt, 5, at=3.0)
        ttfts.append(run_to_end(engine)["only"].ttft_seconds)
    assert all(shorter < longer for shorter, longer in zip(ttfts, ttfts[1:], strict=False))


def test_long_prompts_are_prefilled_in_chunks_of_the_token_budget():
    engine = BatchEngine(SEVENTY_B, max_num_seqs=8, max_num_batched_tokens=1024)
    engine.submit("long", 4096, 2, at=0.0)
    step_ends = []
    while engine.generated_tokens("long") == 0:
        step_end = engine.next_event_time()
        assert step_end is not None
        step_ends.append(step_end)
        engine.advance_to(step_end)
    chunks = [PrefillChunk(1024, history=1024 * i) for i in range(4)]
    assert len(step_ends) == 4
    assert step_ends[-1] == pytest.approx(sum(SEVENTY_B.step_seconds(0, 0, [c]) for c in chunks))


def test_request_throughput_saturates_with_max_num_seqs():
    def requests_per_second(max_num_seqs: int) -> float:
        engine = BatchEngine(SEVENTY_B, max_num_seqs=max_num_seqs)
        for request_id in range(512):
            engine.submit(request_id, 1000, 200, at=0.0)
        finished = run_to_end(engine)
        return len(finished) / max(request.finished_at for request in finished.values())

    rates = [requests_per_second(slots) for slots in (1, 4, 32, 256)]
    assert rates == sorted(rates)
    assert rates[1] / rates[0] > 2  # batching pays off at first
    assert rates[3] / rates[2] < rates[1] / rates[0]  # then it flattens


def test_advancing_in_small_or_large_steps_gives_the_same_times():
    arrivals = [(i, 0.05 * i, 100 + 37 * i, 20 + 11 * i) for i in range(12)]

    def replay(tick: float) -> dict[object, FinishedRequest]:
        engine = BatchEngine(SEVENTY_B, max_num_seqs=3)
        finished: dict[object, FinishedRequest] = {}
        now = 0.0
        pending = list(arrivals)
        while pending or not engine.idle:
            now += tick
            while pending and pending[0][1] <= now:
                request_id, at, prompt, output = pending.pop(0)
                for event in engine.advance_to(at):
                    if isinstance(event, FinishedRequest):
                        finished[event.request_id] = event
                engine.submit(request_id, prompt, output, at=at)
            for event in engine.advance_to(now):
                if isinstance(event, FinishedRequest):
                    finished[event.request_id] = event
        return finished

    fine, coarse = replay(0.001), replay(0.7)
    assert fine.keys() == coarse.keys() == {i for i, *_ in arrivals}
    for request_id, request in fine.items():
        assert coarse[request_id].finished_at == pytest.approx(request.finished_at, abs=1e-9)
        assert coarse[request_id].first_token_at == pytest.approx(request.first_token_at, abs=1e-9)


def test_requests_wait_for_kv_cache_even_below_max_num_seqs():
    small_cache = dataclasses.replace(SEVENTY_B, kv_cache_tokens=10_000)
    engine = BatchEngine(small_cache, max_num_seqs=16)
    for request_id in range(3):
        engine.submit(request_id, 4_000, 500, at=0.0)
    engine.advance_to(0.1)
    assert (engine.num_running, engine.num_waiting) == (2, 1)
    assert engine.kv_cache_usage == pytest.approx(0.9)
    with pytest.raises(RequestTooLong, match="10000 tokens of KV cache"):
        engine.submit("huge", 9_000, 2_000, at=0.1)


def test_cancel_frees_the_slot_for_the_next_request():
    engine = BatchEngine(SEVENTY_B, max_num_seqs=1)
    engine.submit("first", 100, 1000, at=0.0)
    engine.submit("second", 100, 10, at=0.0)
    engine.submit("third", 100, 10, at=0.0)
    engine.advance_to(1.0)
    assert engine.generated_tokens("first") > 1
    assert engine.num_waiting == 2
    assert engine.cancel("third")
    assert engine.num_waiting == 1
    assert engine.cancel("first")
    assert not engine.cancel("first")
    finished = run_to_end(engine)
    assert list(finished) == ["second"]
    assert finished["second"].admitted_at >= 1.0


def test_one_token_outputs_finish_at_their_first_token():
    engine = BatchEngine(SEVENTY_B)
    engine.submit("embed", 300, 1, at=2.0)
    request = run_to_end(engine)["embed"]
    assert (
        request.finished_at
        == request.first_token_at
        == pytest.approx(2.0 + SEVENTY_B.prefill_seconds(300))
    )


def test_time_and_arrivals_only_move_forward():
    engine = BatchEngine(SEVENTY_B)
    engine.advance_to(5.0)
    with pytest.raises(ValueError, match="submit in time order"):
        engine.submit("late", 10, 10, at=4.0)
    with pytest.raises(ValueError, match="time goes forward only"):
        engine.advance_to(4.0)
    with pytest.raises(ValueError, match="max_num_batched_tokens"):
        BatchEngine(SEVENTY_B, max_num_seqs=512, max_num_batched_tokens=256)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 0.5),  # gap to the previous arrival
            st.integers(1, 6000),  # prompt tokens
            st.integers(1, 300),  # output tokens
            st.booleans(),  # cancelled a little later
        ),
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 8),
)
def test_every_request_finishes_once_or_is_cancelled_and_limits_hold(arrivals, max_num_seqs):
    profile = dataclasses.replace(SEVENTY_B, kv_cache_tokens=20_000)
    engine = BatchEngine(profile, max_num_seqs=max_num_seqs, max_num_batched_tokens=2048)
    finished: list[FinishedRequest] = []
    cancelled: set[int] = set()
    now = 0.0

    def advance(t: float) -> None:
        finished.extend(e for e in engine.advance_to(t) if isinstance(e, FinishedRequest))
        assert engine.num_running <= max_num_seqs
        assert engine.kv_cache_usage <= 1.0

    for request_id, (gap, prompt, output, cancel) in enumerate(arrivals):
        now += gap
        advance(now)
        engine.submit(request_id, prompt, output, at=now)
        if cancel:
            advance(now + 0.05)
            now += 0.05
            if request_id in engine:
                engine.cancel(request_id)
                cancelled.add(request_id)
    advance(now + 1e6)
    assert engine.idle
    done = [request.request_id for request in finished]
    assert len(done) == len(set(done))
    assert set(done) | cancelled == set(range(len(arrivals)))
    assert not set(done) & cancelled
    for request in finished:
        assert request.arrived_at <= request.admitted_at < request.first_token_at
        assert request.first_token_at <= request.finished_at


@settings(max_examples=300, deadline=None)
@given(
    profile=st.sampled_from([*PROFILES.values(), *(memoized(p) for p in PROFILES.values())]),
    decode_seqs=st.integers(1, 256),
    context=st.integers(0, 2_000_000),
    steps=st.integers(1, 500),  # the batch fits every profile's KV cache
)
def test_remembered_stretch_terms_give_the_stretch_to_the_bit(profile, decode_seqs, context, steps):
    """The engine keeps the context-free terms of a stretch per batch size; with the
    context's KV read added (in the profile's order) they give the same stretch as
    GpuProfile.decode_stretch, to the last bit."""
    base, growth, compute = _stretch_terms(profile, decode_seqs)
    stretch = profile.decode_stretch(decode_seqs, context)
    assert base + profile.kv_read_seconds_per_token * context == stretch.first_memory
    assert (growth, compute) == (stretch.growth, stretch.compute)
    engine = BatchEngine(profile, max_num_seqs=4096, max_num_batched_tokens=8192)
    for seq in range(decode_seqs):  # a steady batch of decode_seqs sequences, then a stretch
        engine.submit(seq, 1, steps + 1, 0.0)
    finished = run_to_end(engine, 1e9)
    assert engine._stretch_terms[decode_seqs] == (base, growth, compute)
    # After the one prefill step, one stretch of `steps` decode steps: as the profile says.
    first_token = finished[0].first_token_at
    expected = first_token + profile.decode_stretch(decode_seqs, decode_seqs * 2).seconds(steps)
    assert {event.finished_at for event in finished.values()} == {expected}


def test_an_engine_without_first_token_events_finishes_the_same():
    """The replay asks for finished requests only: the same requests, at the same times."""
    engines = [BatchEngine(SEVENTY_B, max_num_seqs=8, first_tokens=flag) for flag in (True, False)]
    for i in range(40):
        for engine in engines:
            engine.submit(i, 200 + 37 * i, 5 + i % 13, i * 0.05)
    with_first, without = (engine.advance_to(1e6) for engine in engines)
    assert any(not isinstance(event, FinishedRequest) for event in with_first)
    assert without == [event for event in with_first if isinstance(event, FinishedRequest)]
    assert len(without) == 40
