"""A real Prometheus (Debian's package) scraping the local cluster's replicas.

It scrapes the targets of a file_sd file (the node agent keeps it up to date) every
second. Prometheus takes about 5 s after start to scrape new targets for the first time
(its target manager updates every 5 s), so start it once and `wait_for_first_sample()`.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from modelfleet_testbed.local.processes import (
    ManagedProcess,
    StartsAndStops,
    find_binary,
    free_port,
)

INSTALL_HINT = (
    "install Debian's prometheus package: apt-get install prometheus "
    "(then run no system service; the local cluster starts its own)"
)


def scrape_config(
    file_sd_path: Path, scrape_interval: float, extra_scrape_configs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    interval = f"{int(scrape_interval * 1000)}ms"
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "scrape_configs": [
            {
                "job_name": "replicas",
                "file_sd_configs": [{"files": [str(file_sd_path)], "refresh_interval": "5s"}],
            },
            *extra_scrape_configs,
        ],
    }


class Prometheus(StartsAndStops):
    """`with Prometheus(file_sd_path) as prometheus:` (or `async with`) on a free port."""

    def __init__(
        self,
        file_sd_path: Path,
        *,
        scrape_interval: float = 1.0,
        extra_scrape_configs: Sequence[Mapping[str, Any]] = (),
        workdir: Path | None = None,
        binary: str | None = None,
    ):
        self.file_sd_path = Path(file_sd_path)
        self.scrape_interval = scrape_interval
        self.extra_scrape_configs = list(extra_scrape_configs)
        self._workdir = workdir
        self._own_workdir = False
        self._binary = binary
        self._process: ManagedProcess | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        fallback = () if self._binary else (Path("/usr/bin/prometheus"),)
        binary = find_binary(self._binary or "prometheus", INSTALL_HINT, *fallback)
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="modelfleet-prometheus-"))
            self._own_workdir = True
        if not self.file_sd_path.exists():
            self.file_sd_path.parent.mkdir(parents=True, exist_ok=True)
            self.file_sd_path.write_text("[]")
        config_path = self._workdir / "prometheus.yml"
        config = scrape_config(self.file_sd_path, self.scrape_interval, self.extra_scrape_configs)
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = self.port or free_port()  # a restart keeps the URL clients were given
        self._process = ManagedProcess(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self._workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            self._workdir / "prometheus.log",
        )
        self._process.start()
        self._process.wait_until(self._answers_ready, timeout, "Prometheus")

    def _answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1.0) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._own_workdir = False

    def kill(self) -> None:
        """Stop at once (a crash, for fault tests); `start()` brings a fresh one back."""
        if self._process is not None:
            self._process.kill()
            self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running()

    def query(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        """An instant query's result vector (blocking; use `aquery` inside an event loop)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus query {promql!r} failed: {body}")
        return list(body["data"]["result"])

    async def aquery(self, promql: str, timeout: float = 5.0) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, promql, timeout)

    async def wait_for_first_sample(
        self, promql: str = "up == 1", timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until `promql` returns a sample (first scrapes take ~5 s after start)."""
        deadline = time.monotonic() + timeout
        while True:
            result = await self.aquery(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"no sample for {promql!r} within {timeout:.0f} s")
            await asyncio.sleep(0.25)
