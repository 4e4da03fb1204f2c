"""Which URLs the operator will send a query (and credentials) to."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048


def prometheus_url_problem(url: str) -> str | None:
    """Why `url` is no Prometheus base URL the operator should call, or None.

    http and https only (no file:, no other schemes the HTTP stack might follow); no
    credentials in the URL, because the URL shows in the pool's spec and status; no
    link-local host, where cloud metadata services answer with node credentials.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as err:
        return f"{_short(url)} is no URL ({err}): write e.g. https://prometheus.monitoring.svc:9090"
    if parts.scheme not in ("http", "https"):
        return (
            f"{_short(url)}: only http and https URLs are queried, e.g. "
            "https://prometheus.monitoring.svc:9090"
        )
    if not host:
        return f"{_short(url)} has no host: write e.g. https://prometheus.monitoring.svc:9090"
    if parts.username is not None or parts.password is not None:
        return (
            "credentials in the URL would show in the pool's status: put them in a Secret "
            "(spec.metrics.auth.basicAuthSecret or bearerTokenSecret)"
        )
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_link_local:
        return (
            f"{host} is link-local (cloud metadata services answer there), not a "
            "Prometheus: use the Prometheus Service's name or address"
        )
    return None


def redacted(url: str) -> str:
    """The URL as shown in messages: scheme, host, port and path only."""
    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}{parts.path}".rstrip("/")
    except ValueError:
        return "<invalid URL>"


def _short(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")
