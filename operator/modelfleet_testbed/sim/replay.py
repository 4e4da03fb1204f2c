"""The discrete-event replay of one pool in virtual time, through the operator's own cycle
(`modelfleet.render.desired`: the planner, the router and the status they write).

What is modelled, and how (every report repeats it):
- The planner runs every `spec.metrics.refreshSeconds` from the replay's start. Its queue
  metrics (running and waiting per variant, and the finished-request rate over the last
  minute) are what the replicas exported `scrape_lag` seconds earlier; ready replicas are
  current, as the operator reads them from the Deployments. The previous cycle's plan comes
  back from the pool's status, serialized and read again, as the operator's does.
- At the start the fleet is warm: the planner's first plan (no metrics) is ready at once.
- A scale-up's replicas take GPUs at once and become ready `startupSeconds` later. A
  scale-down takes first the replicas still starting, then the most recently ready; those
  leave the Service at once, finish what they hold and are gone; requests still running
  `termination_grace` seconds later are dropped (`terminated`).
- The routing table is re-planned each cycle from the same observations and used as is
  until the next. Each request takes the first route that matches it, a backend drawn by
  the route's weights, then (balance "random") a ready replica at random, as kube-proxy
  spreads connections over a Service; or (balance "gateway-queue") waits in one queue per
  variant at the gateway until a replica has a free batch slot, then goes to the ready
  replica holding the fewest requests.
- Requests queue and batch on each replica's `BatchEngine`; a request whose prompt plus
  output exceeds the KV cache or `--max-model-len` is refused (`too-long`); one with no
  matching route gets `no-route`, one sent to a variant with no ready replica
  `no-ready-replica` (Envoy's 503).
- Arrivals stop at the replay's end, so do the planner and the accounting; requests
  still in flight then run to completion on the fleet as it is.
"""

from __future__ import annotations

import heapq
import math
import random
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, timedelta
from typing import Any

from modelfleet.api.common import rfc3339
from modelfleet.api.modelpool import DEMAND_SMOOTHING_SECONDS, ModelPool
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.observe.histogram import histogram_quantile
from modelfleet.observe.observation import RateSample, VariantObservation, variant_key
from modelfleet.plan.scaling.types import PoolPlan
from modelfleet.render.desired import Desired, desired
from modelfleet.render.inputs import FleetInputs
from modelfleet.render.plan_document import plan_document
from modelfleet.render.render_cache import RenderCache
from modelfleet.render.status import BuiltPoolStatus
from modelfleet_testbed.sim.batching import FinishedRequest
from modelfleet_testbed.sim.dispatch import Dispatch, dispatch_table
from modelfleet_testbed.sim.outcome import (
    BALANCES,
    NO_READY,
    NO_ROUTE,
    PENDING,
    SERVED,
    TERMINATED,
    TOO_LONG,
    CyclePoint,
    ReplayResult,
    ReplaySettings,
    ScaleEvent,
)
from modelfleet_testbed.sim.replica_metrics import LATENCY_BUCKETS, TTFT_BUCKETS
from modelfleet_testbed.sim.replica_set import (
    DRAINING,
    GONE,
    READY,
    EngineConfig,
    SimReplica,
    VariantReplicas,
)
from modelfleet_testbed.sim.workload import Workload

# Heap events at one instant run in this order, and before arrivals at that instant.
_READY, _WAKE, _SCRAPE, _CYCLE = range(4)


def _metrics_json(observations: Mapping[str, VariantObservation]) -> dict[str, Any]:
    variants = {}
    for key, obs in observations.items():
        entry = {
            "readyReplicas": obs.ready_replicas,
            "running": obs.running,
            "waiting": obs.waiting,
            "qps": obs.qps,
            "p99LatencySeconds": obs.p99_latency_seconds,
            "p99TtftSeconds": obs.p99_ttft_seconds,
            "p99QueueSeconds": obs.p99_queue_seconds,
            "sampledAt": rfc3339(obs.sampled_at) if obs.sampled_at else None,
        }
        if obs.demand_history:
            entry["demandHistory"] = [
                {"at": rfc3339(sample.at), "rate": sample.rate} for sample in obs.demand_history
            ]
        variants[key] = {k: v for k, v in entry.items() if v is not None}
    return {"variants": variants}


def _p99(bounds: Sequence[float], counts: list[int]) -> float | None:
    return histogram_quantile(0.99, bounds, counts) if any(counts) else None


class Replay:
    def __init__(
        self,
        pool: ModelPool,
        reservations: Sequence[Reservation],
        policy: RoutingPolicy,
        workload: Workload,
        configs: Mapping[str, EngineConfig],
        settings: ReplaySettings,
        progress: Callable[[float], None] | None = None,
    ):
        if settings.balance not in BALANCES:
            raise ValueError(f"balance must be one of {', '.join(BALANCES)}")
        self.pool = pool
        # The pool's status as the operator last wrote it (its parse cache hands the pool
        # back without a parsed status, and desired() plans from this).
        self.written: BuiltPoolStatus | None = None
        self.reservations = list(reservations)
        self.policy = policy
        self.workload = workload
        self.settings = settings
        self.progress = progress
        self.fleets = [
            VariantReplicas(i, v, configs[v.name]) for i, v in enumerate(pool.spec.variants)
        ]
        self.variant_index = {f.variant.name: f.index for f in self.fleets}
        self.route_index = {r.name: i for i, r in enumerate(policy.spec.routes)}
        self.refresh = float(pool.spec.metrics.refresh_seconds)
        # Scrapes are scheduled this many cycles ahead, so a lag longer than a cycle works.
        self.scrape_ahead = int(settings.scrape_lag // self.refresh) + 1
        n = len(workload.arrivals)
        self.times = workload.arrivals.times
        self.prompt = workload.arrivals.prompt_tokens
        self.output = workload.arrivals.output_tokens
        self.class_of = workload.class_of
        self.result = ReplayResult(
            variants=tuple(f.variant.name for f in self.fleets),
            duration=settings.duration,
            status=bytearray(n),
            ttft=array("d", bytes(8 * n)),
            e2e=array("d", bytes(8 * n)),
            queued=array("d", bytes(8 * n)),
            variant_of=array("b", b"\xff" * n),
            route_of=array("h", b"\xff\xff" * n),
            degraded=bytearray(n),
            replica_of=array("l", bytes(8 * n)) if settings.keep_replica_of_request else None,
        )
        self._rng = random.Random(f"route:{settings.seed}")
        self._heap: list[tuple[float, int, int, Any]] = []
        self._order = 0
        self._next_ident = 0
        self._planned = False
        self._samples: dict[int, list[tuple[float, float, float, float]]] = {}
        self._dispatch: list[Dispatch | None] = []
        self._routes: tuple | None = None  # the routes self._dispatch was made from
        # What the operator keeps between cycles, kept between the replay's cycles too.
        self._renders = RenderCache()

    # -- the loop ------------------------------------------------------------------

    def run(self) -> ReplayResult:
        self._cycle(0, 0.0)
        times = self.times
        heap = self._heap
        pop = heapq.heappop
        arrive = self._arrive_gateway if self.settings.balance == "gateway-queue" else self._arrive
        for i, t in enumerate(times):
            while heap and heap[0][0] <= t:
                self._event(pop(heap))
            arrive(i, t)
        while heap:
            self._event(pop(heap))
        self._finish()
        return self.result

    def _push(self, at: float, kind: int, payload: Any) -> None:
        self._order += 1
        heapq.heappush(self._heap, (at, kind, self._order, payload))

    def _event(self, entry: tuple[float, int, int, Any]) -> None:
        at, kind, _, payload = entry
        if kind == _READY:
            self._ready(payload, at)
        elif kind == _WAKE:
            self._wake(payload, at)
        elif kind == _SCRAPE:
            self._scrape(payload, at)
        else:
            self._cycle(payload, at)

    # -- requests ------------------------------------------------------------------

    def _route(self, i: int) -> VariantReplicas | None:
        """The variant the gateway sends request i to; None when it is dropped already."""
        result = self.result
        choice = self._dispatch[self.class_of[i]]
        if choice is None:
            result.status[i] = NO_ROUTE
            return None
        route, degraded, variants, cumulative = choice
        if len(variants) == 1:
            index = variants[0]
        else:
            index = variants[bisect_right(cumulative, self._rng.random() * cumulative[-1])]
        result.route_of[i] = route
        result.degraded[i] = degraded
        result.variant_of[i] = index
        fleet = self.fleets[index]
        if self.prompt[i] + self.output[i] > fleet.token_limit:
            result.status[i] = TOO_LONG
            return None
        return fleet

    def _arrive(self, i: int, t: float) -> None:
        fleet = self._route(i)
        if fleet is None:
            return
        ready = fleet.routable
        count = len(ready)
        if not count:
            self.result.status[i] = NO_READY
            return
        replica = ready[int(self._rng.random() * count)] if count > 1 else ready[0]
        # Not advanced to t: the replica's engine runs its steps when something reads it
        # (a scrape, a drain, the end), the request joining the first step after t.
        replica.engine.submit(i, self.prompt[i], self.output[i], t)
        replica.inflight.add(i)
        fleet.busy[replica.ident] = replica
        replica_of = self.result.replica_of
        if replica_of is not None:
            replica_of[i] = replica.ident

    def _submit(self, fleet: VariantReplicas, replica: SimReplica, i: int, t: float) -> None:
        engine = replica.engine
        events = engine.advance_to(t)
        if events:
            self._collect(fleet, replica, events, True)
        engine.submit(i, self.prompt[i], self.output[i], t)
        replica.inflight.add(i)
        fleet.busy[replica.ident] = replica
        if self.result.replica_of is not None:
            self.result.replica_of[i] = replica.ident

    def _collect(
        self, fleet: VariantReplicas, replica: SimReplica, events: list, counted: bool
    ) -> float:
        """Record finished requests; returns the latest finish time seen (or -inf)."""
        result, times = self.result, self.times
        # Looked up once per call, not per request: a week finishes a million of them.
        ttft_of, e2e_of, queued_of, status = result.ttft, result.e2e, result.queued, result.status
        leave = replica.inflight.discard
        count = fleet.finished.append
        latest = -math.inf
        for event in events:
            if event.__class__ is not FinishedRequest:
                continue
            i, _, admitted_at, first_token_at, latest, _, _ = event
            arrived = times[i]
            ttft = ttft_of[i] = first_token_at - arrived
            e2e = e2e_of[i] = latest - arrived
            queued = queued_of[i] = admitted_at - arrived
            status[i] = SERVED
            leave(i)
            if counted:
                # What the replica's vLLM histograms count: the bucket of each latency.
                count(
                    (
                        int(latest),
                        bisect_left(TTFT_BUCKETS, ttft),
                        bisect_left(LATENCY_BUCKETS, e2e),
                        bisect_left(LATENCY_BUCKETS, queued),
                    )
                )
        return latest

    # -- gateway-queue balancing ---------------------------------------------------

    def _arrive_gateway(self, i: int, t: float) -> None:
        fleet = self._route(i)
        if fleet is None:
            return
        fleet.queue.append(i)
        self._dispatch_queue(fleet, t)

    def _free_replica(self, fleet: VariantReplicas) -> SimReplica | None:
        """The ready replica holding the fewest requests, if it has a free batch slot."""
        if not fleet.routable:
            return None
        best = min(fleet.routable, key=lambda r: len(r.inflight))
        return best if len(best.inflight) < fleet.config.max_num_seqs else None

    def _dispatch_queue(self, fleet: VariantReplicas, t: float) -> None:
        while fleet.queue:
            replica = self._free_replica(fleet)
            if replica is None:
                return
            self._submit(fleet, replica, fleet.queue.popleft(), t)
            self._schedule_wake(replica)

    def _schedule_wake(self, replica: SimReplica) -> None:
        replica.version += 1
        at = replica.engine.next_event_time()
        if at is not None:
            self._push(at, _WAKE, (replica, replica.version))

    def _wake(self, payload: tuple[SimReplica, int], at: float) -> None:
        replica, version = payload
        if version != replica.version or replica.state != READY:
            return
        fleet = self._fleet_of(replica)
        self._collect(fleet, replica, replica.engine.advance_to(at), True)
        self._dispatch_queue(fleet, at)
        self._schedule_wake(replica)

    def _fleet_of(self, replica: SimReplica) -> VariantReplicas:
        return self.fleets[replica.fleet]

    # -- replicas ------------------------------------------------------------------

    def _ready(self, replica: SimReplica, at: float) -> None:
        fleet = self._fleet_of(replica)
        if replica.state == GONE:
            return  # scaled down while it was starting
        fleet.starting.remove(replica)
        replica.state = READY
        fleet.routable.append(replica)
        if fleet.queue:
            self._dispatch_queue(fleet, at)

    def _scale(self, fleet: VariantReplicas, desired: int, t: float, warm: bool) -> None:
        current = fleet.current
        if desired > current:
            startup = 0.0 if warm else float(fleet.variant.startup_seconds)
            for _ in range(desired - current):
                replica = fleet.create(self._next_ident, t, t + startup)
                self.result.replicas.append(replica)
                self._next_ident += 1
                fleet.starting.append(replica)
                if warm:
                    self._ready(replica, t)
                else:
                    self._push(t + startup, _READY, replica)
        for replica in fleet.victims(current - desired) if desired < current else ():
            if replica in fleet.starting:
                fleet.starting.remove(replica)
                replica.state = GONE
                replica.gone_at = t
            else:
                self._drain(fleet, replica, t)

    def _drain(self, fleet: VariantReplicas, replica: SimReplica, t: float) -> None:
        """Out of the Service now; serve what it holds until the grace period ends."""
        events = replica.engine.advance_to(t)  # what it finished while still in service
        if events:
            self._collect(fleet, replica, events, True)
        fleet.routable.remove(replica)
        fleet.busy.pop(replica.ident, None)
        replica.state = DRAINING
        replica.drain_at = t
        replica.version += 1
        deadline = t + self.settings.termination_grace
        engine = replica.engine
        gone = t
        while replica.inflight:
            at = engine.next_event_time()
            if at is None or at > deadline:
                break
            gone = max(gone, self._collect(fleet, replica, engine.advance_to(at), False))
        if replica.inflight:
            for i in replica.inflight:
                self.result.status[i] = TERMINATED
            replica.inflight.clear()
            gone = deadline
        replica.state = GONE
        replica.gone_at = gone

    # -- observing and planning ----------------------------------------------------

    def _scrape(self, cycle: int, s: float) -> None:
        """What Prometheus holds for cycle `cycle`: the replicas' gauges at time s, and
        over the minute before it their finished requests and latency histograms."""
        window = self.settings.rate_window
        oldest = int(s) - window  # seconds after this one are in the window
        sample = []
        for fleet in self.fleets:
            running = waiting = 0
            for replica in list(fleet.busy.values()):
                engine = replica.engine
                events = engine.advance_to(s)
                if events:
                    self._collect(fleet, replica, events, True)
                if engine.idle:
                    del fleet.busy[replica.ident]
                else:
                    running += engine.num_running
                    waiting += engine.num_waiting
            latency = fleet.window
            latency.update(fleet.finished, oldest)
            fleet.finished = []
            sample.append(
                (
                    s,
                    float(running),
                    float(waiting + len(fleet.queue)),
                    latency.count / window,
                    _p99(TTFT_BUCKETS, latency.ttft),
                    _p99(LATENCY_BUCKETS, latency.e2e),
                    _p99(LATENCY_BUCKETS, latency.queued),
                )
            )
        self._samples[cycle] = sample

    def _observations(self, cycle: int) -> dict[str, VariantObservation]:
        if cycle == 0:
            return {}  # warm start: the planner sets the fleet up from its spec alone
        sample = self._samples.pop(cycle, None)
        now = self.settings.start + timedelta(seconds=cycle * self.refresh)
        observations = {}
        for fleet in self.fleets:
            key = variant_key(self.pool.namespace, self.pool.name, fleet.variant.name)
            ready = len(fleet.routable)
            if sample is None:
                observations[key] = VariantObservation(ready_replicas=ready)
                continue
            s, running, waiting, qps, ttft, e2e, queued = sample[fleet.index]
            at = self.settings.start + timedelta(seconds=s)
            # The planner gets the instant in UTC, as the operator's Prometheus reader gives
            # it: it compares these with `now` (UTC) many times a cycle, and aware datetimes
            # in two zones compare through a UTC offset lookup each time.
            at_utc = at.astimezone(UTC)
            fleet.rate_times.append(at)
            fleet.rates_utc.append(RateSample(at_utc, qps))
            history = self._history(fleet, now)
            observations[key] = VariantObservation(
                ready_replicas=ready,
                running=running,
                waiting=waiting,
                qps=qps,
                p99_latency_seconds=e2e,
                sampled_at=at_utc,
                p99_ttft_seconds=ttft,
                p99_queue_seconds=queued,
                demand_history=history,
            )
        return observations

    def _history(self, fleet: VariantReplicas, now) -> tuple[RateSample, ...]:
        """The request rate this replay recorded in the last minutes and the forecast's
        look-back windows, as the operator's subqueries read it from Prometheus."""
        times = fleet.rate_times
        smoothing = timedelta(seconds=DEMAND_SMOOTHING_SECONDS)
        # The stretches history_windows asks Prometheus for: around each look-back up to its
        # lead time after (with a forecast), and the last few minutes.
        stretches = []
        forecast = fleet.variant.forecast
        lead = fleet.variant.forecast_lead_seconds(self.refresh)
        if forecast is not None and lead is not None:
            stretches = [
                (
                    now - timedelta(seconds=p) - smoothing,
                    now - timedelta(seconds=p - lead) + smoothing,
                )
                for p in sorted(forecast.lookback_seconds, reverse=True)
            ]
        stretches.append((now - smoothing, now))
        samples: list[RateSample] = []
        for start, end in stretches:
            # Found on the clock of the replay's zone, as ever; handed over in UTC.
            first = bisect_right(times, start)
            last = bisect_right(times, end)
            samples.extend(fleet.rates_utc[first:last])
        return tuple(samples)

    def _cycle(self, cycle: int, t: float) -> None:
        settings = self.settings
        if cycle == 0:
            for ahead in range(1, self.scrape_ahead + 1):
                self._schedule_scrape(ahead)
        else:
            self._schedule_scrape(cycle + self.scrape_ahead)
        # In UTC, as desired() would make it (and then need not copy the inputs).
        now = (settings.start + timedelta(seconds=t)).astimezone(UTC)
        observations = self._observations(cycle)
        result = desired(
            FleetInputs(
                now=now,
                pools=[self.pool],
                written_statuses=self._written_statuses(),
                reservations=self.reservations,
                policies=[self.policy],
                observations=observations,
                render_workloads=False,  # the replay runs its own replicas and bills itself
            ),
            self._renders,
        )
        plan = result.plans[(self.pool.namespace, self.pool.name)]
        planned_before = self._planned
        self._planned = True
        table = result.tables[(self.policy.namespace, self.policy.name)]
        routes_changed = table.routes != self._routes  # mostly the same as the cycle before
        self._remember(result, routes_changed)
        for variant_plan, fleet in zip(plan.variants, self.fleets, strict=True):
            was = fleet.current
            self._scale(fleet, variant_plan.desired_replicas, t, warm=cycle == 0)
            if planned_before and was != variant_plan.desired_replicas:
                up = variant_plan.desired_replicas > was
                self.result.scale_events.append(
                    ScaleEvent(
                        t,
                        fleet.variant.name,
                        was,
                        variant_plan.desired_replicas,
                        variant_plan.reason,
                        variant_plan.message,
                        t + fleet.variant.startup_seconds if up else None,
                    )
                )
        if routes_changed:
            self._routes = table.routes
            self._dispatch = dispatch_table(
                table, self.workload.classes, self.variant_index, self.route_index
            )
        self._record(cycle, t, result, plan, observations)
        if self.progress is not None:
            self.progress(t)
        following = (cycle + 1) * self.refresh
        if following < settings.duration:
            self._push(following, _CYCLE, cycle + 1)

    def _schedule_scrape(self, cycle: int) -> None:
        at = cycle * self.refresh - self.settings.scrape_lag
        if at >= 0 and cycle * self.refresh < self.settings.duration:
            self._push(at, _SCRAPE, cycle)

    def _written_statuses(self) -> dict[tuple[str, str], BuiltPoolStatus]:
        if self.written is None:
            return {}
        return {(self.pool.namespace, self.pool.name): self.written}

    def _remember(self, result: Desired, routes_changed: bool) -> None:
        """The pool's and the policy's status come back as the operator's do: the status it
        wrote, remembered rather than read back (its parse cache; the pool's as it was
        built), so the next cycle plans from it (the previous plan, the learned capacity,
        the routes' latency shifts).
        (`tests/unit/test_status_round_trip.py`: reading it back gives the same plan.)"""
        update = result.statuses[(self.pool.kind, self.pool.namespace, self.pool.name)]
        assert isinstance(update.content, BuiltPoolStatus)
        self.written = update.content
        routes = result.status_of(self.policy.kind, self.policy.namespace, self.policy.name)
        if routes is not None and routes_changed:
            # (Unchanged routes: the API server keeps the status it holds as it is.)
            self.policy = self.policy.model_copy(update={"status": routes})

    def _record(self, cycle, t, result: Desired, plan: PoolPlan, observations) -> None:
        key = variant_key
        ns, name = self.pool.namespace, self.pool.name
        obs = [observations.get(key(ns, name, f.variant.name)) for f in self.fleets]
        self.result.series.append(
            CyclePoint(
                t=t,
                desired=tuple(v.desired_replicas for v in plan.variants),
                allocated=tuple(f.current for f in self.fleets),
                ready=tuple(len(f.routable) for f in self.fleets),
                waiting=tuple(o.waiting if o else None for o in obs),
                running=tuple(o.running if o else None for o in obs),
                reasons=tuple(v.reason for v in plan.variants),
            )
        )
        if self.settings.log_plans:
            self.result.plans.append(
                {
                    "cycle": cycle,
                    "at": rfc3339(plan.at),
                    "metrics": _metrics_json(observations),
                    "plan": plan_document(result),
                }
            )

    # -- the end -------------------------------------------------------------------

    def _finish(self) -> None:
        """Run every replica until it holds nothing; requests no replica can take are
        dropped. Then every request is either served or dropped with a reason."""
        for fleet in self.fleets:
            for replica in list(fleet.busy.values()):
                engine = replica.engine
                while (at := engine.next_event_time()) is not None:
                    self._collect(fleet, replica, engine.advance_to(at), True)
            fleet.busy.clear()
            for i in fleet.queue:
                self.result.status[i] = NO_READY
            fleet.queue.clear()
        pending = self.result.status.count(PENDING)
        if pending:
            raise RuntimeError(f"{pending} requests neither served nor dropped: a replay bug")


def replay(
    pool: ModelPool,
    reservations: Sequence[Reservation],
    policy: RoutingPolicy,
    workload: Workload,
    configs: Mapping[str, EngineConfig],
    settings: ReplaySettings,
    progress: Callable[[float], None] | None = None,
) -> ReplayResult:
    return Replay(pool, reservations, policy, workload, configs, settings, progress).run()
