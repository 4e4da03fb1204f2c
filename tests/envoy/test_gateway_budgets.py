"""Budgets at the gateway, as a user drives them: `modelfleet render envoy` with the spend a
`--metrics` file says, then real Envoy traffic. A key over a spent `block` budget gets
OpenAI's 429 insufficient_quota (the rate limiter's 429 keeps its own body), one over a
`degrade` budget only the route's cheaper backends; other tenants are unaffected; a flip
is a routes swap."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from .processes import EchoBackends, EnvoyProcess, free_port, wait_until
from .records import logged, metric
from .traffic import CHAT, MESSAGES, bearer, call

pytestmark = pytest.mark.envoy

HERE = Path(__file__).parent
MODELFLEET = Path(sys.executable).parent / "modelfleet"
VARIANTS = ["big", "mid", "small"]
APP, LIMITED, OTHER = (
    "sk-test-app-5f2c9d1e7a",
    "sk-test-limited-1d7a2c9e5b",
    "sk-test-other-8b3e6f0a4c",
)
PRICES = {
    "big": {"perRequest": 0.02, "perThousandCompletionTokens": 0.06},
    "mid": {"perRequest": 0.01, "perThousandCompletionTokens": 0.02},
    "small": {"perRequest": 0.001},
}
BUDGETS = [
    {"tenant": "acme", "period": "day", "amount": 1.0, "action": "block"},
    {"tenant": "globex", "period": "day", "amount": 1.0, "action": "degrade"},
]
CALLS = "envoy_modelfleet_calls"


def resources() -> list[dict]:
    pool, policy = yaml.safe_load_all((HERE / "fleet.yaml").read_text())
    for variant in pool["spec"]["variants"]:
        variant["onDemandPrice"] = PRICES[variant["name"]]
    policy["spec"]["budgets"] = BUDGETS
    policy["spec"]["gateway"]["rateLimit"]["perKey"] = [
        {"keyId": "limited", "requestsPerMinute": 2}
    ]
    return [pool, policy]


def spent(**requests_by_tenant: float) -> dict:
    """A --metrics file: what each tenant used on `big` so far today."""
    rows = [
        {"tenant": tenant, "keyId": key, "variant": "big", "requests": n}
        for tenant, key, n in (
            ("acme", "app", requests_by_tenant.get("acme", 0)),
            ("globex", "other", requests_by_tenant.get("globex", 0)),
        )
        if n
    ]
    return {"budgetUsage": {"test/gw": {"day": rows}}}


class Gateway:
    """The fleet rendered by the CLI into one directory a live Envoy watches."""

    def __init__(self, tmp: Path, echo: EchoBackends):
        self.tmp = tmp
        self.out = tmp / "gw"
        self.echo = echo
        self.admin = free_port()
        (tmp / "fleet.yaml").write_text(yaml.safe_dump_all(resources()))
        self.envoy: EnvoyProcess | None = None

    @property
    def access_log(self) -> Path:
        return self.tmp / "access.log"

    def render(self, metrics: dict) -> subprocess.CompletedProcess[str]:
        (self.tmp / "metrics.yaml").write_text(yaml.safe_dump(metrics))
        argv = [
            str(MODELFLEET),
            "render",
            "envoy",
            "-f",
            str(self.tmp / "fleet.yaml"),
            "--metrics",
            str(self.tmp / "metrics.yaml"),
            "--api-keys",
            str(HERE / "keys.yaml"),
            *(
                a
                for v, port in self.echo.ports.items()
                for a in ("--backend", f"{v}=127.0.0.1:{port}")
            ),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            f"127.0.0.1:{self.admin}",
            "--stats-port",
            "0",
            "--access-log",
            str(self.access_log),
            "--out",
            str(self.out),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        if self.envoy is None:
            self.envoy = EnvoyProcess.start(self.out, self.tmp / "envoy")
        else:
            version = yaml.safe_load((self.out / "rds.yaml").read_text())["version_info"]
            wait_until(lambda: self.envoy.loaded_versions()[0] == version, 5, "the new routes")
        return done


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    echo = EchoBackends(VARIANTS)
    gateway = Gateway(tmp_path_factory.mktemp("budgets"), echo)
    try:
        yield gateway
    finally:
        if gateway.envoy is not None:
            gateway.envoy.stop()
        echo.stop()


def chat(gateway: Gateway, key: str, task_type: str = "chat"):
    body = {"task_type": task_type, "messages": MESSAGES}
    return call(gateway.envoy.url, CHAT, body, bearer(key))


def test_a_key_over_a_block_budget_gets_insufficient_quota_and_others_are_served(gateway):
    gateway.render(spent(acme=60))  # 60 x 0.02 = 1.20 of acme's 1.00
    for key in (APP, LIMITED):  # both of acme's keys: the budget is the tenant's
        reply = chat(gateway, key)
        assert reply.status == 429, reply.text
        assert reply.headers["content-type"] == "application/json"
        error = reply.json()["error"]
        assert error["type"] == error["code"] == "insufficient_quota"
        assert error["param"] is None
        assert error["message"].startswith("You exceeded your current quota")
        assert "day budget of tenant acme" in error["message"]
    other = chat(gateway, OTHER)
    assert other.status == 200
    assert logged(gateway, reply.headers["x-request-id"])["budget"] == "block"
    assert logged(gateway, other.headers["x-request-id"])["budget"] is None
    assert call(gateway.envoy.url, CHAT, {"messages": MESSAGES}, bearer("sk-nope")).status == 401
    # Refused calls are counted per key (an unknown key as key_id ""): what the alert on a
    # key's calls per hour reads.
    stats = gateway.envoy.prometheus()
    assert metric(stats, CALLS, key_id="", tenant="", response_code="401") >= 1
    assert metric(stats, CALLS, key_id="app", tenant="acme", response_code="429") >= 1
    assert metric(stats, CALLS, key_id="other", tenant="globex", response_code="200") >= 1


def test_the_rate_limiter_keeps_its_own_429(gateway):
    gateway.render(spent())
    replies = [chat(gateway, LIMITED) for _ in range(4)]
    limited = [r for r in replies if r.status == 429]
    assert limited and all(r.json()["error"]["code"] == "rate_limit_exceeded" for r in limited)


def test_a_flip_is_a_routes_swap(gateway):
    blocked = gateway.render(spent(acme=60))
    before = {p.name: p.read_text() for p in gateway.out.glob("*.yaml")}
    assert chat(gateway, APP).status == 429
    unblocked = gateway.render(spent(acme=10))  # 0.20 of 1.00: within the budget again
    after = {p.name: p.read_text() for p in gateway.out.glob("*.yaml")}
    assert blocked.returncode == unblocked.returncode == 0
    assert {name for name in after if after[name] != before[name]} == {"rds.yaml"}
    assert chat(gateway, APP).status == 200


def test_a_key_over_a_degrade_budget_uses_only_the_cheaper_backends(gateway):
    gateway.render(spent(globex=60))
    gateway.echo.reset()
    served = Counter(chat(gateway, OTHER).variant for _ in range(40))
    # The split route is big 70, mid 20, small 10: globex gets mid and small (2:1).
    assert served["big"] == 0 and served["mid"] > 0 and served["small"] > 0, served
    assert sum(served.values()) == 40
    # acme, within its budget, still gets the whole route.
    acme = Counter(chat(gateway, APP).variant for _ in range(40))
    assert acme["big"] > 0, acme
    reply = chat(gateway, OTHER)
    entry = logged(gateway, reply.headers["x-request-id"])
    assert entry["budget"] == "degrade" and entry["route"] == "split-degraded-budget"
    # A route with no cheaper backend (code: small only) keeps serving the key.
    assert chat(gateway, OTHER, "code").variant == "small"


def test_a_client_cannot_mark_itself_or_others(gateway):
    gateway.render(spent())
    gateway.echo.reset()
    body = {"task_type": "chat", "messages": MESSAGES}
    headers = {**bearer(APP), "x-modelfleet-budget": "degrade"}
    served = Counter(call(gateway.envoy.url, CHAT, body, headers).variant for _ in range(30))
    assert served["big"] > 0, served  # the mark was dropped: the whole route
    assert "x-modelfleet-budget" not in gateway.echo.last("big")["headers"]
