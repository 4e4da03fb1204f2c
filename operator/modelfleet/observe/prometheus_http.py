"""Prometheus' HTTP API over aiohttp, as clusters run it.

TLS is verified by default (the system trust store, or the CA bundle given); credentials
are a bearer token, basic auth or extra headers. Queries of one call run concurrently
under one deadline, which is also sent to Prometheus (`timeout=`) so it stops evaluating
what nobody waits for. There are no retries: the operator's next cycle is the retry, and a
hold meanwhile is safe.

Every failure is a `MetricsUnavailable` whose message says what went wrong and where,
and never quotes what the server answered: the message lands in the pool's status, which
more people can read than Prometheus' data.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import ssl
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
import structlog

from modelfleet.api.urls import redacted

log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
_ERROR_TYPE = re.compile(r"^[a-z_]{1,32}$")  # Prometheus' errorType values: bad_data, timeout...
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token


class MetricsUnavailable(Exception):
    """Prometheus could not be asked, or answered something unusable; the reason says which."""


@dataclass(frozen=True)
class PrometheusAuth:
    """How to reach one Prometheus: whom to trust, what credentials to send."""

    ca_pem: str | None = None
    insecure_skip_verify: bool = False
    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        for name, value in self.headers:
            if not _HEADER_NAME.match(name):
                raise MetricsUnavailable(f"header name {name[:40]!r} is not an HTTP token")
            if any(c in value for c in "\r\n\0"):
                raise MetricsUnavailable(f"header {name} has a line break in its value")

    def ssl_context(self, url: str) -> ssl.SSLContext | bool:
        if not url.startswith("https:"):
            return False  # aiohttp: no TLS for http URLs
        if self.insecure_skip_verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            return ssl.create_default_context(cadata=self.ca_pem or None)
        except (ssl.SSLError, ValueError) as err:
            raise MetricsUnavailable(f"the CA bundle is no PEM certificate: {err}") from None

    def request_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token.strip()}"
        elif self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers


class PrometheusClient:
    """`async with PrometheusClient(url, auth) as client: await client.query(promql)`."""

    def __init__(
        self,
        url: str,
        auth: PrometheusAuth | None = None,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ):
        self.url = url.rstrip("/")
        self.shown_url = redacted(url)
        self._auth = auth or PrometheusAuth()
        self._timeout = timeout_seconds
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._auth.ssl_context(self.url)),
            headers={"Accept": "application/json", **self._auth.request_headers()},
            timeout=aiohttp.ClientTimeout(total=self._timeout),
            # The operator's pod environment may carry HTTP(S)_PROXY for the cluster's egress.
            trust_env=True,
        )
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def query(
        self, promql: str, *, name: str | None = None, matrix: bool = False
    ) -> list[dict[str, Any]]:
        """An instant query's result: a vector's samples, or with `matrix` the series of a
        range-vector expression (a subquery such as `(rate(x[1m]))[1h:1m] offset 1d`)."""
        data = await self._call("query", {"query": promql}, name or promql)
        return self._result(data, ("matrix",) if matrix else ("vector", "scalar"), name or promql)

    async def query_range(
        self, promql: str, start: float, end: float, step: float, *, name: str | None = None
    ) -> list[dict[str, Any]]:
        """A range query's result (a matrix's series), times in Unix seconds."""
        params = {"query": promql, "start": repr(start), "end": repr(end), "step": repr(step)}
        data = await self._call("query_range", params, name or promql)
        return self._result(data, ("matrix",), name or promql)

    async def query_all(
        self,
        queries: Mapping[str, str],
        *,
        deadline_seconds: float | None = None,
        matrices: Collection[str] = (),
    ) -> dict[str, list[dict[str, Any]]]:
        """Instant queries by name, all at once (those named in `matrices` answer a range
        vector); the first failure or the deadline ends the call (and cancels the rest)."""
        deadline = deadline_seconds or self._timeout
        try:
            async with asyncio.timeout(deadline):
                try:
                    async with asyncio.TaskGroup() as group:
                        tasks = {
                            name: group.create_task(
                                self.query(promql, name=name, matrix=name in matrices)
                            )
                            for name, promql in queries.items()
                        }
                except* MetricsUnavailable as failures:
                    raise failures.exceptions[0] from None
        except TimeoutError:
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url} did not answer {len(queries)} queries within "
                f"{deadline:g}s"
            ) from None
        return {name: task.result() for name, task in tasks.items()}

    def _result(self, data: Any, result_types: Sequence[str], name: str) -> list[dict[str, Any]]:
        expected = " or ".join(result_types)
        if not isinstance(data, dict) or data.get("resultType") not in result_types:
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url}: unexpected answer to {_shown(name)} "
                f"(expected a {expected})"
            )
        result = data.get("result")
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        if not isinstance(result, list):
            raise MetricsUnavailable(
                f"Prometheus at {self.shown_url}: unexpected answer to {_shown(name)} "
                "(no list of samples)"
            )
        return result

    async def _call(self, endpoint: str, params: Mapping[str, str], name: str) -> Any:
        assert self._session is not None, "use `async with PrometheusClient(...)`"
        where = f"Prometheus at {self.shown_url}"
        # Seconds as a plain number: Prometheus' duration syntax takes no fractions ("2.5s").
        query = {**params, "timeout": f"{self._timeout:g}"}
        try:
            async with self._session.get(f"{self.url}/api/v1/{endpoint}", params=query) as answer:
                status = answer.status
                content_type = answer.content_type
                raw = await answer.read()
        except aiohttp.ClientConnectorCertificateError as err:
            raise MetricsUnavailable(
                f"{where}: its TLS certificate is not trusted "
                f"({_certificate_problem(err)}): set spec.metrics.tls.caSecret to the CA "
                "that signed it"
            ) from None
        except aiohttp.ClientSSLError as err:
            raise MetricsUnavailable(f"{where}: TLS failed ({type(err).__name__})") from None
        except aiohttp.ClientConnectorError as err:
            reason = err.os_error.strerror or type(err.os_error).__name__
            raise MetricsUnavailable(f"{where}: cannot connect ({reason})") from None
        except TimeoutError:
            raise MetricsUnavailable(
                f"{where} did not answer {_shown(name)} within {self._timeout:g}s"
            ) from None
        except aiohttp.ClientError as err:
            raise MetricsUnavailable(f"{where}: {type(err).__name__}") from None
        if status in (401, 403):
            raise MetricsUnavailable(
                f"{where} refused the credentials (HTTP {status}): check "
                "spec.metrics.auth and the Secrets it names"
            )
        body = _json(raw)
        if not isinstance(body, dict) or "status" not in body:
            raise MetricsUnavailable(
                f"{where} answered HTTP {status} with no Prometheus API response "
                f"({content_type or 'no content type'}): is this the Prometheus base URL?"
            )
        if body["status"] != "success":
            error_type = body.get("errorType")
            kind = (
                error_type if isinstance(error_type, str) and _ERROR_TYPE.match(error_type) else ""
            )
            log.warning(
                "prometheus.query_failed",
                url=self.shown_url,
                query=name,
                status=status,
                error_type=kind,
                error=str(body.get("error"))[:300],
            )
            raise MetricsUnavailable(
                f"{where} refused {_shown(name)} (HTTP {status}{', ' + kind if kind else ''})"
            )
        return body.get("data")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 60 else name[:60] + "...")


def _certificate_problem(err: aiohttp.ClientConnectorCertificateError) -> str:
    cause = err.certificate_error
    return getattr(cause, "verify_message", None) or type(cause).__name__
