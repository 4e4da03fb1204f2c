"""Pure: the demo's compressed day — what traffic each hour of a weekday brings."""

from __future__ import annotations

from dataclasses import dataclass

# Shares of the sample RoutingPolicy's task types in ordinary traffic.
TASK_MIX = {
    "chat": 0.35,
    "summary": 0.15,
    "legal": 0.15,
    "medical": 0.05,
    "code-simple": 0.15,
    "code-complex": 0.15,
}
# Who sends ordinary traffic, by API key id (each key belongs to one tenant).
KEY_MIX = {"fin-risk-app": 0.4, "support-app": 0.3, "research-app": 0.3}
ABUSIVE_KEY = "scraper"
LOW_PRIORITY = "low"
BURST_OUTPUT_TOKENS = 300  # long answers: the burst must build a backlog on the 235B


@dataclass(frozen=True)
class Phase:
    name: str
    start_hour: float
    end_hour: float
    requests_per_second: float  # ordinary traffic, in wall seconds
    low_priority_burst: float = 0.0  # extra low-priority legal requests per wall second
    abusive: float = 0.0  # requests per wall second from the abusive key


PHASES = (
    Phase("night", 0, 6, 3.0),
    Phase("morning ramp", 6, 10, 8.0),
    Phase("daytime peak", 10, 12, 14.0),
    # The burst outlasts the 235B's backlog building up and being seen (replicas load for
    # a quarter of an hour, the queue metric trails the queue), so that the degrade route
    # it trips carries low-priority requests on a fast machine as on a slow one.
    Phase("peak + low-priority burst", 12, 17, 14.0, low_priority_burst=60.0),
    Phase("afternoon + abusive key", 17, 18, 10.0, abusive=25.0),
    Phase("afternoon", 18, 19, 10.0),
    Phase("evening", 19, 22, 6.0),
    Phase("night", 22, 24, 3.0),
)


def phase_at(hour: float) -> Phase:
    for phase in PHASES:
        if phase.start_hour <= hour % 24 < phase.end_hour:
            return phase
    return PHASES[-1]
