"""What the fleet looks like right now: per-variant metrics with their sample time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from modelfleet.api.common import KubeModel, Time
from modelfleet.api.load import InputError, InvalidInput, validation_errors
from modelfleet.api.yaml_input import load_one, read_bounded
from modelfleet.observe.usage import Usage, UsageKey, UsageTable


@dataclass(frozen=True, slots=True)
class RateSample:
    """The variant's request rate (finished per second, over a minute) at one instant."""

    at: datetime
    rate: float


@dataclass(frozen=True, slots=True)
class VariantObservation:
    """One variant's live state; any field may be unknown (None)."""

    ready_replicas: int | None = None
    running: float | None = None  # vllm:num_requests_running summed over replicas
    waiting: float | None = None  # vllm:num_requests_waiting summed over replicas
    qps: float | None = None  # requests finished per second over the last minute
    p99_latency_seconds: float | None = None  # end to end, over the last minute
    error_rate: float | None = None
    sampled_at: datetime | None = None
    # Why the samples cannot be trusted (non-finite, negative, implausible), if they cannot.
    problem: str | None = None
    p99_ttft_seconds: float | None = None  # time to first token, over the last minute
    p99_queue_seconds: float | None = None  # time waiting for a batch slot, last minute
    # The request rate in the forecast's look-back windows (a day, a week ago), oldest first.
    demand_history: tuple[RateSample, ...] = ()


def variant_key(namespace: str, pool: str, variant: str) -> str:
    return f"{namespace}/{pool}/{variant}"


Observations = Mapping[str, VariantObservation]  # keyed by variant_key()


class _RateInput(KubeModel):
    at: Time
    rate: float = Field(ge=0)


class _ObservationInput(KubeModel):
    ready_replicas: int | None = Field(default=None, ge=0)
    running: float | None = Field(default=None, ge=0)
    waiting: float | None = Field(default=None, ge=0)
    qps: float | None = Field(default=None, ge=0)
    p99_latency_seconds: float | None = Field(default=None, ge=0)
    error_rate: float | None = Field(default=None, ge=0, le=1)
    sampled_at: Time | None = None
    p99_ttft_seconds: float | None = Field(default=None, ge=0)
    p99_queue_seconds: float | None = Field(default=None, ge=0)
    demand_history: list[_RateInput] = Field(default_factory=list)


class _UsageRow(KubeModel):
    tenant: str = Field(min_length=1)
    key_id: str = ""
    variant: str = Field(min_length=1)
    requests: float = Field(default=0, ge=0)
    prompt_tokens: float = Field(default=0, ge=0)
    completion_tokens: float = Field(default=0, ge=0)


class _MetricsFile(KubeModel):
    variants: dict[str, _ObservationInput] = Field(default_factory=dict)
    # "<ns>/<pool>": what the tenants used since the pool's previous plan (the ledger).
    usage: dict[str, list[_UsageRow]] = Field(default_factory=dict)
    # "<ns>/<policy>": what its tenants used since each budget period began.
    budget_usage: dict[str, dict[Literal["day", "month"], list[_UsageRow]]] = Field(
        default_factory=dict
    )


@dataclass(frozen=True, slots=True)
class MetricsInput:
    """A `--metrics` file: observations, and what the tenants used."""

    observations: dict[str, VariantObservation] = field(default_factory=dict)
    usage: dict[tuple[str, str], UsageTable] = field(default_factory=dict)  # by pool
    budget_usage: dict[tuple[str, str], dict[str, UsageTable]] = field(default_factory=dict)


def _table(rows: list[_UsageRow]) -> UsageTable:
    table: dict[UsageKey, Usage] = {}
    for row in rows:
        key = UsageKey(row.tenant, row.key_id, row.variant)
        used = Usage(row.requests, row.prompt_tokens, row.completion_tokens)
        table[key] = table.get(key, Usage()) + used
    return table


def _pair(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    return namespace, name


def load_observations(path: str | Path, default_time: datetime) -> dict[str, VariantObservation]:
    """Read the observations of a `--metrics` file: {variants: {"<ns>/<pool>/<variant>": ...}}."""
    return load_metrics(path, default_time).observations


def load_metrics(path: str | Path, default_time: datetime) -> MetricsInput:
    """Read a `--metrics` file: {variants: {"<ns>/<pool>/<variant>": {...}}, usage:
    {"<ns>/<pool>": [rows]}, budgetUsage: {"<ns>/<policy>": {day|month: [rows]}}}, a row
    being {tenant, keyId, variant, requests, promptTokens, completionTokens}; a variant's
    fields are VariantObservation's in camelCase, `demandHistory` a list of {at, rate}."""
    source = str(path)
    data = load_one(read_bounded(Path(path)), source) or {}
    raw_variants = data.get("variants") if isinstance(data, dict) else None
    errors = [
        InputError(
            source, "metrics", f"variants.{key}", "key must be '<namespace>/<pool>/<variant>'"
        )
        for key in (raw_variants if isinstance(raw_variants, dict) else {})
        if str(key).count("/") != 2
    ]
    for section, shape in (
        ("usage", "<namespace>/<pool>"),
        ("budgetUsage", "<namespace>/<policy>"),
    ):
        raw = data.get(section) if isinstance(data, dict) else None
        errors += [
            InputError(source, "metrics", f"{section}.{key}", f"key must be '{shape}'")
            for key in (raw if isinstance(raw, dict) else {})
            if str(key).count("/") != 1
        ]
    try:
        parsed = _MetricsFile.model_validate(data)
    except ValidationError as err:
        raise InvalidInput(errors + validation_errors(err, source, "metrics")) from None
    for key, entry in parsed.variants.items():
        times = [("sampledAt", entry.sampled_at)] + [
            (f"demandHistory[{i}].at", sample.at) for i, sample in enumerate(entry.demand_history)
        ]
        errors.extend(
            InputError(
                source,
                "metrics",
                f"variants.{key}.{where}",
                "has no UTC offset: write e.g. 2026-11-27T10:00:00+08:00",
            )
            for where, value in times
            if value is not None and value.tzinfo is None
        )
    if errors:
        raise InvalidInput(errors)
    observations = {
        key: VariantObservation(
            ready_replicas=entry.ready_replicas,
            running=entry.running,
            waiting=entry.waiting,
            qps=entry.qps,
            p99_latency_seconds=entry.p99_latency_seconds,
            error_rate=entry.error_rate,
            sampled_at=entry.sampled_at or default_time,
            p99_ttft_seconds=entry.p99_ttft_seconds,
            p99_queue_seconds=entry.p99_queue_seconds,
            demand_history=tuple(
                RateSample(sample.at, sample.rate)
                for sample in sorted(entry.demand_history, key=lambda sample: sample.at)
            ),
        )
        for key, entry in parsed.variants.items()
    }
    return MetricsInput(
        observations,
        {_pair(key): _table(rows) for key, rows in parsed.usage.items()},
        {
            _pair(key): {period: _table(rows) for period, rows in periods.items()}
            for key, periods in parsed.budget_usage.items()
        },
    )
