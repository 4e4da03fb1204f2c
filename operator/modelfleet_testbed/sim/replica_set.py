"""The replicas of one variant during a replay: starting, ready, draining, gone.

Each replica is a `BatchEngine` (the calibrated GPU speed model of `sim.gpu`) configured
from the variant's vLLM arguments, advanced only when something needs its state.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, fields
from datetime import datetime

from modelfleet.api.modelpool import Variant
from modelfleet.observe.observation import RateSample
from modelfleet_testbed.sim.batching import BatchEngine
from modelfleet_testbed.sim.gpu import GpuProfile
from modelfleet_testbed.sim.latency_window import LatencyWindow
from modelfleet_testbed.sim.replica_metrics import LATENCY_BUCKETS, TTFT_BUCKETS

STARTING, READY, DRAINING, GONE = "starting", "ready", "draining", "gone"


@dataclass(frozen=True)
class MemoizedProfile(GpuProfile):
    """A GpuProfile that remembers its MoE layer time per token count: a replay asks for
    the same few batch sizes millions of times, and the interpolation is the costliest part
    of a step's time."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_moe_memo", {})

    def _moe_seconds(self, tokens: int) -> float:
        memo = self._moe_memo  # type: ignore[attr-defined]
        seconds = memo.get(tokens)
        if seconds is None:
            seconds = memo[tokens] = super()._moe_seconds(tokens)
        return seconds


def memoized(profile: GpuProfile) -> GpuProfile:
    if isinstance(profile, MemoizedProfile):
        return profile
    return MemoizedProfile(**{f.name: getattr(profile, f.name) for f in fields(profile)})


@dataclass(frozen=True)
class EngineConfig:
    """How a variant's replicas batch: its GPU profile and the vLLM limits in its args."""

    profile: GpuProfile
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int | None

    @property
    def token_limit(self) -> int:
        """Prompt plus output tokens above which vLLM refuses a request (HTTP 400)."""
        kv = self.profile.kv_cache_tokens
        return kv if self.max_model_len is None else min(kv, self.max_model_len)


def _arg(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def engine_config(variant: Variant, profile: GpuProfile) -> EngineConfig:
    """Honour `--max-num-seqs`, `--max-num-batched-tokens` and `--max-model-len` in the
    variant's args; vLLM's defaults for the GPU otherwise. Raises ValueError naming the arg."""

    def number(name: str) -> int | None:
        text = _arg(variant.args, name)
        if text is None:
            return None
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"args {name} {text!r} is not a whole number") from None
        if value < 1:
            raise ValueError(f"args {name} must be >= 1 (got {value})")
        return value

    seqs = number("--max-num-seqs") or profile.default_max_num_seqs
    batched = number("--max-num-batched-tokens") or max(
        profile.default_max_num_batched_tokens, seqs
    )
    if batched < seqs:
        raise ValueError(
            f"args --max-num-batched-tokens ({batched}) must be >= --max-num-seqs ({seqs})"
        )
    return EngineConfig(memoized(profile), seqs, batched, number("--max-model-len"))


class SimReplica:
    __slots__ = ("created", "drain_at", "engine", "fleet", "gone_at", "ident", "inflight",
                 "ready_at", "state", "version")  # fmt: skip

    def __init__(
        self, ident: int, fleet: int, engine: BatchEngine, created: float, ready_at: float
    ):
        self.ident = ident
        self.fleet = fleet  # index of its variant in the pool
        self.engine = engine
        self.created = created
        self.ready_at = ready_at
        self.drain_at: float | None = None
        self.gone_at: float | None = None
        self.state = STARTING
        self.inflight: set[int] = set()
        self.version = 0  # bumped to void a scheduled wake-up


class VariantReplicas:
    def __init__(self, index: int, variant: Variant, config: EngineConfig):
        self.index = index
        self.variant = variant
        self.config = config
        self.token_limit = config.token_limit  # read for every request
        self.starting: list[SimReplica] = []
        self.routable: list[SimReplica] = []  # ready and not draining: the Service endpoints
        self.busy: dict[int, SimReplica] = {}  # may hold requests: advance these to read them
        self.replicas: list[SimReplica] = []  # every replica ever created, for accounting
        self.queue: deque[int] = deque()  # requests held at the gateway (gateway-queue only)
        # Requests finished since the last scrape: (second, TTFT, e2e and queue time
        # buckets); a scrape moves them into the window of what the replicas' vLLM counters
        # and histograms hold.
        self.finished: list[tuple[int, int, int, int]] = []
        self.window = LatencyWindow(len(TTFT_BUCKETS) + 1, len(LATENCY_BUCKETS) + 1)
        self.rates_utc: list[RateSample] = []  # the request rate of every cycle, for forecasts
        # Their times on the clock of the replay's zone (the history is found on it).
        self.rate_times: list[datetime] = []

    @property
    def current(self) -> int:
        return len(self.starting) + len(self.routable)

    def create(self, ident: int, now: float, ready_at: float) -> SimReplica:
        config = self.config
        engine = BatchEngine(
            config.profile,
            config.max_num_seqs,
            config.max_num_batched_tokens,
            start=now,
            first_tokens=False,  # the replay reads a request's first token off its finish
        )
        replica = SimReplica(ident, self.index, engine, now, ready_at)
        self.replicas.append(replica)
        return replica

    def victims(self, count: int) -> list[SimReplica]:
        """Which replicas a scale-down removes, as the ReplicaSet controller picks them:
        not-ready ones first, then the most recently ready."""
        chosen = list(reversed(self.starting))[:count]
        if len(chosen) < count:
            newest_ready = sorted(self.routable, key=lambda r: (r.ready_at, r.ident), reverse=True)
            chosen += newest_ready[: count - len(chosen)]
        return chosen
