"""Operator cycle cost: the pure work of one refresh for a large fleet, without I/O.

1,000 ModelPools x 4 variants and one RoutingPolicy per pool (bench/operator_fleet.py grows
them from manifests/samples/). A first cycle renders everything; then ~10% of the
observations move and the measured second cycle does what the operator does each refresh,
through the same function the controller calls (`modelfleet.render.desired`), one pool at
a time as the controller's per-pool cycle does:

    parse    ModelPool/RoutingPolicy/Reservation bodies (each pool's status included:
             the previous plan) -> models
    desired  `desired(FleetInputs(...))` per pool: plan, route, Deployments, Services, the
             gateway's Envoy files (3 API keys) with their ConfigMap and Secret, every
             status and Event
    diff     each manifest and gateway hash against the previous cycle's (what to apply)

Memory holds every pool's result at once (an upper bound on the operator, which does one
pool per timer). Envoy validation of changed gateways is not included: it runs the envoy
binary, only when a hash changes.

    python -m bench.operator     # writes bench/results/operator.json, prints a table

(Run it with -m: as a script, this file would hide Python's own `operator` module.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from modelfleet.render.desired import Desired, desired
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.inputs import FleetInputs, parse_body

from .operator_fleet import REFRESH_SECONDS, SyntheticFleet, build_fleet, next_observations

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "operator.json"
POOLS = 1_000
SEED = 20261127
CHANGED_SHARE = 0.10
PHASES = ("parse", "desired", "diff")
SETTINGS = GatewaySettings()
MEASURE_TIMEOUT_SECONDS = 1800


@dataclass
class CycleOutput:
    """What one cycle leaves for the next: its manifests, gateway hashes and pool statuses."""

    manifests: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    gateway_hashes: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)  # by pool


@dataclass
class PhaseClock:
    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        cpu, wall = time.process_time(), time.perf_counter()
        yield
        self.cpu[name] = time.process_time() - cpu
        self.wall[name] = time.perf_counter() - wall

    def report(self) -> dict[str, Any]:
        return {
            "phases": {
                name: {"cpu_seconds": round(self.cpu[name], 4), "wall_seconds": round(w, 4)}
                for name, w in self.wall.items()
            },
            "total": {
                "cpu_seconds": round(sum(self.cpu.values()), 4),
                "wall_seconds": round(sum(self.wall.values()), 4),
            },
        }


def _parsed(body: dict[str, Any]) -> Any:
    model, rejected = parse_body(body)
    if rejected is not None:
        raise RuntimeError(f"synthetic {rejected.ref.kind} is invalid: {rejected.errors}")
    return model


def _ref(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _outcome(previous: Any, current: Any) -> str:
    return "new" if previous is None else "unchanged" if previous == current else "changed"


def run_cycle(
    fleet: SyntheticFleet,
    statuses: dict[str, dict[str, Any]],
    observations: dict[str, Any],
    now: datetime,
    before: CycleOutput,
) -> tuple[CycleOutput, dict[str, Any], dict[str, Any]]:
    """One refresh of the whole fleet, phase by phase. `statuses` is what the previous cycle
    wrote into each pool's status; `before` what it rendered. Returns this cycle's output,
    the phase times and what it counted."""
    clock = PhaseClock()
    output = CycleOutput()
    with clock.phase("parse"):
        pools = [
            _parsed({**body, "status": statuses[_ref(**_names(body))]}) for body in fleet.pools
        ]
        policies: dict[str, list[Any]] = {}
        for body in fleet.policies:
            policy = _parsed(body)
            policies.setdefault(_ref(policy.namespace, policy.spec.pool), []).append(policy)
        held: dict[str, list[Any]] = {}
        for body in fleet.reservations:
            reservation = _parsed(body)
            held.setdefault(_ref(reservation.namespace, reservation.spec.pool), []).append(
                reservation
            )
    with clock.phase("desired"):
        results = {}
        for pool in pools:
            ref = _ref(pool.namespace, pool.name)
            own = policies.get(ref, [])
            results[ref] = desired(
                FleetInputs(
                    now=now,
                    pools=[pool],
                    reservations=held.get(ref, []),
                    policies=own,
                    observations=observations,
                    api_keys={(p.namespace, p.name): fleet.api_keys for p in own},
                    service_addresses={(pool.namespace, pool.name): fleet.service_addresses[ref]},
                    gateway=SETTINGS,
                )
            )
    with clock.phase("diff"):
        diff: Counter[str] = Counter()
        to_publish = []
        for ref, result in results.items():
            for manifest in result.workloads:
                key = (manifest["kind"], ref, manifest["metadata"]["name"])
                output.manifests[key] = manifest
                diff[f"{key[0]}.{_outcome(before.manifests.get(key), manifest)}"] += 1
            for (namespace, name), gateway in result.gateways.items():
                policy_ref = _ref(namespace, name)
                output.gateway_hashes[policy_ref] = gateway.config_hash
                outcome = _outcome(before.gateway_hashes.get(policy_ref), gateway.config_hash)
                diff[f"Gateway.{outcome}"] += 1
                if outcome != "unchanged":
                    to_publish.extend((gateway.secret, gateway.config_map))
            namespace, name = ref.split("/")
            pool_status = result.status_of("ModelPool", namespace, name)
            output.statuses[ref] = pool_status.model_dump(by_alias=True, mode="json")
    counts = _counts(results, pools, diff, to_publish)
    return output, clock.report(), counts


def _names(body: dict[str, Any]) -> dict[str, str]:
    meta = body["metadata"]
    return {"namespace": meta["namespace"], "name": meta["name"]}


def _counts(
    results: dict[str, Desired],
    pools: list[Any],
    diff: Counter[str],
    to_publish: list[dict[str, Any]],
) -> dict[str, Any]:
    plans = {ref: result.plans[tuple(ref.split("/"))] for ref, result in results.items()}
    variants = [v for plan in plans.values() for v in plan.variants]
    scaled = sum(1 for result in results.values() for e in result.events if e.reason == "Scaled")
    gateways = [g for result in results.values() for g in result.gateways.values()]
    tables = [t for result in results.values() for t in result.tables.values()]
    workloads = [w for result in results.values() for w in result.workloads]

    def outcomes(kind: str) -> dict[str, int]:
        return {name: diff[f"{kind}.{name}"] for name in ("new", "changed", "unchanged")}

    return {
        "plan": {
            "pools": len(plans),
            "variants": len(variants),
            "by_reason": dict(sorted(Counter(v.reason for v in variants).items())),
            "scaled": scaled,
            "desired_replicas": sum(v.desired_replicas for v in variants),
            "gpus_planned": sum(v.gpus for v in variants),
            "overcommitted_pools": sum(
                1 for p in plans.values() if p.condition("Overcommitted").status == "True"
            ),
            "reservations_granted": sum(
                1 for p in plans.values() for grant in p.reservations if grant.granted
            ),
        },
        "render": {
            "deployments": sum(1 for w in workloads if w["kind"] == "Deployment"),
            "services": sum(1 for w in workloads if w["kind"] == "Service"),
            "gateways": len(gateways),
            "gateway_routes": sum(len(table.routes) for table in tables),
            "gateway_bytes": sum(len(text) for g in gateways for text in g.files.values()),
            "statuses": sum(len(result.statuses) for result in results.values()),
            "events": sum(len(result.events) for result in results.values()),
        },
        "diff": {
            "deployments": outcomes("Deployment"),
            "services": outcomes("Service"),
            "gateways": outcomes("Gateway"),
            "gateway_objects_to_apply": len(to_publish),
        },
    }


def _max_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def measure(pools: int, seed: int) -> dict[str, Any]:
    """The measurement itself; run it in a fresh process (see run()) so that the memory
    numbers are this fleet's and nothing else's."""
    after_imports = _max_rss_mib()
    started = time.process_time()
    fleet = build_fleet(pools, seed)
    build_cpu = time.process_time() - started
    after_inputs = _max_rss_mib()
    first, first_times, first_counts = run_cycle(
        fleet, fleet.statuses, fleet.observations, fleet.now, CycleOutput()
    )
    later = fleet.now + timedelta(seconds=REFRESH_SECONDS)
    observations, moved = next_observations(fleet.observations, CHANGED_SHARE, seed + 1, later)
    second, times, counts = run_cycle(fleet, first.statuses, observations, later, first)
    after_cycles = _max_rss_mib()
    # The same cycle again under tracemalloc (which slows Python down, so not timed above):
    # its peak is what one cycle allocates on top of the inputs and the previous output.
    del second
    tracemalloc.start()
    again, _, again_counts = run_cycle(fleet, first.statuses, observations, later, first)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del again
    if again_counts != counts:
        raise RuntimeError("the same cycle gave different results twice: the core is not pure")
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
        },
        "first_cycle": first_times,
        "counts": counts,
        "first_cycle_counts": first_counts,
        "memory": {
            "cycle_tracemalloc_peak_mib": round(traced_peak / 2**20, 1),
            "max_rss_after_imports_mib": after_imports,
            "max_rss_with_inputs_mib": after_inputs,
            "max_rss_after_two_cycles_mib": after_cycles,
        },
        "fleet_build_cpu_seconds": round(build_cpu, 3),
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


def run(pools: int = POOLS, seed: int = SEED, results: Path = RESULTS) -> dict[str, Any]:
    """Measure in a fresh Python, write `results` and return what was written."""
    load_before = os.getloadavg()[0]
    command = [sys.executable, "-m", "bench.operator", "--measure"]
    command += ["--pools", str(pools), "--seed", str(seed)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    wall = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=MEASURE_TIMEOUT_SECONDS
    )
    if done.returncode != 0:
        raise RuntimeError(f"the operator benchmark failed:\n{done.stderr[-4000:]}")
    measured = json.loads(done.stdout)
    result = {
        "benchmark": "operator",
        "what": "one operator refresh of the whole fleet, pure work only: parse, plan, render "
        "(Deployments, Services, Envoy gateways), status, diff against the previous cycle; "
        f"the second of two cycles, after {CHANGED_SHARE:.0%} of the observations moved",
        "not_included": "Envoy validation of changed gateways (the operator runs the envoy "
        "binary only when a config hash changes), Kubernetes API calls, Prometheus queries",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(load_before),
        **measured,
        "process_wall_seconds": round(time.perf_counter() - wall, 2),
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(result, indent=2) + "\n")
    return result


def headline(result: dict[str, Any]) -> str:
    cycle, memory = result["cycle"], result["memory"]
    cpu = cycle["total"]["cpu_seconds"]
    return (
        f"{result['scale']['pools']} pools: {cpu:.1f} s CPU per cycle; "
        f"{memory['cycle_tracemalloc_peak_mib']} MiB "
        f"traced peak, {memory['max_rss_after_two_cycles_mib']} MiB max RSS"
    )


def print_table(result: dict[str, Any]) -> None:
    scale, cycle = result["scale"], result["cycle"]
    print(
        f"{scale['pools']} pools, {scale['variants']} variants, {scale['routing_policies']} policies"
    )
    row = "{:<18} {:>9} {:>9}"
    print(row.format("phase", "cpu s", "wall s"))
    for name, times in [*cycle["phases"].items(), ("total", cycle["total"])]:
        print(row.format(name, f"{times['cpu_seconds']:.3f}", f"{times['wall_seconds']:.3f}"))
    memory, diff = result["memory"], result["counts"]["diff"]
    print(
        f"peak: {memory['cycle_tracemalloc_peak_mib']} MiB traced in the cycle, "
        f"{memory['max_rss_after_two_cycles_mib']} MiB max RSS; changed: "
        f"{diff['deployments']['changed']} Deployments, {diff['gateways']['changed']} gateways"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.operator", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--pools", type=int, default=POOLS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument(
        "--measure", action="store_true", help="measure here, print JSON (internal)"
    )
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.pools, args.seed)))
        return 0
    print_table(run(args.pools, args.seed))
    print(RESULTS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
