"""Changing a running gateway: new weights under load lose no request and apply within a
second; a render Envoy would refuse is never written."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from modelfleet.apply.files import publish_gateway
from modelfleet.apply.validate import InvalidEnvoyConfig, validate_with_envoy

from .traffic import CHAT, MESSAGES, bearer, call, steady_load

pytestmark = pytest.mark.envoy

FLIP = {"task_type": "flip", "messages": MESSAGES}
CONNECTIONS = 50
SECONDS_BEFORE_SWAP = 1.0
# Long enough that a slow swap on a busy machine still leaves a second of settled load.
SECONDS_AFTER_SWAP = 3.0
TAKES_EFFECT_WITHIN = 1.0


def test_weight_change_under_load_drops_nothing_and_applies_within_a_second(live_gateway, fleet):
    live_gateway.apply(fleet.with_weights("flip", {"mid": 100, "small": 0}))
    flipped = live_gateway.render(fleet.with_weights("flip", {"mid": 0, "small": 100}))
    validate_with_envoy(flipped)  # ahead of time, so the swap below is just the renames
    swapped_at: list[float] = []

    async def swap() -> None:
        await asyncio.sleep(SECONDS_BEFORE_SWAP)
        started = time.monotonic()
        changed = await asyncio.get_running_loop().run_in_executor(
            None, live_gateway.publish_validated, flipped
        )
        assert [p.name for p in changed] == ["rds.yaml"]
        swapped_at.extend([started, time.monotonic()])

    outcomes = asyncio.run(
        steady_load(
            live_gateway.url,
            FLIP,
            bearer(fleet.key("app").key),
            CONNECTIONS,
            SECONDS_BEFORE_SWAP + SECONDS_AFTER_SWAP,
            during=swap(),
        )
    )
    swap_started, swap_done = swapped_at

    assert Counter(o.status for o in outcomes) == {200: len(outcomes)}, "failed requests"
    before = [o for o in outcomes if o.started < swap_started]
    settled = [o for o in outcomes if o.started > swap_done + TAKES_EFFECT_WITHIN]
    assert len(before) > 100 and len(settled) > 100, "too little load to judge"
    assert {o.variant for o in before} == {"mid"}
    assert {o.variant for o in settled} == {"small"}
    last_old = max(o.started for o in outcomes if o.variant == "mid")
    print(
        f"{len(outcomes)} requests; old weights last used {last_old - swap_done:+.3f} s "
        "after the swap"
    )


def test_invalid_render_is_refused_and_the_running_files_stay(live_gateway, fleet):
    live_gateway.apply(fleet.with_weights("flip", {"mid": 100, "small": 0}))
    on_disk = {p.name: p.read_bytes() for p in live_gateway.config_dir.iterdir()}
    broken = live_gateway.render(fleet.with_weights("flip", {"mid": 0, "small": 100}))
    broken["rds.yaml"] = broken["rds.yaml"].replace("name: small", "name: no-such-variant")

    with pytest.raises(InvalidEnvoyConfig, match="no-such-variant"):
        publish_gateway(live_gateway.config_dir, broken)

    assert {p.name: p.read_bytes() for p in live_gateway.config_dir.iterdir()} == on_disk
    reply = call(live_gateway.url, CHAT, FLIP, bearer(fleet.key("app").key))
    assert reply.variant == "mid"


def test_envoys_reason_never_carries_an_api_key(live_gateway, fleet):
    files = live_gateway.render()
    secret = fleet.key("app").key
    # A key Envoy refuses to parse would be quoted in its complaint.
    files["rds.yaml"] = files["rds.yaml"].replace(f"key: {secret}", f"key: [{secret}]")
    with pytest.raises(InvalidEnvoyConfig) as refused:
        validate_with_envoy(files)
    assert secret not in str(refused.value)
