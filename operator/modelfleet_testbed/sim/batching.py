"""Continuous batching on one simulated vLLM replica, in virtual (GPU) time. Pure: no I/O.

The engine plays vLLM's v1 scheduler step by step: each step every decoding sequence
emits a token, ongoing prefills continue, and waiting requests are admitted in FIFO
order while the token budget (``max_num_batched_tokens``) lasts, fewer than
``max_num_seqs`` run, and their prompt plus output fits the free KV cache. A step's
length comes from the GPU profile. A request that does not fit waits.

Time only moves through ``advance_to(t)``, which commits every step that ends by ``t``
and returns what happened (first tokens, finished requests) with exact times. Stretches
of decode-only steps with an unchanged batch are summed in closed form, so the cost is
per request event, not per token; the replica server and the trace simulator both rely
on that.

KV blocks are reserved for the whole request at admission, so nothing is preempted.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import NamedTuple

from modelfleet_testbed.sim.gpu import DecodeStretch, GpuProfile

__all__ = ["BatchEngine", "FinishedRequest", "FirstToken", "RequestTooLong"]


class RequestTooLong(ValueError):
    """The prompt plus output tokens exceed what the replica's KV cache can ever hold."""


# Events are named tuples: a replay makes millions of them, and a tuple is made in C.
class FirstToken(NamedTuple):
    request_id: Hashable
    at: float


class FinishedRequest(NamedTuple):
    request_id: Hashable
    arrived_at: float
    admitted_at: float
    first_token_at: float
    finished_at: float
    prompt_tokens: int
    output_tokens: int

    @property
    def queued_seconds(self) -> float:
        return self.admitted_at - self.arrived_at

    @property
    def ttft_seconds(self) -> float:
        return self.first_token_at - self.arrived_at

    @property
    def e2e_seconds(self) -> float:
        return self.finished_at - self.arrived_at


Event = FirstToken | FinishedRequest


@dataclass(eq=False, slots=True)
class _Sequence:
    request_id: Hashable
    prompt_tokens: int
    output_tokens: int
    reserved_tokens: int  # KV cache held from admission: prompt plus output
    arrived_at: float
    admitted_at: float | None = None
    prefilled: int = 0
    first_token_at: float = 0.0
    # Value of the engine's decode-step counter when the first token came out.
    origin: int = 0
    finish_step: int = 0
    cancelled: bool = False


class _StepPlan:
    __slots__ = ("admitted", "chunks", "end", "steps")

    def __init__(
        self,
        end: float,
        steps: int,
        admitted: list[_Sequence] | None = None,
        chunks: list[tuple[_Sequence, int]] | None = None,
    ):
        self.end = end
        self.steps = steps
        # A decode stretch (most plans) admits nothing: it shares one empty tuple.
        self.admitted = admitted or ()
        self.chunks = chunks or ()


class BatchEngine:
    """The scheduler and batch of one replica. Times are GPU seconds on any clock."""

    def __init__(
        self,
        profile: GpuProfile,
        max_num_seqs: int | None = None,
        max_num_batched_tokens: int | None = None,
        start: float = 0.0,
        first_tokens: bool = True,
    ) -> None:
        """``first_tokens``: whether advance_to reports FirstToken events (a caller that
        reads only finished requests, like the trace replay, saves making millions)."""
        self.profile = profile
        self.first_tokens = first_tokens
        self.max_num_seqs = max_num_seqs or profile.default_max_num_seqs
        self.max_num_batched_tokens = (
            max_num_batched_tokens or profile.default_max_num_batched_tokens
        )
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if self.max_num_batched_tokens < self.max_num_seqs:
            # vLLM refuses this too: a full decode batch would not fit one step.
            raise ValueError(
                f"max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"max_num_seqs ({self.max_num_seqs})"
            )
        self.now = start  # the latest time advance_to was called with
        self._clock = start  # start of the next uncommitted step
        self._waiting: deque[_Sequence] = deque()
        self._prefilling: list[_Sequence] = []
        self._decoding: dict[Hashable, _Sequence] = {}
        self._finish_heap: list[tuple[int, int, _Sequence]] = []
        self._heap_order = 0
        self._decode_steps = 0
        # sum over decoding sequences of (prompt + 1 - origin): their context at
        # decode-step counter d is this plus len(decoding) * d.
        self._context_base = 0
        self._kv_reserved = 0
        self._ids: dict[Hashable, _Sequence] = {}
        # The step under way: fixed when it starts, so later arrivals and cancels
        # cannot reach back into it.
        self._current: _StepPlan | None = None
        # Running sequences cancelled during the step under way; they leave at its end.
        self._cancelled: list[_Sequence] = []
        # Per decode batch size: the terms of GpuProfile.decode_stretch that do not depend
        # on the context (a replay plans hundreds of thousands of stretches over a few
        # hundred batch sizes).
        self._stretch_terms: dict[int, tuple[float, float, float]] = {}

    # -- state -------------------------------------------------------------------

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return len(self._prefilling) + len(self._decoding)

    @property
    def kv_cache_usage(self) -> float:
        return self._kv_reserved / self.profile.kv_cache_tokens

    @property
    def idle(self) -> bool:
        return not self._ids and not self.num_running

    def __contains__(self, request_id: Hashable) -> bool:
        return request_id in self._ids

    def generated_tokens(self, request_id: Hashable) -> int:
        """Output tokens of a live request so far (0 while waiting or prefilling)."""
        seq = self._ids[request_id]
        if request_id not in self._decoding:
            return 0
        return 1 + self._decode_steps - seq.origin

    # -- input -------------------------------------------------------------------

    def submit(
        self, request_id: Hashable, prompt_tokens: int, output_tokens: int, at: float
    ) -> None:
        """Queue a request that arrived at ``at`` (not before the last ``advance_to``).
        The engine need not have been advanced to ``at``: steps before it run without the
        request, and it joins the first step that starts after it (in arrival order)."""
        if request_id in self._ids:
            raise ValueError(f"request {request_id!r} is already in the engine")
        if prompt_tokens < 1 or output_tokens < 1:
            raise ValueError("prompt_tokens and output_tokens must be >= 1")
        if prompt_tokens + output_tokens > self.profile.kv_cache_tokens:
            raise RequestTooLong(
                f"prompt ({prompt_tokens}) plus output ({output_tokens}) tokens exceed the "
                f"{self.profile.kv_cache_tokens} tokens of KV cache of {self.profile.name}"
            )
        if at < self.now:
            raise ValueError(
                f"request arrives at {at} but the engine is already at {self.now}; "
                "submit in time order"
            )
        seq = _Sequence(request_id, prompt_tokens, output_tokens, prompt_tokens + output_tokens, at)
        self._ids[request_id] = seq
        self._waiting.append(seq)

    def cancel(self, request_id: Hashable) -> bool:
        """Drop a request (client gone); False if it is not here. A running one stays in
        the step under way and leaves the batch when that step ends, as in vLLM."""
        seq = self._ids.pop(request_id, None)
        if seq is None:
            return False
        if seq.admitted_at is None:
            self._waiting.remove(seq)
        else:
            seq.cancelled = True
            self._cancelled.append(seq)
        return True

    # -- time --------------------------------------------------------------------

    def advance_to(self, t: float) -> list[Event]:
        """Commit every step that ends by ``t`` and start the next; return the events
        in time order."""
        if t < self.now:
            raise ValueError(f"time goes forward only: {t} < {self.now}")
        self.now = t
        events: list[Event] = []
        waiting, prefilling, decoding = self._waiting, self._prefilling, self._decoding
        heap = self._finish_heap
        while True:
            if not (prefilling or decoding):
                if not waiting or waiting[0].arrived_at > t:
                    self._clock = t
                    break
                # An idle GPU starts on a request the moment it arrives.
                self._clock = max(self._clock, waiting[0].arrived_at)
            stretch = self._steady_stretch(t)
            if stretch is not None:
                # Most of the time: a decode-only stretch, committed here (as _commit
                # would: it prefills nothing, and nothing was cancelled when it was planned).
                at, steps = stretch
                if at > t:
                    break
                self._decode_steps += steps
                self._clock = at
                if heap and heap[0][0] <= self._decode_steps:
                    self._finish_decoding(at, events)
                continue
            plan = self._current or self._plan_single_step()
            if plan is None:
                break
            if plan.chunks and plan is not self._current:
                self._start(plan)
            if plan.end > t:
                break
            self._commit(plan, events)
        return events

    def next_event_time(self) -> float | None:
        """When the next step boundary that can change a request's state comes, given
        no new arrivals; None when idle. Waking then is enough to miss nothing."""
        if self.num_running:
            plan = self._plan(until=None)
            return None if plan is None else plan.end
        if not self._waiting:
            return None
        saved = self._clock
        self._clock = max(self._clock, self._waiting[0].arrived_at)
        try:
            plan = self._plan(until=None)
        finally:
            self._clock = saved
        return None if plan is None else plan.end

    # -- scheduling ----------------------------------------------------------------

    def _plan(self, until: float | None) -> _StepPlan | None:
        """The step under way, or the next step or decode-only stretch from the clock;
        a stretch ends by ``until`` if it can (always one step at least), and by the
        arrival of a request submitted ahead of the clock, which joins the step after."""
        stretch = self._steady_stretch(until)
        if stretch is not None:
            return _StepPlan(*stretch)
        return self._current or self._plan_single_step()

    def _steady_stretch(self, until: float | None) -> tuple[float, int] | None:
        """(end, steps) of the next decode-only stretch, or None when the next step is not
        one: a step under way, prefills or cancels to finish, or a waiting request that
        can join the batch now."""
        if self._current is not None:
            return None
        decoding = self._decoding
        if self._prefilling or self._cancelled or not decoding:
            return None
        # The batch is steady unless the first waiting request can join it (it has arrived
        # by the clock, and there are a sequence slot and KV cache for it).
        waiting = self._waiting
        if waiting:
            head = waiting[0]
            arrival = head.arrived_at
            if arrival > self._clock:
                until = arrival if until is None else min(until, arrival)
            elif (
                len(decoding) < self.max_num_seqs
                and self._kv_reserved + head.prompt_tokens + head.output_tokens
                <= self.profile.kv_cache_tokens
            ):
                return None
        return self._plan_decode_stretch(until)

    def _plan_decode_stretch(self, until: float | None) -> tuple[float, int]:
        """(end, steps) of the steady batch's decode-only stretch from the clock."""
        decoding = len(self._decoding)
        steps_done = self._decode_steps
        context = self._context_base + decoding * steps_done
        heap = self._finish_heap
        while self._decoding.get(heap[0][2].request_id) is not heap[0][2]:
            heapq.heappop(heap)  # left the batch already
        until_finish = heap[0][0] - steps_done
        # GpuProfile.decode_stretch and DecodeStretch.seconds, inlined with the same
        # arithmetic in the same order (the replay's numbers stay the same to the bit).
        terms = self._stretch_terms.get(decoding)
        if terms is None:
            terms = self._stretch_terms[decoding] = _stretch_terms(self.profile, decoding)
        base, growth, compute = terms
        first_memory = base + self.profile.kv_read_seconds_per_token * context
        if first_memory >= compute:
            bound: int | None = 0
        elif growth <= 0:
            bound = None  # compute-bound for ever
        else:
            bound = math.ceil((compute - first_memory) / growth)
        clock = self._clock
        steps = until_finish
        compute_bound_steps = steps if bound is None else min(steps, bound)
        triangle = steps * (steps - 1) / 2 - compute_bound_steps * (compute_bound_steps - 1) / 2
        whole = clock + (
            compute_bound_steps * compute
            + (steps - compute_bound_steps) * first_memory
            + growth * triangle
        )
        if until is None or whole <= until:
            return whole, until_finish
        # The first step alone (DecodeStretch.seconds(1): compute-bound, or not at all).
        # When it ends after ``until`` so do all longer stretches, and the search below
        # would come back to it: the step an arrival waits out, about half of all cuts.
        first = clock + (first_memory if bound == 0 else compute)
        if first > until:
            return first, 1
        stretch = DecodeStretch(first_memory, growth, compute, bound)
        return stretch.last_end_by(clock, until, until_finish - 1)

    def _plan_single_step(self) -> _StepPlan | None:
        decoding = len(self._decoding)
        token_budget = self.max_num_batched_tokens - decoding
        chunks: list[tuple[_Sequence, int]] = []
        # The prefill chunks' sums for the step's cost (GpuProfile.step_seconds_of).
        prefill_tokens = prefill_context = 0
        attention_pairs = 0
        for seq in self._prefilling:
            if token_budget <= 0:
                break
            take = min(token_budget, seq.prompt_tokens - seq.prefilled)
            chunks.append((seq, take))
            token_budget -= take
            prefill_tokens += take
            prefill_context += seq.prefilled + take
            attention_pairs += take * (take / 2 + seq.prefilled)
        admitted: list[_Sequence] = []
        running = len(self._prefilling) + decoding
        kv_reserved = self._kv_reserved
        kv_cache = self.profile.kv_cache_tokens
        clock = self._clock
        for seq in self._waiting:
            if token_budget <= 0 or running >= self.max_num_seqs or seq.arrived_at > clock:
                break
            reserved = seq.prompt_tokens + seq.output_tokens
            if kv_reserved + reserved > kv_cache:
                break
            take = min(token_budget, seq.prompt_tokens)
            admitted.append(seq)
            chunks.append((seq, take))
            token_budget -= take
            running += 1
            kv_reserved += reserved
            prefill_tokens += take
            prefill_context += take  # nothing of it is cached yet
            attention_pairs += take * (take / 2 + 0)
        if not decoding and not chunks:
            return None
        seconds = self.profile.step_seconds_of(
            decoding,
            self._context_base + decoding * self._decode_steps,
            prefill_tokens,
            prefill_context,
            attention_pairs,
        )
        return _StepPlan(clock + seconds, 1, admitted, chunks)

    def _start(self, plan: _StepPlan) -> None:
        """Admit the step's new requests as it begins, as vLLM's scheduler does."""
        if plan is self._current or not plan.chunks:
            return
        for seq in plan.admitted:
            self._waiting.popleft()
            seq.admitted_at = self._clock
            self._prefilling.append(seq)
            self._kv_reserved += seq.reserved_tokens
        self._current = plan

    def _commit(self, plan: _StepPlan, events: list[Event]) -> None:
        end = plan.end
        self._current = None
        self._decode_steps += plan.steps
        self._clock = end
        heap = self._finish_heap
        if heap and heap[0][0] <= self._decode_steps:
            self._finish_decoding(end, events)
        for seq, take in plan.chunks:
            seq.prefilled += take
            if seq.prefilled < seq.prompt_tokens:
                continue
            self._prefilling.remove(seq)
            if seq.cancelled:
                self._kv_reserved -= seq.reserved_tokens
                continue
            seq.first_token_at = end
            if self.first_tokens:
                events.append(FirstToken(seq.request_id, end))
            if seq.output_tokens == 1:
                self._release(seq, end, events)
                continue
            seq.origin = self._decode_steps
            seq.finish_step = seq.origin + seq.output_tokens - 1
            self._decoding[seq.request_id] = seq
            self._context_base += seq.prompt_tokens + 1 - seq.origin
            heapq.heappush(self._finish_heap, (seq.finish_step, self._heap_order, seq))
            self._heap_order += 1
        if self._cancelled:
            for seq in self._cancelled:
                self._drop(seq)
            self._cancelled.clear()

    def _finish_decoding(self, at: float, events: list[Event]) -> None:
        heap = self._finish_heap
        while heap and heap[0][0] <= self._decode_steps:
            _, _, seq = heapq.heappop(heap)
            if self._decoding.get(seq.request_id) is not seq:
                continue  # left the batch already
            del self._decoding[seq.request_id]
            self._context_base -= seq.prompt_tokens + 1 - seq.origin
            if seq.cancelled:
                self._kv_reserved -= seq.reserved_tokens
            else:
                self._release(seq, at, events)

    def _drop(self, seq: _Sequence) -> None:
        """Take a cancelled sequence out of the batch, wherever it still is."""
        if self._decoding.get(seq.request_id) is seq:
            del self._decoding[seq.request_id]
            self._context_base -= seq.prompt_tokens + 1 - seq.origin
            self._kv_reserved -= seq.reserved_tokens
        elif seq in self._prefilling:
            self._prefilling.remove(seq)
            self._kv_reserved -= seq.reserved_tokens

    def _release(self, seq: _Sequence, at: float, events: list[Event]) -> None:
        del self._ids[seq.request_id]
        self._kv_reserved -= seq.reserved_tokens
        assert seq.admitted_at is not None
        events.append(
            FinishedRequest(  # positional: a keyword call costs more, millions of times
                seq.request_id,
                seq.arrived_at,
                seq.admitted_at,
                seq.first_token_at,
                at,
                seq.prompt_tokens,
                seq.output_tokens,
            )
        )


def _stretch_terms(profile: GpuProfile, decode_seqs: int) -> tuple[float, float, float]:
    """What GpuProfile.decode_stretch computes for ``decode_seqs`` before the context:
    fixed plus MoE time (first_memory without the KV read), growth and compute."""
    stretch = profile.decode_stretch(decode_seqs, 0)
    return stretch.first_memory, stretch.growth, stretch.compute
