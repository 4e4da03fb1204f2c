"""The requests of one replay: a trace repeated and rescaled to the replay's length and
rate, or a synthetic Poisson stream, then shaped by a day curve.

Both keep every request's token lengths and give arrival times in seconds after the
replay's start, ascending.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass
from pathlib import Path

from modelfleet_testbed.sim.diurnal import Envelope
from modelfleet_testbed.sim.traces import Trace

# Log-normal fits (mean and deviation of ln tokens) of the Azure LLM 2023 conversation
# trace in data/traces/: the synthetic generator draws lengths like a real chat service's.
SYNTHETIC_PROMPT_LOG = (6.633, 0.985)
SYNTHETIC_OUTPUT_LOG = (5.019, 0.859)
SYNTHETIC_MAX_PROMPT = 16384
SYNTHETIC_MAX_OUTPUT = 2048


@dataclass(frozen=True)
class Arrivals:
    times: array  # 'd': seconds after the replay start, ascending
    prompt_tokens: array  # 'l'
    output_tokens: array  # 'l'
    task_types: list[str | None] | None
    tenants: list[str | None] | None
    priorities: list[str | None] | None
    description: str

    def __len__(self) -> int:
        return len(self.times)


def _shape(base: list[float], shape: Envelope | None) -> array:
    if shape is None or shape.profile.name == "flat":
        return array("d", base)
    return array("d", shape.warp(base))


def from_trace(
    trace: Trace, duration: float, rate: float | None, shape: Envelope | None
) -> Arrivals:
    """Repeat `trace` end to end and rescale its clock so that `duration` seconds hold
    rate x duration requests (rate defaults to the trace's own mean rate)."""
    native = trace.mean_rate
    rate = rate or native
    stretch = native / rate  # replay seconds per trace second, before the day curve
    horizon = duration / stretch  # in trace seconds
    base: list[float] = []
    index: list[int] = []
    period = trace.period
    passes = 0
    while passes * period < horizon:
        offset = passes * period
        for j, at in enumerate(trace.arrivals):
            u = offset + at
            if u >= horizon:
                break
            base.append(u * stretch)
            index.append(j)
        passes += 1

    def pick(values):
        return None if values is None else [values[j] for j in index]

    description = (
        f"{trace.format} trace {Path(trace.source).name}: {len(trace)} requests over "
        f"{trace.period:.0f} s ({native:.3g}/s), replayed end to end ({horizon / period:.3g} "
        f"passes over {duration:.0f} s), its clock scaled so that its mean rate is "
        f"{rate:.3g} requests/s"
    )
    return Arrivals(
        times=_shape(base, shape),
        prompt_tokens=array("l", (trace.prompt_tokens[j] for j in index)),
        output_tokens=array("l", (trace.output_tokens[j] for j in index)),
        task_types=pick(trace.task_types),
        tenants=pick(trace.tenants),
        priorities=pick(trace.priorities),
        description=description,
    )


def synthetic(duration: float, rate: float, shape: Envelope | None, seed: int) -> Arrivals:
    """Poisson arrivals at `rate` (before the day curve) with log-normal token lengths."""
    rng = random.Random(f"synthetic:{seed}")
    base: list[float] = []
    prompt = array("l")
    output = array("l")
    at = rng.expovariate(rate)
    while at < duration:
        base.append(at)
        prompt.append(
            min(SYNTHETIC_MAX_PROMPT, max(1, round(rng.lognormvariate(*SYNTHETIC_PROMPT_LOG))))
        )
        output.append(
            min(SYNTHETIC_MAX_OUTPUT, max(1, round(rng.lognormvariate(*SYNTHETIC_OUTPUT_LOG))))
        )
        at += rng.expovariate(rate)
    description = (
        f"synthetic: Poisson arrivals at {rate:.3g} requests/s on average over {duration:.0f} s "
        f"(seed {seed}); prompt and output tokens log-normal, fitted to the Azure LLM 2023 "
        "conversation trace"
    )
    return Arrivals(_shape(base, shape), prompt, output, None, None, None, description)
