"""`modelfleet demo`: bring the local fleet up, play a compressed weekday through the
gateway, watch the operator react, report, and leave nothing behind."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live
from rich.table import Table

from modelfleet.controller.clock import ScaledClock
from modelfleet_testbed.demo.access import Access, access_lines, curl_command
from modelfleet_testbed.demo.day import ABUSIVE_KEY, PHASES, phase_at
from modelfleet_testbed.demo.loadgen import LoadGenerator
from modelfleet_testbed.demo.monitor import (
    Sample,
    Timeline,
    budget_events,
    cost_by,
    operator_costs,
    read_pool_state,
    scale_events,
    tokens_by_tenant,
)
from modelfleet_testbed.demo.report import print_summary, summarize, write_outputs
from modelfleet_testbed.demo.scenario import (
    ABUSIVE_REQUESTS_PER_MINUTE,
    KEYS,
    NAMESPACE,
    POLICY,
    POOL,
    SAMPLES,
    api_key_secret,
    extra_reservations,
    policy_patch,
    pool_patch,
    wall_clock_pool_patch,
)
from modelfleet_testbed.demo.signals import DemoStopped, StopSignals
from modelfleet_testbed.local.fleet import LocalFleet, eventually
from modelfleet_testbed.local.processes import free_port

TIMEZONE = "Asia/Shanghai"
SETUP_SECONDS = 9  # wall seconds from start to the day's first request
SAMPLE_SECONDS = 0.25
NIGHT_AFTER_HOURS = 3


def next_weekday_midnight(now: datetime) -> datetime:
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(TIMEZONE))
    day = local.date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(TIMEZONE))


class Demo:
    def __init__(self, duration: float, out: Path, console: Console):
        self.duration = duration
        self.out = out
        self.console = console
        self.speed = 86400 / duration
        self.clock = ScaledClock(
            next_weekday_midnight(datetime.now().astimezone()),
            self.speed,
            origin=time.time() + SETUP_SECONDS,
        )
        # The operator watches every namespace, so a user's own pools are handled too.
        self.fleet = LocalFleet(max_num_seqs=16, speedup=4.0, clock=self.clock, namespaces=None)
        self.timeline = Timeline()
        self.listen = free_port()
        self.service = ""  # the gateway's Service URL, once it runs
        self.load: LoadGenerator | None = None
        self.began = time.monotonic()
        self.seconds_to_first_request: float | None = None
        self._budget_states: dict[str, str] = {}

    def hour(self) -> float:
        return (self.clock.now() - self.clock.start).total_seconds() / 3600

    def say(self, text: str) -> None:
        # No wrapping: the lines carry paths and commands to copy whole.
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {text}", soft_wrap=True)

    # -- bring-up ------------------------------------------------------------------------

    def start(self) -> None:
        self.say(clock_statement(self.speed, self.clock.start, self.duration))
        self.say("starting the local cluster, node agent, Prometheus and the operator")
        self.fleet.start()
        self.say(f"kubectl: export KUBECONFIG={self.fleet.cluster.kubeconfig_path}")
        self.say(f"kubectl apply -f {SAMPLES}")
        self.fleet.kubectl("apply", "-f", str(SAMPLES))
        pool = self.fleet.get("modelpool", POOL, NAMESPACE)
        self.sample_metrics = dict(pool["spec"].get("metrics") or {})
        self.fleet.kubectl(
            "patch",
            "modelpool",
            POOL,
            "-n",
            NAMESPACE,
            "--type",
            "merge",
            "-p",
            pool_patch(pool, self.fleet.prometheus.url, self.speed),
        )
        # The listener port before the keys: the operator runs the gateway only once it
        # has keys, and then on this free port, never on the sample's.
        self.fleet.kubectl(
            "patch",
            "routingpolicy",
            POLICY,
            "-n",
            NAMESPACE,
            "--type",
            "merge",
            "-p",
            policy_patch(self.listen),
        )
        policy = self.fleet.get("routingpolicy", POLICY, NAMESPACE)
        secret = api_key_secret(policy["spec"]["gateway"]["apiKeySecret"])
        self.fleet.kubectl(
            "apply", "-f", "-", stdin=yaml.safe_dump_all([secret, *extra_reservations()])
        )
        # The operator runs the policy's gateway: a Deployment whose pod (the gateway-sync
        # sidecar and Envoy) the node agent starts for real.
        self.service = self.fleet.gateway_url(POLICY, NAMESPACE)
        eventually(
            lambda: self.fleet.condition("routingpolicy", POLICY, "Ready").get("status") == "True",
            30,
            "the gateway serving",
        )
        self.say(
            f"gateway on http://127.0.0.1:{self.listen}, its Service {self.service} "
            "(the operator's gateway pod: gateway-sync and Envoy, real binaries)"
        )

    # -- the day -------------------------------------------------------------------------

    def sample(self, started: float) -> Sample:
        store = self.fleet.cluster.store
        variants, routes, gpus, budget, budgets = self.fleet.background.run(
            _on_loop(read_pool_state, store, NAMESPACE, POOL, POLICY)
        )
        hour = self.hour()
        recent = [o for o in self.load.outcomes if o.sent_at >= time.monotonic() - started - 2]
        costs = cost_by(operator_costs(self.metrics_url), "mode")
        return Sample(
            time.monotonic() - started,
            hour,
            phase_at(hour).name,
            variants,
            routes,
            gpus,
            budget,
            costs,
            len(recent) / 2,
            budgets,
        )

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.fleet.operator_metrics_port}/metrics"

    async def play(self, ui: bool) -> None:
        while self.hour() < 0:
            await asyncio.sleep(0.05)
        self.load = LoadGenerator(f"http://127.0.0.1:{self.listen}", self.hour)
        started = time.monotonic()
        self.seconds_to_first_request = round(started - self.began, 2)
        self.say(f"the day begins: first requests {self.seconds_to_first_request} s after start")
        load = asyncio.create_task(self.load.run(until=lambda: self.hour() >= 24))
        live = Live(console=self.console, refresh_per_second=4) if ui else None
        if live:
            live.start()
        last_phase = ""
        try:
            while not load.done():
                sample = await asyncio.to_thread(self.sample, started)
                self.timeline.samples.append(sample)
                if live:
                    live.update(view(sample, self.load))
                elif sample.phase != last_phase:
                    self.say(_line(sample))
                if not live:
                    self._say_budget_changes(sample)
                last_phase = sample.phase
                await asyncio.sleep(SAMPLE_SECONDS)
            await load
        finally:
            if live:
                live.stop()
        # The next night's first hours: the evening's step-limited scale-downs land, the
        # day budgets reset at midnight.
        while self.hour() < 24 + NIGHT_AFTER_HOURS:
            sample = await asyncio.to_thread(self.sample, started)
            self.timeline.samples.append(sample)
            if not ui:
                self._say_budget_changes(sample)
            await asyncio.sleep(SAMPLE_SECONDS)

    def _say_budget_changes(self, sample: Sample) -> None:
        for name, budget in sorted(sample.budgets.items()):
            if self._budget_states.get(name) not in (None, budget["state"]):
                spend = budget["spend"] or 0
                self.say(
                    f"{sample.hour:5.1f}h budget {name}: {budget['state']} (spent {spend:.3f} "
                    f"of {budget['amount']:g} {budget['currency']}, action {budget['action']})"
                )
            self._budget_states[name] = budget["state"]

    def report(self) -> dict[str, Any]:
        store = self.fleet.cluster.store
        events = self.fleet.background.run(_on_loop(scale_events, store, NAMESPACE))
        budgets = self.fleet.background.run(_on_loop(budget_events, store, NAMESPACE))
        settings = {
            "duration_seconds": self.duration,
            "clock_speed": self.speed,
            "day": self.clock.start.isoformat(),
            "gateway": f"http://127.0.0.1:{self.listen}",
            "seconds_to_first_request": self.seconds_to_first_request,
            "workdir": str(self.fleet.workdir),
            "phases": [p.__dict__ for p in PHASES],
            "trace": "Azure LLM inference trace 2023 (conversation), CC-BY 4.0, Patel et al., "
            "Splitwise, ISCA 2024: prompt and output lengths",
        }
        summary = summarize(
            self.load.outcomes,
            self.timeline,
            operator_costs(self.metrics_url),
            events,
            settings,
            tokens=self.tokens_by_tenant(),
            budget_events=budgets,
        )
        paths = write_outputs(summary, self.out)
        print_summary(summary, self.console)
        self.say("wrote " + ", ".join(str(p) for p in paths))
        return summary

    def tokens_by_tenant(self) -> dict[str, dict[str, float]]:
        """What the gateway counted per tenant (its envoy_modelfleet_* counters, as
        Prometheus scraped them): what billing and budgets charge."""
        results = {
            name: self.fleet.prometheus.query(f"sum by (tenant) (envoy_modelfleet_{name})")
            for name in ("requests", "prompt_tokens", "completion_tokens")
        }
        return tokens_by_tenant(results)

    def access(self) -> Access:
        return Access(
            kubeconfig=str(self.fleet.cluster.kubeconfig_path),
            api_server=self.fleet.cluster.url,
            prometheus=self.fleet.prometheus.url,
            gateway=f"http://127.0.0.1:{self.listen}",
            gateway_service=self.service,
            policy=f"{NAMESPACE}/{POLICY}",
            model=POOL,
            keys=KEYS,
            limited_key=ABUSIVE_KEY,
            limited_per_minute=ABUSIVE_REQUESTS_PER_MINUTE,
        )

    def curl_hint(self) -> str:
        return curl_command(self.access())

    def use_wall_clock(self) -> None:
        """After the day: the fleet on real time, the demo pool's settings for it."""
        self.say("the day is over: the operator restarts on the wall clock")
        self.fleet.use_wall_clock()
        self.fleet.kubectl(
            "patch",
            "modelpool",
            POOL,
            "-n",
            NAMESPACE,
            "--type",
            "merge",
            "-p",
            wall_clock_pool_patch(self.sample_metrics),
        )

    def stop(self) -> None:
        self.fleet.stop()


def clock_statement(speed: float, day_start: datetime, duration: float) -> str:
    return (
        f"the operator's clock runs {speed:.0f}x: one weekday from "
        f"{day_start.isoformat()} ({TIMEZONE}) in {duration:.0f} s; with --keep-running the "
        "fleet then runs on the wall clock"
    )


async def _on_loop(function, *args):
    return function(*args)


def _line(sample: Sample) -> str:
    replicas = " ".join(f"{n}={v['desired']}/{v['ready']}" for n, v in sample.variants.items())
    return (
        f"{sample.hour:5.1f}h {sample.phase:<26} {sample.requests_per_second:5.1f} req/s "
        f"GPUs {sample.gpus_planned}/{sample.gpu_budget} {replicas}"
    )


def view(sample: Sample, load: LoadGenerator) -> Table:
    hour = int(sample.hour) % 24
    minute = int((sample.hour % 1) * 60)
    table = Table(
        title=f"modelfleet demo - {hour:02d}:{minute:02d} {sample.phase} - "
        f"{sample.requests_per_second:.0f} req/s, {load.in_flight} in flight - "
        f"GPUs {sample.gpus_planned}/{sample.gpu_budget}",
        title_justify="left",
    )
    for column in ("variant", "desired", "ready", "reason", "waiting", "p99 s"):
        table.add_column(column)
    for name, variant in sample.variants.items():
        p99 = variant["p99"]
        table.add_row(
            name,
            str(variant["desired"]),
            str(variant["ready"]),
            variant["reason"],
            f"{variant['waiting']:.0f}",
            "-" if p99 is None else f"{p99:.1f}",
        )
    weights = "; ".join(
        f"{route}: " + ", ".join(f"{v} {w}" for v, w in backends.items())
        for route, backends in sample.routes.items()
        if not route.startswith("by-model")
    )
    cost = ", ".join(f"{mode} {amount:.0f}" for mode, amount in sorted(sample.cost_by_mode.items()))
    budgets = ", ".join(
        f"{name} {b['state']} {b['spend'] or 0:.3f}/{b['amount']:g}"
        for name, b in sorted(sample.budgets.items())
    )
    table.caption = f"routes: {weights}\ncost so far (USD): {cost}\nbudgets (USD): {budgets}"
    return table


def run_demo(duration: float, ui: bool, keep_running: bool, out: Path) -> dict[str, Any]:
    """The demo; SIGINT and SIGTERM stop it through the same clean-up (DemoStopped)."""
    console = Console()
    with StopSignals() as signals:
        demo = Demo(duration, out, console)
        try:
            demo.start()
            asyncio.run(demo.play(ui))
            summary = demo.report()
            if keep_running:
                demo.use_wall_clock()
                # Plain print: a terminal-wide wrap would break lines meant for copy and paste.
                print("\n" + "\n".join(access_lines(demo.access())), flush=True)
                signals.wait()
        finally:
            with signals.deferred():
                demo.stop()
        if signals.received is not None:
            raise DemoStopped(signals.received)
        return summary
