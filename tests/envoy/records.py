"""What the gateway records, as tests read it: audit-log lines and Prometheus samples."""

from __future__ import annotations

import json
import re

from .processes import wait_until


def log_lines(gateway) -> list[dict]:
    if not gateway.access_log.exists():
        return []
    return [json.loads(line) for line in gateway.access_log.read_text().splitlines() if line]


def logged(gateway, request_id: str) -> dict:
    return wait_until(
        lambda: next((e for e in log_lines(gateway) if e["request_id"] == request_id), None),
        5,
        f"the access-log line of {request_id}",
    )


def part(entry: dict, expected: dict) -> dict:
    """`expected`, if `entry` agrees with it; else what `entry` has instead (for the diff)."""
    found = {key: entry.get(key) for key in expected}
    assert found == expected
    return found


def samples(text: str, name: str, **labels: str) -> list[float]:
    """The values of the samples of `name` whose labels include `labels`."""
    values = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match:
            found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            if labels.items() <= found.items():
                values.append(float(match.group(2)))
    return values


def metric(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of `name` whose labels include `labels`; Envoy creates
    some counters on first use, so a missing one is 0."""
    values = samples(text, name, **labels)
    assert len(values) <= 1, f"{len(values)} samples of {name} with {labels}"
    return values[0] if values else 0.0


def total(text: str, name: str, **labels: str) -> float:
    """The sum over the samples of `name` whose labels include `labels` (as `sum by` does)."""
    return sum(samples(text, name, **labels))
