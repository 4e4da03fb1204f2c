"""The operator's notion of now. In a cluster it is the wall clock; a demo can run the
operator's clock faster (a day in a minute) so that schedules fire while people watch."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def from_wall(self, instant: datetime) -> datetime:
        return instant

    def wall_seconds(self, virtual_seconds: float) -> float:
        return virtual_seconds


@dataclass(frozen=True)
class ScaledClock:
    """Virtual time `start + (wall - origin) * speed`; processes that share start, origin
    and speed share one clock."""

    start: datetime
    speed: float
    origin: float = field(default_factory=time.time)  # wall epoch seconds at `start`

    def now(self) -> datetime:
        return self.from_wall(datetime.now(UTC))

    def from_wall(self, instant: datetime) -> datetime:
        elapsed = instant.timestamp() - self.origin
        return self.start + timedelta(seconds=elapsed * self.speed)

    def wall_seconds(self, virtual_seconds: float) -> float:
        return virtual_seconds / self.speed
