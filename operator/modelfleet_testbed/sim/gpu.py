"""How long one vLLM engine step takes on a replica's GPUs: a pure, calibrated speed model.

A vLLM engine runs in steps. Each step reads every weight once, reads the KV cache of
every running sequence, emits one token per decoding sequence and pushes prefill
chunks of waiting prompts through the model. So a step costs

    memory  = fixed + moe_layers * moe_layer(tokens) + kv_read * context_tokens
    compute = (matmul_flops * tokens + attention_flops * sum(c * (c/2 + history))) / peak
    step    = max(memory, compute)

where ``tokens`` are the step's decode plus prefill tokens, ``context_tokens`` all
tokens whose KV is read, and ``c``/``history`` each prefill chunk's size and the prompt
tokens already in cache before it. Decode steps are memory-bound, long prefills
compute-bound; the max() takes whichever limits.

Source of the numbers: PyPI ``vllm-sr-sim`` 0.1.0.dev20260713123629 (Apache-2.0),
package ``fleet_sim``:

- ``fleet_sim/gpu_profiles/builder.py`` ``ProfileBuilder().build(hw, model,
  ServingConfig(tp=...))`` gives W (weight streaming at 80 % of peak bandwidth plus
  3 us per layer) and H (KV read per sequence at 2,048 tokens of context);
  ``kv_read_seconds_per_token`` is H / 2,048. For MoE models W is the expert
  kernel's per-layer latency from the builder's ``_MOE_TABLE`` (H100 SXM,
  TRT-LLM 1.0.0rc3, fp16) plus attention-weight streaming; we keep the table's
  points and interpolate at the step's token count instead of the builder's fixed
  reference batch of 8; past the table's last point (512 tokens) we extend its last
  segment linearly where the builder clamps, so long prefills cost more.
- ``fleet_sim/gpu_profiles/computed.py`` ``ComputedProfile.prefill_iter_latency``:
  the prefill FLOP count (QKV/O projections, SwiGLU FFN or top-k experts, causal
  attention over the chunk and its history) and max(compute, memory).
- ``fleet_sim/hardware/catalog.py`` ``H100_SXM`` / ``L40S`` (bandwidth, fp16
  tensor-core peak) and ``fleet_sim/models/catalog.py`` (architectures).
- KV-cache capacity: the builder's ``total_kv_blks`` x 16 tokens per block, times
  min(tp, kv heads): the builder sets one GPU's free memory against the whole
  model's per-token KV, while vLLM shards KV heads over the tensor-parallel ranks.

Defaults of ``max_num_seqs`` / ``max_num_batched_tokens`` are vLLM's own for the
OpenAI server (``EngineArgs.get_batch_defaults``): 1024 / 8192 on GPUs with at least
70 GiB that are not A100s, 256 / 2048 otherwise.

Sample variants and the nearest fleet_sim entries chosen for them:

- 235B MoE on 8 x H100 -> Qwen3-235B-A22B, H100-SXM, TP 8 (exact).
- 70B on 4 x H100      -> Llama-3.1-70B, H100-SXM, TP 4 (Qwen2.5-72B has the same
  80 layers, 8,192 hidden, 64/8 heads; fleet_sim has no Qwen2.5-72B).
- 30B-A3B MoE on 1 x H100 -> Qwen3-30B-A3B, H100-SXM, TP 1 (exact).
- 7B on 1 x L40S       -> Mistral-7B, L40S, TP 1 (nearest in size to Qwen2.5-7B
  among fleet_sim's Mistral-7B, Llama-3.1-8B and Qwen3-8B).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PROFILES",
    "DecodeStretch",
    "GpuProfile",
    "PrefillChunk",
    "get_profile",
    "profile_for_model",
]


@dataclass(frozen=True)
class PrefillChunk:
    """Part of one prompt processed in a step: ``tokens`` new, ``history`` already cached."""

    tokens: int
    history: int = 0


@dataclass(frozen=True)
class GpuProfile:
    """The speed of one replica (all its tensor-parallel GPUs together), in GPU seconds."""

    name: str
    model: str  # the architecture the numbers were derived for
    params_billions: float
    gpu_type: str
    gpus: int
    fixed_step_seconds: float
    kv_read_seconds_per_token: float
    matmul_flops_per_token: float
    attention_flops_per_token_pair: float
    peak_flops: float
    kv_cache_tokens: int
    default_max_num_seqs: int
    default_max_num_batched_tokens: int
    moe_layers: int = 0
    moe_layer_seconds: tuple[tuple[int, float], ...] = ()

    def step_seconds(
        self,
        decode_seqs: int,
        decode_context_tokens: int,
        prefill: Sequence[PrefillChunk] = (),
    ) -> float:
        """One engine step: ``decode_seqs`` sequences emit a token each while their
        ``decode_context_tokens`` (sum over them) are read, plus the prefill chunks."""
        if decode_seqs < 0 or decode_context_tokens < 0:
            raise ValueError("decode_seqs and decode_context_tokens must be >= 0")
        prefill_tokens = sum(chunk.tokens for chunk in prefill)
        if decode_seqs + prefill_tokens == 0:
            return 0.0
        return self.step_seconds_of(
            decode_seqs,
            decode_context_tokens,
            prefill_tokens,
            sum(chunk.history + chunk.tokens for chunk in prefill),
            sum(chunk.tokens * (chunk.tokens / 2 + chunk.history) for chunk in prefill),
        )

    def step_seconds_of(
        self,
        decode_seqs: int,
        decode_context_tokens: int,
        prefill_tokens: int,
        prefill_context: int,
        attention_pairs: float,
    ) -> float:
        """``step_seconds`` from the prefill chunks' sums (tokens, tokens read, and
        sum of tokens * (tokens / 2 + history)), for a caller that has them at hand."""
        tokens = decode_seqs + prefill_tokens
        memory = (
            self.fixed_step_seconds
            + self._moe_seconds(tokens)
            + self.kv_read_seconds_per_token * (decode_context_tokens + prefill_context)
        )
        compute = (
            self.matmul_flops_per_token * tokens
            + self.attention_flops_per_token_pair * attention_pairs
        ) / self.peak_flops
        return max(memory, compute)

    def decode_stretch(self, decode_seqs: int, start_context_tokens: int) -> DecodeStretch:
        """Consecutive decode-only steps of an unchanged batch (``decode_seqs`` > 0)."""
        first_memory = (
            self.fixed_step_seconds
            + self._moe_seconds(decode_seqs)
            + self.kv_read_seconds_per_token * start_context_tokens
        )
        growth = self.kv_read_seconds_per_token * decode_seqs
        compute = self.matmul_flops_per_token * decode_seqs / self.peak_flops
        if first_memory >= compute:
            compute_bound = 0
        elif growth <= 0:
            compute_bound = None  # compute-bound for ever
        else:
            compute_bound = math.ceil((compute - first_memory) / growth)
        return DecodeStretch(first_memory, growth, compute, compute_bound)

    def decode_stretch_seconds(
        self, decode_seqs: int, start_context_tokens: int, steps: int
    ) -> float:
        """``steps`` consecutive decode-only steps of an unchanged batch, in closed form
        (see DecodeStretch)."""
        if steps <= 0 or decode_seqs <= 0:
            return 0.0
        return self.decode_stretch(decode_seqs, start_context_tokens).seconds(steps)

    def decode_steps_within(
        self, decode_seqs: int, start_context_tokens: int, seconds: float
    ) -> int:
        """About how many decode-only steps of an unchanged batch fit in ``seconds``
        (see DecodeStretch.steps_within); never negative."""
        if seconds <= 0 or decode_seqs <= 0:
            return 0
        return self.decode_stretch(decode_seqs, start_context_tokens).steps_within(seconds)

    def decode_tokens_per_second(self, batch_size: int, context_tokens_per_seq: int) -> float:
        """Output tokens per second of a steady decode batch."""
        if batch_size <= 0:
            return 0.0
        step = self.step_seconds(batch_size, batch_size * context_tokens_per_seq)
        return batch_size / step

    def prefill_seconds(
        self, prompt_tokens: int, max_num_batched_tokens: int | None = None
    ) -> float:
        """Prefill of one prompt alone on the replica: its time to first token when idle."""
        if prompt_tokens <= 0:
            raise ValueError("prompt_tokens must be >= 1")
        budget = max_num_batched_tokens or self.default_max_num_batched_tokens
        total, done = 0.0, 0
        while done < prompt_tokens:
            chunk = min(budget, prompt_tokens - done)
            total += self.step_seconds(0, 0, (PrefillChunk(chunk, done),))
            done += chunk
        return total

    def _moe_seconds(self, tokens: int) -> float:
        if not self.moe_layers:
            return 0.0
        points = self.moe_layer_seconds
        counts = [count for count, _ in points]
        if tokens <= counts[0]:
            return self.moe_layers * points[0][1]
        # Past the last point the last segment goes on: more tokens per expert cost
        # more, or an 8K-token prefill would cost what a 512-token one does.
        upper = min(bisect.bisect_left(counts, tokens), len(points) - 1)
        (x0, y0), (x1, y1) = points[upper - 1], points[upper]
        per_layer = y0 + (tokens - x0) / (x1 - x0) * (y1 - y0)
        return self.moe_layers * per_layer


class DecodeStretch:
    """Consecutive decode-only steps of an unchanged batch, in closed form.

    Each step adds one token to every sequence, so the context read grows by
    ``growth`` seconds per step while the compute term stays put; the sum of
    max(growing line, constant) splits where they cross, after ``compute_bound`` steps.
    """

    __slots__ = ("compute", "compute_bound", "first_memory", "growth")

    def __init__(
        self, first_memory: float, growth: float, compute: float, compute_bound: int | None
    ):
        self.first_memory = first_memory
        self.growth = growth
        self.compute = compute
        self.compute_bound = compute_bound  # None: compute-bound for ever

    def seconds(self, steps: int) -> float:
        """How long ``steps`` (>= 1) steps take."""
        bound = self.compute_bound
        compute_bound_steps = steps if bound is None else min(steps, bound)
        memory_steps = steps - compute_bound_steps
        triangle = steps * (steps - 1) / 2 - compute_bound_steps * (compute_bound_steps - 1) / 2
        return (
            compute_bound_steps * self.compute
            + memory_steps * self.first_memory
            + self.growth * triangle
        )

    def last_end_by(self, start: float, until: float, most: int) -> tuple[float, int]:
        """(end, steps) of the longest stretch from ``start``, of 1 to ``most`` steps, that
        ends by ``until`` (1 step when none does): the closed-form estimate, checked
        against the exact sum."""
        seconds = self.seconds
        steps = max(1, min(self.steps_within(until - start), most))
        last = start + seconds(steps)
        while steps > 1 and last > until:
            steps -= 1
            last = start + seconds(steps)
        while steps < most:
            following = start + seconds(steps + 1)
            if following > until:
                break
            steps, last = steps + 1, following
        return last, steps

    def steps_within(self, seconds: float) -> int:
        """About how many steps fit in ``seconds``: the inverse of ``seconds`` in closed
        form (a line while compute-bound, then a quadratic), so a caller checks one or
        two neighbours instead of searching. Exact up to floating-point rounding."""
        if seconds <= 0:
            return 0
        compute, first_memory, growth = self.compute, self.first_memory, self.growth
        bound = self.compute_bound
        if bound is None:
            return int(seconds // compute)
        if seconds < bound * compute:
            return int(seconds // compute)
        left = seconds - bound * compute
        # m memory-bound steps from step index c cost m*F + g*(m*c + m*(m-1)/2).
        if growth <= 0:
            return bound + int(left // first_memory)
        linear = first_memory + growth * bound - growth / 2
        root = (-linear + math.sqrt(linear * linear + 2 * growth * left)) / growth
        return bound + max(0, int(root))


_H100_PEAK_FP16 = 989e12
_L40S_PEAK_FP16 = 362e12

PROFILES: dict[str, GpuProfile] = {
    profile.name: profile
    for profile in (
        GpuProfile(
            name="qwen3-235b-a22b/8xH100",
            model="Qwen3-235B-A22B",
            params_billions=235,
            gpu_type="H100-SXM",
            gpus=8,
            fixed_step_seconds=0.0005946165,
            moe_layers=94,
            moe_layer_seconds=(
                (1, 0.000144),
                (8, 0.00048),
                (32, 0.00128),
                (128, 0.00154),
                (512, 0.0019),
            ),
            kv_read_seconds_per_token=4.48955224e-09,
            matmul_flops_per_token=4386193408.0,
            attention_flops_per_token_pair=192512.0,
            peak_flops=_H100_PEAK_FP16,
            kv_cache_tokens=794944,
            default_max_num_seqs=1024,
            default_max_num_batched_tokens=8192,
        ),
        GpuProfile(
            name="llama-3.1-70b/4xH100",
            model="Llama-3.1-70B",
            params_billions=70,
            gpu_type="H100-SXM",
            gpus=4,
            fixed_step_seconds=0.0132067378,
            kv_read_seconds_per_token=3.05671642e-08,
            matmul_flops_per_token=34225520640.0,
            attention_flops_per_token_pair=655360.0,
            peak_flops=_H100_PEAK_FP16,
            kv_cache_tokens=514496,
            default_max_num_seqs=1024,
            default_max_num_batched_tokens=8192,
        ),
        GpuProfile(
            name="qwen3-30b-a3b/1xH100",
            model="Qwen3-30B-A3B",
            params_billions=30,
            gpu_type="H100-SXM",
            gpus=1,
            fixed_step_seconds=0.0005196093,
            moe_layers=48,
            moe_layer_seconds=(
                (1, 0.000072),
                (8, 0.00024),
                (32, 0.00064),
                (128, 0.00077),
                (512, 0.00095),
            ),
            kv_read_seconds_per_token=3.6680597e-08,
            matmul_flops_per_token=4630511616.0,
            attention_flops_per_token_pair=393216.0,
            peak_flops=_H100_PEAK_FP16,
            kv_cache_tokens=180032,
            default_max_num_seqs=1024,
            default_max_num_batched_tokens=8192,
        ),
        GpuProfile(
            name="mistral-7b/1xL40S",
            model="Mistral-7B",
            params_billions=7,
            gpu_type="L40S",
            gpus=1,
            fixed_step_seconds=0.0206700563,
            kv_read_seconds_per_token=1.8962963e-07,
            matmul_flops_per_token=13958643712.0,
            attention_flops_per_token_pair=524288.0,
            peak_flops=_L40S_PEAK_FP16,
            kv_cache_tokens=245392,
            default_max_num_seqs=256,
            default_max_num_batched_tokens=2048,
        ),
    )
}


def get_profile(name: str) -> GpuProfile:
    """The profile called ``name``; a clear error lists the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"unknown GPU profile {name!r}; choose one of: {known}") from None


_SIZE = re.compile(r"(\d+(?:\.\d+)?)b(?![a-z])")


def profile_for_model(model: str, gpus: int | None = None) -> GpuProfile:
    """The profile nearest in size to ``model`` (e.g. ``Qwen/Qwen2.5-72B-Instruct``).

    The size is the largest ``<N>B`` in the name (so ``30B-A3B`` reads as 30B); among
    equally near profiles one with ``gpus`` GPUs wins.
    """
    sizes = [float(match) for match in _SIZE.findall(model.lower())]
    if not sizes:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(
            f"cannot tell the size of model {model!r} from its name (no '<N>B'); "
            f"name a GPU profile instead: {known}"
        )
    size = max(sizes)

    def distance(profile: GpuProfile) -> tuple[float, bool]:
        return abs(math.log(size / profile.params_billions)), profile.gpus != gpus

    return min(PROFILES.values(), key=distance)
