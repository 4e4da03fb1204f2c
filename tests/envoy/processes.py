"""The processes the gateway tests need: echo backends and Envoy, each stopped by its owner."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from modelfleet.apply.validate import envoy_binary
from modelfleet.render.envoy.names import LISTENER_NAME, STATS_LISTENER_NAME

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 15
_base_ids = itertools.count(os.getpid() % 10_000 * 100)


def http_get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def http_send(url: str, method: str, payload: object = None) -> str:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def free_port() -> int:
    """A loopback port nothing listens on now (Envoy would share a taken one silently)."""
    for _ in range(20):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with socket.socket() as check:
            if check.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError("no free loopback port found")


def wait_until(check, timeout: float, what: str, interval: float = 0.02):
    """Poll `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(interval)


class BackendProcess:
    """A module of tests.envoy serving variants on free loopback ports: it prints
    {"variant": port} once listening and exits when its stdin closes."""

    MODULE = ""

    def __init__(self, arguments: list[str]):
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.MODULE, *arguments],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.stop()
            raise RuntimeError(f"{self.MODULE} did not start")
        self.ports: dict[str, int] = json.loads(line)

    def address(self, variant: str) -> tuple[str, int]:
        return ("127.0.0.1", self.ports[variant])

    def addresses(self) -> dict[str, tuple[str, int]]:
        return {variant: self.address(variant) for variant in self.ports}

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()  # the backend exits when its stdin closes
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class SimBackends(BackendProcess):
    """Simulated vLLM replicas (tests.envoy.sim_backends): `{variant: [served names]}`."""

    MODULE = "tests.envoy.sim_backends"

    def __init__(self, served: dict[str, list[str]]):
        super().__init__([f"{variant}={','.join(names)}" for variant, names in served.items()])


class EchoBackends(BackendProcess):
    """`tests.envoy.echo_backend` serving the given variants on free loopback ports."""

    MODULE = "tests.envoy.echo_backend"

    def __init__(self, variants: list[str]):
        super().__init__(variants)

    def hits(self) -> dict[str, int]:
        """Requests each variant served so far (asked directly, not through Envoy)."""
        return {
            variant: json.loads(http_get(f"http://127.0.0.1:{port}/_hits"))["hits"]
            for variant, port in self.ports.items()
        }

    def reset(self) -> None:
        """Every variant back to answering normally, with no hits counted."""
        for port in self.ports.values():
            http_send(f"http://127.0.0.1:{port}/_hits", "DELETE")

    def set_mode(self, variant: str, **mode: float) -> None:
        """E.g. status=503, delay_seconds=2, stream_interval_seconds=0.2, pad_bytes=n
        (echo_backend)."""
        http_send(f"http://127.0.0.1:{self.ports[variant]}/_mode", "PUT", mode)

    def last(self, variant: str) -> dict:
        """The last request the variant got: its body and headers."""
        return json.loads(http_get(f"http://127.0.0.1:{self.ports[variant]}/_last"))


@dataclass
class EnvoyProcess:
    process: subprocess.Popen
    admin_url: str
    url: str
    stats_url: str
    log_path: Path

    @classmethod
    def start(cls, config_dir: Path, work_dir: Path) -> EnvoyProcess:
        """Envoy on `config_dir/envoy.yaml`; admin and listener ports are whatever Envoy got
        for port 0, read back from the admin address file and /listeners."""
        work_dir.mkdir(parents=True, exist_ok=True)
        admin_file = work_dir / "admin-address"
        admin_file.unlink(missing_ok=True)
        log_path = work_dir / "envoy.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            process = subprocess.Popen(
                [
                    envoy_binary(),
                    "-c",
                    str(config_dir / "envoy.yaml"),
                    "--disable-hot-restart",
                    "--base-id",
                    str(next(_base_ids)),
                    "--admin-address-path",
                    str(admin_file),
                    # Access log lines reach the file within 50 ms instead of 10 s.
                    "--file-flush-interval-msec",
                    "50",
                    "--log-level",
                    "warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            admin = wait_until(
                lambda: (
                    process.poll() is None
                    and admin_file.exists()
                    and admin_file.read_text().strip()
                ),
                START_TIMEOUT_SECONDS,
                "Envoy's admin address",
            )
            admin_url = f"http://{admin}"
            listener, stats = (
                wait_until(
                    lambda name=name: _listener_address(admin_url, name),
                    START_TIMEOUT_SECONDS,
                    f"Envoy's {name} listener",
                )
                for name in (LISTENER_NAME, STATS_LISTENER_NAME)
            )
        except TimeoutError as err:
            process.kill()
            process.wait()
            raise RuntimeError(f"{err}; Envoy said:\n{log_path.read_text()[-3000:]}") from None
        return cls(process, admin_url, f"http://{listener}", f"http://{stats}", log_path)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def loaded_versions(self) -> tuple[str | None, str | None]:
        """version_info of the route and cluster files Envoy runs with now."""
        dump = json.loads(http_get(f"{self.admin_url}/config_dump")).get("configs", [])
        by_type = {section["@type"].rsplit(".", 1)[-1]: section for section in dump}
        routes = by_type.get("RoutesConfigDump", {}).get("dynamic_route_configs", [])
        return (
            routes[0].get("version_info") if routes else None,
            by_type.get("ClustersConfigDump", {}).get("version_info"),
        )

    def prometheus(self) -> str:
        return http_get(f"{self.admin_url}/stats/prometheus")

    def admin_stats(self) -> str:
        return http_get(f"{self.admin_url}/stats")


def _listener_address(admin_url: str, name: str) -> str | None:
    listeners = json.loads(http_get(f"{admin_url}/listeners?format=json"))
    for status in listeners.get("listener_statuses", []):
        address = status["local_address"]["socket_address"]
        if status.get("name") == name and address.get("port_value"):
            return f"{address['address']}:{address['port_value']}"
    return None
