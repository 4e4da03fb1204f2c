"""Child processes of the local cluster (Prometheus, Envoy): find, start, stop, read logs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self


class MissingBinary(RuntimeError):
    """A binary the local cluster runs is not installed; the message says how to install it."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (for binaries that need one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, install_hint: str, *candidates: Path) -> str:
    """`name` from the virtualenv's bin, then PATH, then the given candidates."""
    beside_python = Path(sys.executable).parent / name
    for path in (beside_python, shutil.which(name), *candidates):
        if path and os.access(path, os.X_OK):
            return str(path)
    raise MissingBinary(f"{name} is not installed: {install_hint}")


class ManagedProcess:
    """One child process with its output in a log file; stopped with SIGTERM, then SIGKILL.

    It runs in a session of its own: a Ctrl-C in the terminal reaches only the parent,
    which stops its children in its own order (the operator before Prometheus...)."""

    def __init__(self, argv: Sequence[str], log_path: Path, *, cwd: Path | None = None):
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.cwd,
            )

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready()` until it holds; fail with the log's tail if the process dies or stalls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"{what} exited during start-up:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{what} was not ready within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def kill(self) -> None:
        """Stop at once, the way a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(5.0)


def children_mentioning(text: str) -> list[int]:
    """This process's children whose command line contains `text` (a fleet's workdir)."""
    found = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = stat.rsplit(")", 1)[1].split()[1]  # the field after the state
        if parent == me and text in argv:
            found.append(int(entry))
    return found


def end_children_mentioning(text: str, grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, the children `children_mentioning(text)` finds: what an
    interrupted start-up may have left between starting a process and recording it."""
    pids = children_mentioning(text)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and _reap(pid) is None:
            time.sleep(0.05)
        if _reap(pid) is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
    return pids


def _reap(pid: int) -> int | None:
    """The child's exit status once it has ended (and is reaped), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return 0  # already reaped
    return status if done else None


class StartsAndStops:
    """`with` and `async with` for a server object with blocking start() and stop()
    (the class that mixes this in defines both)."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)
