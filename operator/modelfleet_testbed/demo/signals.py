"""SIGINT and SIGTERM end the demo the same way: through its clean-up, which no second
signal interrupts.

The handlers are set explicitly: a demo started with `&` from a non-interactive shell
inherits SIGINT ignored, and Python then leaves it ignored.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DemoStopped(KeyboardInterrupt):
    """The demo was asked to stop by a signal; `exit_code` is the shell's 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """Install with `with StopSignals() as signals:`; the previous handlers come back."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}
        self._deferred = False

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.received is None
        self.received = self.received or signum
        if first and not self._deferred:
            raise DemoStopped(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals during the block are noted, not raised (the clean-up must finish)."""
        self._deferred = True
        try:
            yield
        finally:
            self._deferred = False

    def wait(self) -> None:
        """Sleep until a stop signal arrives (it raises DemoStopped)."""
        while True:
            time.sleep(1)
