"""`modelfleet simulate` without the command line: load, replay the policy and the
baselines on the same requests, and build the report."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from modelfleet.api.cron import zone
from modelfleet.api.load import InputError, InvalidInput, Resources, load_resources
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet_testbed.sim import arrivals as make_arrivals
from modelfleet_testbed.sim.arrivals import Arrivals
from modelfleet_testbed.sim.baselines import POLICY, baseline_pool
from modelfleet_testbed.sim.daily import Hour, hourly
from modelfleet_testbed.sim.diurnal import PROFILES, Envelope, envelope, parse_profile
from modelfleet_testbed.sim.gpu import GpuProfile, get_profile, profile_for_model
from modelfleet_testbed.sim.outcome import BALANCES, ReplayResult, ReplaySettings
from modelfleet_testbed.sim.replay import replay
from modelfleet_testbed.sim.replica_set import EngineConfig, engine_config
from modelfleet_testbed.sim.report import build_report
from modelfleet_testbed.sim.traces import Trace, read_trace
from modelfleet_testbed.sim.workload import (
    Mix,
    Workload,
    build_workload,
    check_routes,
    default_mix,
    parse_shares,
)

# A Monday, so a replay of a week starts with the working days; midnight in the pool's zone.
DEFAULT_START_DATE = datetime(2026, 1, 5)
SYNTHETIC_RATE = 2.0
SYNTHETIC_DAYS = 1.0


@dataclass(frozen=True)
class SimulationOptions:
    files: Sequence[str | Path]
    trace: str | Path | None = None
    trace_format: str | None = None  # azure | mooncake | csv | synthetic; None: from the file
    days: float | None = None
    diurnal: str | None = None
    rate: float | None = None
    start: datetime | None = None
    seed: int = 0
    mix: str | None = None
    tenants: str | None = None
    priorities: str | None = None
    compare: Sequence[str] = ()
    pool: str | None = None  # namespace/name when the files hold several pools
    scrape_lag: float = 15.0
    termination_grace: float = 30.0
    balance: str = "random"
    gpu_profiles: Mapping[str, str | GpuProfile] = field(default_factory=dict)
    log_plans: bool = False
    keep_replica_of_request: bool = False


@dataclass
class Simulation:
    report: dict[str, Any]
    workload: Workload
    results: dict[str, ReplayResult]  # by run name: "policy" and each baseline
    pools: dict[str, ModelPool]
    start: datetime
    hours: dict[str, list[Hour]] = field(default_factory=dict)  # by run, local clock hours


def _error(flag: str, message: str, path: str = "") -> InvalidInput:
    return InvalidInput([InputError(flag, "", path, message)])


def select(resources: Resources, wanted: str | None) -> tuple[ModelPool, RoutingPolicy]:
    pools = resources.pools
    if wanted is not None:
        namespace, _, name = wanted.rpartition("/")
        pool = resources.pool(namespace or "default", name)
        if pool is None:
            known = ", ".join(f"{p.namespace}/{p.name}" for p in pools) or "none"
            raise _error("--pool", f"no ModelPool {wanted!r} in the files (found: {known})")
    elif len(pools) == 1:
        pool = pools[0]
    else:
        known = ", ".join(f"{p.namespace}/{p.name}" for p in pools)
        raise _error(
            "-f",
            f"found {len(pools)} ModelPools ({known or 'none'}): "
            + ("pass --pool NAMESPACE/NAME" if pools else "give a file with one"),
        )
    policies = resources.policies_for(pool)
    if len(policies) != 1:
        raise InvalidInput(
            [
                InputError(
                    "-f",
                    pool.ref,
                    "",
                    f"simulate needs exactly one RoutingPolicy for this pool, found "
                    f"{len(policies)}: give the files with the one to replay",
                )
            ]
        )
    return pool, policies[0]


def engine_configs(
    pool: ModelPool, chosen: Mapping[str, str | GpuProfile]
) -> dict[str, EngineConfig]:
    errors = [
        InputError("--gpu-profile", pool.ref, name, "the pool has no such variant")
        for name in chosen
        if pool.spec.variant(name) is None
    ]
    configs = {}
    for index, variant in enumerate(pool.spec.variants):
        given = chosen.get(variant.name)
        try:
            if isinstance(given, GpuProfile):
                profile = given
            elif given is not None:
                profile = get_profile(given)
            else:
                profile = profile_for_model(variant.model, variant.gpus_per_replica)
        except ValueError as err:
            errors.append(
                InputError(
                    "--gpu-profile" if given else "",
                    pool.ref,
                    f"spec.variants[{index}].model",
                    f"{err} (pass --gpu-profile {variant.name}=PROFILE)",
                )
            )
            continue
        try:
            configs[variant.name] = engine_config(variant, profile)
        except ValueError as err:
            errors.append(InputError("", pool.ref, f"spec.variants[{index}].args", str(err)))
    if errors:
        raise InvalidInput(errors)
    return configs


def replay_start(options: SimulationOptions, trace: Trace | None, pool: ModelPool) -> datetime:
    tz = zone(pool.spec.timezone)
    if options.start is not None:
        return options.start
    if trace is not None and trace.origin is not None:
        if options.days is None:
            return trace.origin
        local_day = trace.origin.astimezone(tz).date()
        return datetime.combine(local_day, time(0), tzinfo=tz)
    return DEFAULT_START_DATE.replace(tzinfo=tz)


def _check_numbers(options: SimulationOptions) -> None:
    errors = []
    for flag, value, low in (
        ("--days", options.days, 0.0),
        ("--rate", options.rate, 0.0),
    ):
        if value is not None and not value > low:
            errors.append(InputError(flag, "", "", f"must be > {low:g} (got {value:g})"))
    for flag, value in (
        ("--scrape-lag", options.scrape_lag),
        ("--termination-grace", options.termination_grace),
    ):
        if value < 0:
            errors.append(InputError(flag, "", "", f"must be >= 0 (got {value:g})"))
    if options.balance not in BALANCES:
        errors.append(InputError("--balance", "", "", f"use one of {', '.join(BALANCES)}"))
    if options.trace_format != "synthetic" and options.trace is None:
        errors.append(
            InputError("--trace", "", "", "give a trace file, or --trace-format synthetic")
        )
    if errors:
        raise InvalidInput(errors)


def _mix(options: SimulationOptions, policy: RoutingPolicy, resources: Resources, pool) -> Mix:
    defaults = default_mix(policy, resources.reservations_for(pool))
    mix = Mix(
        parse_shares(options.mix, "--mix") if options.mix else defaults.routes,
        parse_shares(options.tenants, "--tenants") if options.tenants else defaults.tenants,
        parse_shares(options.priorities, "--priorities")
        if options.priorities
        else defaults.priorities,
    )
    check_routes(mix.routes, policy)
    return mix


def _requests(
    options: SimulationOptions, trace: Trace | None, start: datetime, tz: ZoneInfo
) -> tuple[Arrivals, Envelope, float]:
    """The replay's arrivals, its day curve and its length in seconds."""
    days = options.days
    if trace is None and days is None:
        days = SYNTHETIC_DAYS
    duration = days * 86400 if days is not None else trace.period  # type: ignore[union-attr]
    try:
        profile = parse_profile(options.diurnal) if options.diurnal else PROFILES["flat"]
        shape = envelope(profile, start, duration, tz)
    except ValueError as err:
        raise _error("--diurnal", str(err)) from None
    if trace is None:
        rate = options.rate or SYNTHETIC_RATE
        return make_arrivals.synthetic(duration, rate, shape, options.seed), shape, duration
    return make_arrivals.from_trace(trace, duration, options.rate, shape), shape, duration


def simulate(
    options: SimulationOptions,
    progress: Callable[[str, float, float], None] | None = None,
) -> Simulation:
    """Replay the policy and each baseline; raises InvalidInput for bad input."""
    _check_numbers(options)
    resources = load_resources(options.files)
    pool, policy = select(resources, options.pool)
    reservations = resources.reservations_for(pool)
    configs = engine_configs(pool, options.gpu_profiles)
    mix = _mix(options, policy, resources, pool)
    synthetic = options.trace_format == "synthetic" or options.trace is None
    trace = None if synthetic else read_trace(options.trace, options.trace_format)
    start = replay_start(options, trace, pool)
    requests, shape, duration = _requests(options, trace, start, zone(pool.spec.timezone))
    workload = build_workload(requests, policy, mix, options.seed)
    settings = ReplaySettings(
        start=start,
        duration=duration,
        scrape_lag=options.scrape_lag,
        termination_grace=options.termination_grace,
        balance=options.balance,
        seed=options.seed,
        log_plans=options.log_plans,
        keep_replica_of_request=options.keep_replica_of_request,
    )
    pools = {POLICY: pool} | {name: baseline_pool(pool, name) for name in options.compare}
    results = {}
    for name, run_pool in pools.items():

        def tick(t: float, name: str = name) -> None:
            if progress is not None:
                progress(name, t, duration)

        results[name] = replay(run_pool, reservations, policy, workload, configs, settings, tick)
    hours = {
        name: hourly(result, workload, pools[name], policy, start)
        for name, result in results.items()
    }
    report = build_report(
        options=options,
        pool=pool,
        policy=policy,
        reservations=reservations,
        pools=pools,
        results=results,
        workload=workload,
        configs=configs,
        trace=trace,
        shape=shape,
        settings=settings,
        hours=hours,
    )
    return Simulation(report, workload, results, pools, start, hours)
