"""Operator cycle cost: the pure work of one refresh for a large fleet, without I/O.

1,000 ModelPools x 4 variants and one RoutingPolicy per pool (bench/operator_fleet.py grows
them from manifests/samples/). Each cycle does what the operator does each refresh,
through the same function and the same memory the controller keeps (`desired()` per pool,
the parse cache and the render cache of `PoolController`):

    parse    ModelPool/RoutingPolicy/Reservation bodies -> models, each parsed once per
             change (spec per generation, status per resourceVersion; the status the
             operator wrote itself is remembered, not parsed again)
    desired  `desired(FleetInputs(...), render_cache)` per pool: plan, route, Deployments,
             Services, the gateway's Envoy files (3 API keys) with their ConfigMap and
             Secret, every status and Event, the ledger's cost lines and the budgets, on
             the usage the gateways counted (read every refresh, as the controller does)
    write    each status (pool, policies, Reservations) that differs from the one its
             resource was read with, to its wire form, stored as the API server would (a
             new resourceVersion), remembered by the parse cache
    diff     each manifest's digest and gateway hash against the previous cycle's (what
             changed; the operator applies every manifest, so this is the report's, and
             what the benchmark keeps of a cycle is those digests, not the manifests).
             Reported, but not in a cycle's total: it is the benchmark's work, not the
             operator's

Pools are computed one after the other, as the operator's per-pool daemons do: each pool
is parsed, refreshed and written, and its parsed model and result let go before the next.
The peak RSS is the operator's, not a fleet of results, and the cycle collector sees what
it would see in the operator.

Cycles measured: the first (nothing cached); three steady ones 30 s apart, each after 10%
of the observations moved, reported by their median; and the worst ones (every gateway's
routes change: a variant every policy routes to loses its ready replicas in every pool,
then gets them back), reported by the slower. The cycle collector: the start-up's garbage
is collected once after the first cycle (a running operator's first collection does that
once); after the steady cycles a young collection is timed alone (what one costs in steady
state, about once in 25 refreshes), and the worst cycle is also reported with one charged
to it (`with_young_collection_cpu_seconds`, its own collector time replaced by that one),
so that its number does not depend on where the collector happens to fall. Then,
unmeasured, one more cycle runs twice from the same stored state: the caches must change
the speed, never the output. Each cycle says how much of its CPU the cycle collector took;
the `diff` phase, the same work in every cycle, tells how fast the host ran. Memory: the process's peak RSS, and how many entries the
operator's caches hold. Envoy validation of changed gateways is not included: it runs the
envoy binary, only when a hash changes.

    python -m bench.operator     # writes bench/results/operator.json, prints a table

(Run it with -m: as a script, this file would hide Python's own `operator` module.)
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec

from modelfleet.controller.runtime import GC_THRESHOLDS, tune_garbage_collection
from modelfleet.observe.observation import VariantObservation
from modelfleet.render.desired import Desired, StatusUpdate, desired
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.inputs import FleetInputs, ParseCache
from modelfleet.render.render_cache import RenderCache

from .operator_fleet import (
    REFRESH_SECONDS,
    SyntheticFleet,
    UsageRead,
    build_fleet,
    next_observations,
    usage_read,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "operator.json"
POOLS = 1_000
SEED = 20261127
CHANGED_SHARE = 0.10
# Steady cycles measured one after the other (each moves the observations again); the
# median is reported: one of them may be the cycle the collector's young generation
# fills in, which the operator meets once in many cycles.
STEADY_CYCLES = 3
PHASES = ("parse", "desired", "write", "diff")
OPERATOR_PHASES = ("parse", "desired", "write")
# Every sample policy routes chat-summary to it: unready everywhere, every gateway changes.
WORST_VARIANT = "qwen25-7b"
SETTINGS = GatewaySettings()
MEASURE_TIMEOUT_SECONDS = 1800
# Fresh processes measured one after the other: these shared hosts swing tens of percent
# between minutes, and one run's number is as much the host's as the operator's.
RUNS = 3
P = ParamSpec("P")


@dataclass
class CycleOutput:
    """What one cycle leaves for the next: a digest of each manifest, each gateway's hash.
    (The operator itself applies every manifest each cycle; the digests only let the
    benchmark report what changed, without holding a fleet's manifests.)"""

    manifests: dict[tuple[str, str, str], str] = field(default_factory=dict)
    gateway_hashes: dict[str, str] = field(default_factory=dict)


@dataclass
class OperatorMemory:
    """What `PoolController` keeps between cycles."""

    parsed: ParseCache = field(default_factory=ParseCache)
    renders: RenderCache = field(default_factory=RenderCache)


@dataclass
class CollectorTime:
    """The cycle collector's runs while the clock ran: part of the phases' CPU, reported
    apart so that a cycle that pays for a collection says so."""

    collections: int = 0
    cpu_seconds: float = 0.0
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.collections += 1
            self.cpu_seconds += time.process_time() - self._started

    @contextmanager
    def recording(self) -> Iterator[CollectorTime]:
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)

    def report(self) -> dict[str, Any]:
        return {"collections": self.collections, "cpu_seconds": round(self.cpu_seconds, 4)}


@dataclass
class PhaseClock:
    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall

    def report(self) -> dict[str, Any]:
        def seconds(names: Iterable[str]) -> dict[str, float]:
            return {
                "cpu_seconds": round(sum(self.cpu[n] for n in names), 4),
                "wall_seconds": round(sum(self.wall[n] for n in names), 4),
            }

        return {
            "phases": {name: seconds([name]) for name in self.wall},
            # The operator's work; the diff is the benchmark's own bookkeeping.
            "total": seconds([n for n in self.wall if n in OPERATOR_PHASES]),
        }


def _parsed(memory: OperatorMemory, body: dict[str, Any]) -> Any:
    model, rejected = memory.parsed.parse(body)
    if rejected is not None:
        raise RuntimeError(f"synthetic {rejected.ref.kind} is invalid: {rejected.errors}")
    return model


def _ref(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _outcome(previous: Any, current: Any) -> str:
    return "new" if previous is None else "unchanged" if previous == current else "changed"


def with_collector_time(run: Callable[P, tuple[Any, dict[str, Any], Any]]) -> Callable[P, Any]:
    """`run`, its times with the cycle collector's runs added (`gc`)."""

    @functools.wraps(run)
    def timed(*args: P.args, **kwargs: P.kwargs) -> tuple[Any, dict[str, Any], Any]:
        with CollectorTime().recording() as collector:
            output, times, counts = run(*args, **kwargs)
        return output, {**times, "gc": collector.report()}, counts

    return timed


@with_collector_time
def run_cycle(
    fleet: SyntheticFleet,
    memory: OperatorMemory,
    observations: dict[str, Any],
    now: datetime,
    before: CycleOutput,
    bookkeeping: bool = True,
    usage: dict[str, UsageRead] | None = None,
) -> tuple[CycleOutput, dict[str, Any], dict[str, Any]]:
    """One refresh of the whole fleet, phase by phase, on `fleet.pools` as stored (each
    body's status and resourceVersion are what the previous cycle wrote). Returns this
    cycle's output, the phase times and what it counted (without `bookkeeping`: no diff
    and no counts, the operator's work alone). `usage`: what the gateways counted, as
    usage_reads(fleet, observations) gives it, when the caller has it already (else each
    pool's is made when it is refreshed, and let go with it)."""
    stored = _stored_bodies(fleet)  # the API server's index, not the operator's work
    clock = PhaseClock()
    output = CycleOutput()
    with clock.phase("parse"):
        policies: dict[str, list[Any]] = {}
        for body in fleet.policies:
            policy = _parsed(memory, body)
            policies.setdefault(_ref(policy.namespace, policy.spec.pool), []).append(policy)
        held: dict[str, list[Any]] = {}
        for body in fleet.reservations:
            reservation = _parsed(memory, body)
            held.setdefault(_ref(reservation.namespace, reservation.spec.pool), []).append(
                reservation
            )
    # Pool by pool, as the operator's daemons run: each pool is parsed, refreshed and
    # applied, and its parsed model (with the status it had) and result are let go before
    # the next pool is read.
    tally = Tally()
    for body in fleet.pools:
        with clock.phase("parse"):
            pool = _parsed(memory, body)
            as_written = memory.parsed.written(body)
            written_statuses = {(pool.namespace, pool.name): as_written} if as_written else {}
        ref = _ref(pool.namespace, pool.name)
        own, mine = policies.get(ref, []), held.get(ref, [])
        # Read from Prometheus: not the operator's work either.
        used = usage[ref] if usage is not None else usage_read(body, observations)
        with clock.phase("desired"):
            result = desired(
                FleetInputs(
                    now=now,
                    pools=[pool],
                    written_statuses=written_statuses,
                    reservations=mine,
                    policies=own,
                    observations=observations,
                    api_keys={(p.namespace, p.name): fleet.api_keys for p in own},
                    service_addresses={(pool.namespace, pool.name): fleet.service_addresses[ref]},
                    usage={(pool.namespace, pool.name): used.since_last_refresh},
                    budget_usage={(p.namespace, p.name): used.by_period for p in own},
                    gateway=SETTINGS,
                ),
                memory.renders,
            )
        with clock.phase("write"):
            # The statuses the controller writes (the pool's, its policies' and
            # Reservations' that changed): the next refresh reads them back.
            written = result.statuses_to_write((pool, *own, *mine))
            for update in written:
                target = update.target
                _store(memory, stored[(target.kind, target.namespace, target.name)], update)
        if not bookkeeping:
            continue
        tally.numbers["statuses_written"] += len(written)
        with clock.phase("diff"):
            for manifest in result.workloads:
                key = (manifest["kind"], ref, manifest["metadata"]["name"])
                output.manifests[key] = digest = _digest(manifest)
                tally.diff[f"{key[0]}.{_outcome(before.manifests.get(key), digest)}"] += 1
            for (namespace, name), gateway in result.gateways.items():
                policy_ref = _ref(namespace, name)
                output.gateway_hashes[policy_ref] = gateway.config_hash
                outcome = _outcome(before.gateway_hashes.get(policy_ref), gateway.config_hash)
                tally.diff[f"Gateway.{outcome}"] += 1
                if outcome != "unchanged":
                    tally.to_publish += 2  # its Secret and its ConfigMap
        tally.add(ref, result)
    return output, clock.report(), tally.report()


def _same_cycle_twice(
    fleet: SyntheticFleet,
    memory: OperatorMemory,
    observations: dict[str, Any],
    now: datetime,
    before: CycleOutput,
) -> None:
    """One cycle run twice from the same stored state: warm caches must change the speed,
    never the output. (After the memory is measured: the stored state it keeps is a second
    copy of every status.)"""
    bodies = [*fleet.pools, *fleet.policies, *fleet.reservations]
    stored = [(body.get("status"), body["metadata"]["resourceVersion"]) for body in bodies]
    once, _, _ = run_cycle(fleet, memory, observations, now, before)
    for body, (status, version) in zip(bodies, stored, strict=True):
        body["metadata"]["resourceVersion"] = version
        if status is None:
            body.pop("status", None)
        else:
            body["status"] = status
    again, _, _ = run_cycle(fleet, memory, observations, now, before)
    if again.gateway_hashes != once.gateway_hashes or again.manifests != once.manifests:
        raise RuntimeError("the same cycle gave different results twice: the core is not pure")


def _stored_bodies(fleet: SyntheticFleet) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (body["kind"], body["metadata"]["namespace"], body["metadata"]["name"]): body
        for body in (*fleet.pools, *fleet.policies, *fleet.reservations)
    }


def _store(memory: OperatorMemory, body: dict[str, Any], update: StatusUpdate) -> None:
    """`update` written as a status merge patch, with a new resourceVersion."""
    meta = body["metadata"]
    written = update.wire()
    body["status"] = {**(body.get("status") or {}), **written} if update.partial else written
    meta["resourceVersion"] = str(int(meta.get("resourceVersion") or 0) + 1)
    if not update.partial:
        kind, namespace, name = update.target.kind, meta["namespace"], meta["name"]
        memory.parsed.wrote(kind, namespace, name, meta["resourceVersion"], update.content)


def _digest(manifest: dict[str, Any]) -> str:
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class Tally:
    """What a cycle counted, added up pool by pool."""

    diff: Counter[str] = field(default_factory=Counter)
    to_publish: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    numbers: Counter[str] = field(default_factory=Counter)

    def add(self, ref: str, result: Desired) -> None:
        plan = result.plans[tuple(ref.split("/"))]
        n = self.numbers
        n["pools"] += 1
        for variant in plan.variants:
            self.reasons[variant.reason] += 1
            n["variants"] += 1
            n["desired_replicas"] += variant.desired_replicas
            n["gpus_planned"] += variant.gpus
        n["overcommitted_pools"] += plan.condition("Overcommitted").status == "True"
        n["reservations_granted"] += sum(1 for grant in plan.reservations if grant.granted)
        n["scaled"] += sum(1 for e in result.events if e.reason == "Scaled")
        for workload in result.workloads:
            n[workload["kind"]] += 1
        n["gateways"] += len(result.gateways)
        n["gateway_routes"] += sum(len(table.routes) for table in result.tables.values())
        n["gateway_bytes"] += sum(
            len(text) for g in result.gateways.values() for text in g.files.values()
        )
        n["statuses"] += len(result.statuses)
        n["events"] += len(result.events)

    def report(self) -> dict[str, Any]:
        n = self.numbers

        def outcomes(kind: str) -> dict[str, int]:
            return {name: self.diff[f"{kind}.{name}"] for name in ("new", "changed", "unchanged")}

        return {
            "plan": {
                "pools": n["pools"],
                "variants": n["variants"],
                "by_reason": dict(sorted(self.reasons.items())),
                "scaled": n["scaled"],
                "desired_replicas": n["desired_replicas"],
                "gpus_planned": n["gpus_planned"],
                "overcommitted_pools": n["overcommitted_pools"],
                "reservations_granted": n["reservations_granted"],
            },
            "render": {
                "deployments": n["Deployment"],
                "services": n["Service"],
                "gateways": n["gateways"],
                "gateway_routes": n["gateway_routes"],
                "gateway_bytes": n["gateway_bytes"],
                "statuses": n["statuses"],
                "events": n["events"],
            },
            "diff": {
                "deployments": outcomes("Deployment"),
                "services": outcomes("Service"),
                "gateways": outcomes("Gateway"),
                "gateway_objects_to_apply": self.to_publish,
                # The others equal the status their resource was read with: not written.
                "statuses_written": n["statuses_written"],
            },
        }


def unready_everywhere(
    observations: dict[str, VariantObservation], variant: str
) -> dict[str, VariantObservation]:
    """Every pool's `variant` without a ready replica: every gateway's routes change."""
    return {
        key: replace(obs, ready_replicas=0) if key.endswith(f"/{variant}") else obs
        for key, obs in observations.items()
    }


def _max_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def stored_fleet(pools: int, seed: int) -> SyntheticFleet:
    """The benchmark's fleet as the API server holds it: each body at resourceVersion 1,
    each pool's body with its first status."""
    fleet = build_fleet(pools, seed)
    for body in [*fleet.pools, *fleet.policies, *fleet.reservations]:
        body["metadata"]["resourceVersion"] = "1"
    for body in fleet.pools:
        meta = body["metadata"]
        body["status"] = fleet.statuses[_ref(meta["namespace"], meta["name"])]
    # From here the bodies hold the statuses, as the API server's objects do: a second
    # reference would keep every pool's first status alive through all cycles.
    fleet.statuses.clear()
    return fleet


def measure(pools: int, seed: int) -> dict[str, Any]:
    """The measurement itself; run it in a fresh process (see run()) so that the memory
    numbers are this fleet's and nothing else's."""
    tune_garbage_collection()  # as `modelfleet run` does
    after_imports = _max_rss_mib()
    started = time.process_time()
    fleet = stored_fleet(pools, seed)
    build_cpu = time.process_time() - started
    after_inputs = _max_rss_mib()
    memory = OperatorMemory()
    first, first_times, first_counts = run_cycle(
        fleet, memory, fleet.observations, fleet.now, CycleOutput()
    )
    after_first = _max_rss_mib()
    # The start-up's one-off: a running operator's first collection walks everything the
    # start left young (the parse, the first render) once; a short run would put it in
    # whichever measured cycle fills the young generation first.
    gc.collect()
    at = fleet.now
    observations, before, steady_runs = fleet.observations, first, []
    for number in range(STEADY_CYCLES):
        at += timedelta(seconds=REFRESH_SECONDS)
        observations, moved = next_observations(observations, CHANGED_SHARE, seed + 1 + number, at)
        steady, times, counts = run_cycle(fleet, memory, observations, at, before)
        steady_runs.append((times, counts, moved))
        before = steady
    # A young collection in steady state, timed alone: it walks what the refreshes since the
    # last one keep (statuses, the planner's memory), about once in 25 refreshes. The worst
    # cycle is reported with one charged to it, whichever cycle the collector picks.
    young_objects = len(gc.get_objects(0))
    young_started = time.process_time()
    gc.collect(0)
    young = {
        "cpu_seconds": round(time.process_time() - young_started, 4),
        "objects": young_objects,
        "after_refreshes": STEADY_CYCLES,
    }
    # Both directions change every gateway's routes: the variant goes, then comes back.
    worst_runs = []
    for observed in (unready_everywhere(observations, WORST_VARIANT), observations):
        at += timedelta(seconds=REFRESH_SECONDS)
        before, times, counts = run_cycle(fleet, memory, observed, at, before)
        worst_runs.append((times, counts))
    steady_totals = [times["total"]["cpu_seconds"] for times, _, _ in steady_runs]
    times, counts, moved = sorted(steady_runs, key=lambda run: run[0]["total"]["cpu_seconds"])[
        len(steady_runs) // 2
    ]
    worst_totals = [times["total"]["cpu_seconds"] for times, _ in worst_runs]
    worst_times, worst_counts = max(worst_runs, key=lambda run: run[0]["total"]["cpu_seconds"])
    after_cycles = _max_rss_mib()
    at += timedelta(seconds=REFRESH_SECONDS)
    observations, _ = next_observations(observations, CHANGED_SHARE, seed + STEADY_CYCLES + 1, at)
    _same_cycle_twice(fleet, memory, observations, at, before)
    return {
        "scale": {
            "pools": pools,
            "variants": fleet.variants,
            "routing_policies": len(fleet.policies),
            "reservations": len(fleet.reservations),
            "api_keys": len(fleet.api_keys),
            "observed_variants": len(fleet.observations),
            "observations_moved": moved,
            "seed": seed,
        },
        "cycle": {
            **times,
            "cpu_ms_per_pool": round(times["total"]["cpu_seconds"] * 1e3 / pools, 3),
            "of_cycles_cpu_seconds": steady_totals,
        },
        "worst_cycle": {
            **worst_times,
            "cpu_ms_per_pool": round(worst_times["total"]["cpu_seconds"] * 1e3 / pools, 3),
            "of_cycles_cpu_seconds": worst_totals,
            "with_young_collection_cpu_seconds": round(
                max(
                    times["total"]["cpu_seconds"] - times["gc"]["cpu_seconds"]
                    for times, _ in worst_runs
                )
                + young["cpu_seconds"],
                4,
            ),
        },
        "young_collection": young,
        "first_cycle": first_times,
        "counts": counts,
        "worst_cycle_counts": worst_counts,
        "first_cycle_counts": first_counts,
        "memory": {
            "max_rss_after_imports_mib": after_imports,
            "max_rss_with_inputs_mib": after_inputs,
            "max_rss_after_first_cycle_mib": after_first,
            "max_rss_after_all_cycles_mib": after_cycles,
            "parse_cache_entries": len(memory.parsed),
            "gateway_render_cache_entries": len(memory.renders.gateways),
            "workload_render_cache_entries": len(memory.renders.workloads),
        },
        "fleet_build_cpu_seconds": round(build_cpu, 3),
        "gc_thresholds": list(GC_THRESHOLDS),
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine(load_before: float) -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        # Other work on the machine inflates wall time (less so CPU time); this says how busy.
        "load_average_1m_before": round(load_before, 2),
        "load_average_1m_after": round(os.getloadavg()[0], 2),
    }


def fresh_python_environment() -> dict[str, str]:
    """This environment, with the repository importable: for a benchmark's own process."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def _measured_in_a_fresh_python(pools: int, seed: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.operator", "--measure"]
    command += ["--pools", str(pools), "--seed", str(seed)]
    done = subprocess.run(
        command,
        cwd=REPO,
        env=fresh_python_environment(),
        capture_output=True,
        text=True,
        timeout=MEASURE_TIMEOUT_SECONDS,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the operator benchmark failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout)


def _run_summary(measured: dict[str, Any]) -> dict[str, float]:
    cycle, worst = measured["cycle"], measured["worst_cycle"]
    return {
        "steady_cpu_seconds": cycle["total"]["cpu_seconds"],
        "worst_cpu_seconds": worst["total"]["cpu_seconds"],
        "worst_with_young_collection_cpu_seconds": worst["with_young_collection_cpu_seconds"],
        "young_collection_cpu_seconds": measured["young_collection"]["cpu_seconds"],
        "steady_diff_cpu_seconds": cycle["phases"]["diff"]["cpu_seconds"],
        "max_rss_mib": measured["memory"]["max_rss_after_all_cycles_mib"],
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def run(
    pools: int = POOLS, seed: int = SEED, results: Path = RESULTS, runs: int = RUNS
) -> dict[str, Any]:
    """Measure `runs` times, each in a fresh Python; write `results` (the run with the
    median steady cycle in full, every run's numbers, their medians) and return it."""
    load_before = os.getloadavg()[0]
    wall = time.perf_counter()
    measurements = [_measured_in_a_fresh_python(pools, seed) for _ in range(runs)]
    summaries = [_run_summary(m) for m in measurements]
    by_steady = sorted(range(runs), key=lambda i: summaries[i]["steady_cpu_seconds"])
    measured = measurements[by_steady[runs // 2]]
    medians = {
        name: _median([summary[name] for summary in summaries])
        for name in summaries[0]
        if name != "max_rss_mib"
    }
    result = {
        "benchmark": "operator",
        "what": "operator refreshes of the whole fleet, pure work only, through desired() "
        "and the caches the controller keeps: parse, desired (plan, route, render "
        "Deployments, Services, Envoy gateways, statuses, Events, cost lines and budgets on "
        "the usage the gateways counted), write; `total` is those, "
        "the `diff` phase (the benchmark's own report of what changed) is apart. `cycle`: a "
        f"steady refresh ({CHANGED_SHARE:.0%} of the observations moved); `worst_cycle`: "
        "every gateway's routes change; `first_cycle`: nothing cached yet",
        "not_included": "Envoy validation of changed gateways (the operator runs the envoy "
        "binary only when a config hash changes), Kubernetes API calls, Prometheus queries",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        **measured,
        "runs": summaries,
        "median_of_runs": {**medians, "max_rss_mib": max(s["max_rss_mib"] for s in summaries)},
        "process_wall_seconds": round(time.perf_counter() - wall, 2),
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    return result


def headline(result: dict[str, Any]) -> str:
    median, runs = result["median_of_runs"], len(result["runs"])
    return (
        f"{result['scale']['pools']} pools, median of {runs} runs: steady "
        f"{median['steady_cpu_seconds']:.2f} s CPU, worst {median['worst_cpu_seconds']:.2f} s "
        f"({median['worst_with_young_collection_cpu_seconds']:.2f} s with a young collection); "
        f"{median['max_rss_mib']} MiB max RSS"
    )


def print_table(result: dict[str, Any]) -> None:
    scale = result["scale"]
    print(
        f"{scale['pools']} pools, {scale['variants']} variants, {scale['routing_policies']} policies"
    )
    row = "{:<10} {:>10} {:>10} {:>10}"
    print(row.format("phase", "first s", "steady s", "worst s"))
    cycles = (result["first_cycle"], result["cycle"], result["worst_cycle"])
    for name in (*PHASES, "total"):
        cpu = [
            (c["total"] if name == "total" else c["phases"][name])["cpu_seconds"] for c in cycles
        ]
        print(row.format(name, *(f"{s:.3f}" for s in cpu)))
    young = result["young_collection"]
    print(
        f"worst with a young collection charged: "
        f"{result['worst_cycle']['with_young_collection_cpu_seconds']:.3f} s (a young "
        f"collection: {young['cpu_seconds']:.3f} s, {young['objects']:,} objects)"
    )
    print("runs (CPU s): steady / worst / worst with a young collection / steady diff")
    for summary in result["runs"]:
        print(
            f"  {summary['steady_cpu_seconds']:.3f} / {summary['worst_cpu_seconds']:.3f} / "
            f"{summary['worst_with_young_collection_cpu_seconds']:.3f} / "
            f"{summary['steady_diff_cpu_seconds']:.3f}"
        )
    print(headline(result))
    memory, diff = result["memory"], result["counts"]["diff"]
    print(
        f"CPU seconds; {memory['max_rss_after_all_cycles_mib']} MiB max RSS; steady cycle "
        f"changed {diff['deployments']['changed']} Deployments, "
        f"{diff['gateways']['changed']} gateways"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pools", type=int, default=POOLS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--runs", type=int, default=RUNS, help="fresh processes measured")
    parser.add_argument(
        "--measure", action="store_true", help="measure here, print JSON (internal)"
    )
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.pools, args.seed)))
        return 0
    print_table(run(args.pools, args.seed, runs=args.runs))
    print(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
