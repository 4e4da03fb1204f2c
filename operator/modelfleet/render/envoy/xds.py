"""Small builders shared by the xDS documents."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

HostPort = tuple[str, int]


def any_of(type_name: str) -> str:
    return f"type.googleapis.com/{type_name}"


def filter_name(short: str) -> str:
    return f"envoy.filters.http.{short}"


def socket_address(address: HostPort) -> dict[str, Any]:
    host, port = address
    return {"socket_address": {"address": host, "port_value": port}}


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def file_config_source(path: str, directory: str) -> dict[str, Any]:
    """A config source read from `path`, re-read whenever a file is moved into `directory`
    (how both our atomic writer and a Kubernetes volume's `..data` swap publish)."""
    return {
        "resource_api_version": "V3",
        "path_config_source": {"path": path, "watched_directory": {"path": directory}},
    }


def short_digest(*parts: str) -> str:
    """The one content hash of the gateway path: 16 hex digits of a sha256 over `parts`."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:16]


def duration(seconds: float) -> str:
    """A protobuf Duration in JSON form ("10s", "0.25s")."""
    text = f"{seconds:.3f}".rstrip("0").rstrip(".")
    return f"{text}s"
