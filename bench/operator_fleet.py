"""A synthetic fleet for the operator benchmark, grown from `manifests/samples/`.

Every pool is the sample `chat` pool with its numbers varied (GPU budget, timezone, schedule
hours and floors, replica ranges, queue targets), one RoutingPolicy per pool (the sample's
routes with varied weights and degrade thresholds), reservations on about a third of the
pools, Prometheus-style observations (and the gateways' usage counters at their request
rates: `usage_read`), and in each pool's status the plan the operator
would have written (in each policy's, its planned routes): the real planner runs for ten
minutes of refreshes before NOW, so the fleet has settled, stabilization windows hold a
real history and the latency shift's weights have come to rest. The same seed always gives
the same fleet, as wire objects (dicts): the operator parses them itself each cycle.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from modelfleet.api.keys import ApiKey
from modelfleet.observe.observation import VariantObservation, variant_key
from modelfleet.observe.usage import Usage, UsageKey
from modelfleet.render.desired import desired
from modelfleet.render.inputs import FleetInputs, parse_body

SAMPLES = Path(__file__).resolve().parents[1] / "manifests" / "samples"
# A Friday: business-hours schedules are open in some of the zones below and closed in others.
NOW = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
TIMEZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")
NAMESPACES = 50
REFRESH_SECONDS = 30
HISTORY_SECONDS = 600  # the longest stabilization window of the sample pool
SETTLE_ROUNDS = HISTORY_SECONDS // REFRESH_SECONDS
API_KEYS = (
    ApiKey(id="web", key="sk-bench-web-0123456789", tenant="consumer"),
    ApiKey(id="batch", key="sk-bench-batch-0123456789", tenant="fin-risk"),
    ApiKey(id="ops", key="sk-bench-ops-0123456789", tenant="platform"),
)

# How each key's requests split a variant's traffic, and a request's tokens: what the
# gateways' usage counters give the operator every refresh.
KEY_SHARES = {"web": 0.6, "batch": 0.3, "ops": 0.1}
PROMPT_TOKENS, COMPLETION_TOKENS = 800, 200
# Each budget period's spend as Prometheus gives it: the usage since the period began,
# about half a day and half a month in.
PERIOD_SECONDS = {"day": 12 * 3600, "month": 15 * 86400}


@dataclass
class SyntheticFleet:
    pools: list[dict[str, Any]]  # ModelPool bodies without status (it is in `statuses`)
    statuses: dict[str, dict[str, Any]]  # "ns/pool" -> the status the previous cycle wrote
    reservations: list[dict[str, Any]]
    policies: list[dict[str, Any]]  # RoutingPolicy bodies, with their planned routes
    observations: dict[str, VariantObservation]
    # "ns/pool" -> variant -> its Service's cluster IP and port, as the operator reads them
    service_addresses: dict[str, dict[str, tuple[str, int]]]
    api_keys: tuple[ApiKey, ...]
    now: datetime

    @property
    def variants(self) -> int:
        return sum(len(p["spec"]["variants"]) for p in self.pools)


def sample_documents() -> dict[str, dict[str, Any]]:
    """The first object of each kind in the samples."""
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(SAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict):
                documents.setdefault(document["kind"], document)
    missing = {"ModelPool", "RoutingPolicy", "Reservation"} - set(documents)
    if missing:
        raise RuntimeError(f"{SAMPLES} lacks a sample of {', '.join(sorted(missing))}")
    return documents


def _shift_cron(expression: str, hours: int) -> str:
    minute, hour, *rest = expression.split()
    return " ".join([minute, str((int(hour) + hours) % 24), *rest])


def _pool(template: dict[str, Any], index: int, rng: random.Random) -> dict[str, Any]:
    pool = copy.deepcopy(template)
    pool["metadata"] = {
        "name": f"pool-{index:04d}",
        "namespace": f"team-{index % NAMESPACES:02d}",
        "uid": f"00000000-0000-4000-8000-{index:012d}",
        "generation": 1 + rng.randrange(3),
    }
    spec = pool["spec"]
    # Floors need ~60 GPUs and business hours ~220: budgets around that make some pools cut.
    spec["gpuBudget"] = rng.randrange(160, 400, 8)
    spec["timezone"] = rng.choice(TIMEZONES)
    for variant in spec["variants"]:
        replicas = variant["replicas"]
        replicas["min"] = max(0, replicas["min"] + rng.randint(-1, 1))
        replicas["max"] = max(replicas["min"] + 1, replicas["max"] + rng.randint(-2, 4))
        shift = rng.randint(-2, 2)
        for schedule in variant.get("schedules", []):
            schedule["start"] = _shift_cron(schedule["start"], shift)
            schedule["end"] = _shift_cron(schedule["end"], shift)
            schedule["replicas"] = min(
                replicas["max"], max(0, round(schedule["replicas"] * rng.uniform(0.7, 1.3)))
            )
        queue = variant.get("queue")
        if queue:
            queue["targetPerReplica"] = round(queue["targetPerReplica"] * rng.uniform(0.75, 1.25))
    return pool


def _policy(template: dict[str, Any], pool: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    policy = copy.deepcopy(template)
    name, namespace = pool["metadata"]["name"], pool["metadata"]["namespace"]
    policy["metadata"] = {"name": name, "namespace": namespace, "generation": 1}
    spec = policy["spec"]
    spec["pool"] = name
    spec["gateway"]["configMap"] = f"{name}-gateway"
    spec["gateway"]["apiKeySecret"] = f"{name}-api-keys"
    for route in spec["routes"]:
        if len(route["backends"]) > 1:
            first = rng.randrange(50, 95, 5)
            route["backends"][0]["weight"] = first
            route["backends"][1]["weight"] = 100 - first
    for rule in spec.get("degrade", []):
        rule["waitingAbove"] = rng.randrange(40, 200, 10)
    return policy


def _reservations(
    template: dict[str, Any], pool: dict[str, Any], rng: random.Random, now: datetime
) -> list[dict[str, Any]]:
    """None for two pools in three; else one or two, some in a window (open, future, closed)."""
    if rng.random() >= 1 / 3:
        return []
    name, namespace = pool["metadata"]["name"], pool["metadata"]["namespace"]
    held = []
    for number in range(rng.randint(1, 2)):
        reservation = copy.deepcopy(template)
        reservation["metadata"] = {
            "name": f"{name}-hold-{number}",
            "namespace": namespace,
            "generation": 1,
        }
        spec = reservation["spec"]
        spec["pool"] = name
        spec["variant"] = rng.choice(pool["spec"]["variants"])["name"]
        spec["tenant"] = rng.choice(API_KEYS).tenant
        spec["replicas"] = rng.randint(1, 6)
        opens = rng.choice((None, -6, 6))  # hours from now: none, open, not yet open
        if opens is not None:
            start = now + timedelta(hours=opens)
            spec["window"] = {
                "start": start.isoformat(),
                "end": (start + timedelta(hours=12)).isoformat(),
            }
        held.append(reservation)
    return held


def _first_status(pool: dict[str, Any], rng: random.Random, planned_at: datetime) -> dict[str, Any]:
    """Where settling starts: random desired counts and a full window of recommendations."""
    variants = []
    for variant in pool["spec"]["variants"]:
        low, high = variant["replicas"]["min"], variant["replicas"]["max"]
        desired = rng.randint(low, high)
        history = []
        for age in range(HISTORY_SECONDS, 0, -REFRESH_SECONDS):
            at = planned_at - timedelta(seconds=age - REFRESH_SECONDS)
            replicas = min(high, max(low, desired + rng.randint(-3, 3)))
            history.append({"at": at.isoformat(), "replicas": replicas})
        scaled = planned_at - timedelta(seconds=rng.randrange(0, 3600, REFRESH_SECONDS))
        variants.append(
            {
                "name": variant["name"],
                "desiredReplicas": desired,
                "recommendations": history,
                "lastScaleTime": scaled.isoformat(),
            }
        )
    return {"plannedAt": planned_at.isoformat(), "variants": variants, "conditions": []}


def _observation(
    variant: dict[str, Any], ready: int, rng: random.Random, now: datetime
) -> VariantObservation:
    target = (variant.get("queue") or {}).get("targetPerReplica", 32)
    load = rng.uniform(0.2, 1.5)
    running = round(min(ready * target * load, ready * 256))
    stale = rng.random() < 0.03  # a scrape that stopped: the planner must hold
    return VariantObservation(
        ready_replicas=ready,
        running=float(running),
        waiting=float(max(0, round(ready * target * (load - 0.8)))),
        qps=round(ready * rng.uniform(0.5, 20), 2) if ready else 0.0,
        p99_latency_seconds=round(rng.uniform(0.5, 30), 3),
        error_rate=round(rng.uniform(0, 0.02), 4),
        sampled_at=now - timedelta(seconds=rng.randint(600, 900) if stale else rng.randint(0, 20)),
    )


def _observations(
    pool: dict[str, Any], status: dict[str, Any], rng: random.Random, now: datetime
) -> dict[str, VariantObservation]:
    observed = {}
    desired = {v["name"]: v["desiredReplicas"] for v in status["variants"]}
    meta = pool["metadata"]
    for variant in pool["spec"]["variants"]:
        roll = rng.random()
        if roll < 0.02:
            continue  # no series at all yet
        ready = desired[variant["name"]]
        if roll < 0.05:
            ready = 0  # every replica down: routing moves its weight away
        elif roll < 0.15:
            ready = max(0, ready - rng.randint(1, 2))  # replicas still loading
        key = variant_key(meta["namespace"], meta["name"], variant["name"])
        observed[key] = _observation(variant, ready, rng, now)
    return observed


def _service_addresses(pool: dict[str, Any], index: int) -> dict[str, tuple[str, int]]:
    addresses = {}
    for number, variant in enumerate(pool["spec"]["variants"]):
        host = index * 8 + number  # unique while a pool has at most 8 variants
        address = f"10.{96 + host // 65536}.{host // 256 % 256}.{host % 256}"
        addresses[variant["name"]] = (address, variant.get("port", 8000))
    return addresses


def build_fleet(pools: int, seed: int) -> SyntheticFleet:
    if pools < 1:
        raise ValueError(f"pools must be at least 1, got {pools}")
    rng = random.Random(seed)
    samples = sample_documents()
    fleet = SyntheticFleet([], {}, [], [], {}, {}, API_KEYS, NOW)
    settle_from = NOW - timedelta(seconds=(SETTLE_ROUNDS + 1) * REFRESH_SECONDS)
    for index in range(pools):
        pool = _pool(samples["ModelPool"], index, rng)
        meta = pool["metadata"]
        ref = f"{meta['namespace']}/{meta['name']}"
        fleet.pools.append(pool)
        fleet.policies.append(_policy(samples["RoutingPolicy"], pool, rng))
        fleet.reservations.extend(_reservations(samples["Reservation"], pool, rng, NOW))
        fleet.statuses[ref] = _first_status(pool, rng, settle_from)
        fleet.observations.update(_observations(pool, fleet.statuses[ref], rng, NOW))
        fleet.service_addresses[ref] = _service_addresses(pool, index)
    _settle(fleet, SETTLE_ROUNDS)
    return fleet


def _settle(fleet: SyntheticFleet, rounds: int) -> None:
    """The operator's last `rounds` refreshes before NOW on today's observations, each
    pool's plan and its policy's routes (the weights the latency shift moves a step per
    refresh) written back as the operator writes them; then the ready counts follow the
    settled plan (a variant that was down stays down, one that lagged lags by as much)."""
    first = {
        ref: {v["name"]: v["desiredReplicas"] for v in status["variants"]}
        for ref, status in fleet.statuses.items()
    }
    held: dict[str, list[Any]] = {}
    for body in fleet.reservations:
        reservation = parse_body(body)[0]
        held.setdefault(f"{reservation.namespace}/{reservation.spec.pool}", []).append(reservation)
    for back in range(rounds, 0, -1):
        at = NOW - timedelta(seconds=back * REFRESH_SECONDS)
        observed = {
            key: replace(o, sampled_at=o.sampled_at - (NOW - at) if o.sampled_at else None)
            for key, o in fleet.observations.items()
        }
        for body, policy_body in zip(fleet.pools, fleet.policies, strict=True):
            meta = body["metadata"]
            ref = f"{meta['namespace']}/{meta['name']}"
            pool = parse_body({**body, "status": fleet.statuses[ref]})[0]
            policy = parse_body(policy_body)[0]
            # No gateway yet: a policy's status is its planned routes alone.
            result = desired(
                FleetInputs(
                    at,
                    pools=[pool],
                    policies=[policy],
                    reservations=held.get(ref, []),
                    observations=observed,
                )
            )
            status = result.status_of("ModelPool", pool.namespace, pool.name)
            fleet.statuses[ref] = status.model_dump(by_alias=True, mode="json")
            routes = result.statuses[("RoutingPolicy", policy.namespace, policy.name)]
            policy_body["status"] = routes.wire()
    for key, observation in fleet.observations.items():
        namespace, name, variant = key.split("/")
        ref = f"{namespace}/{name}"
        settled = next(
            v["desiredReplicas"] for v in fleet.statuses[ref]["variants"] if v["name"] == variant
        )
        if observation.ready_replicas:
            lag = first[ref][variant] - observation.ready_replicas
            fleet.observations[key] = replace(observation, ready_replicas=max(0, settled - lag))


def next_observations(
    observations: dict[str, VariantObservation], share: float, seed: int, now: datetime
) -> tuple[dict[str, VariantObservation], int]:
    """One refresh later: every series has a new sample time, and `share` of them moved
    (a queue spike, a drained queue, a replica lost or gained). Returns them and how many
    moved."""
    rng = random.Random(seed)
    keys = sorted(observations)
    moved = set(rng.sample(keys, round(len(keys) * share)))
    later = {}
    for key in keys:
        observation = observations[key]
        sampled_at = now - timedelta(seconds=rng.randint(0, 20))
        if key not in moved:
            stale = observation.sampled_at is not None and observation.sampled_at < now - timedelta(
                seconds=300
            )
            later[key] = observation if stale else replace(observation, sampled_at=sampled_at)
            continue
        ready = observation.ready_replicas or 0
        waiting = observation.waiting or 0.0
        change = rng.choice(("spike", "drain", "lost", "gained"))
        if change == "spike":
            observation = replace(observation, waiting=waiting * 4 + 200)
        elif change == "drain":
            observation = replace(observation, waiting=0.0, running=(observation.running or 0) / 4)
        elif change == "lost":
            observation = replace(observation, ready_replicas=max(0, ready - 1))
        else:
            observation = replace(observation, ready_replicas=ready + 1)
        later[key] = replace(observation, sampled_at=sampled_at)
    return later, len(moved)


@dataclass(frozen=True)
class UsageRead:
    """What the operator reads of a pool's gateway usage in a refresh: the use since the
    last one (for the ledger) and since each budget period began (for the budgets)."""

    since_last_refresh: dict[UsageKey, Usage]
    by_period: dict[str, dict[UsageKey, Usage]]


def usage_reads(
    fleet: SyntheticFleet, observations: dict[str, VariantObservation]
) -> dict[str, UsageRead]:
    """Each pool's UsageRead ("ns/pool")."""
    reads = {}
    for pool in fleet.pools:
        meta = pool["metadata"]
        reads[f"{meta['namespace']}/{meta['name']}"] = usage_read(pool, observations)
    return reads


def usage_read(pool: dict[str, Any], observations: dict[str, VariantObservation]) -> UsageRead:
    """A pool's UsageRead, at the observed request rates."""
    namespace, name = pool["metadata"]["namespace"], pool["metadata"]["name"]
    rates = {
        variant["name"]: observations.get(variant_key(namespace, name, variant["name"]))
        for variant in pool["spec"]["variants"]
    }
    return UsageRead(
        _usage(rates, REFRESH_SECONDS),
        {period: _usage(rates, seconds) for period, seconds in PERIOD_SECONDS.items()},
    )


def _usage(observed: dict[str, VariantObservation | None], seconds: float) -> dict[UsageKey, Usage]:
    table = {}
    for variant, observation in observed.items():
        rate = observation.qps if observation is not None else None
        if not rate:
            continue
        for key in API_KEYS:
            requests = rate * seconds * KEY_SHARES[key.id]
            table[UsageKey(key.tenant, key.id, variant)] = Usage(
                requests, requests * PROMPT_TOKENS, requests * COMPLETION_TOKENS
            )
    return table
