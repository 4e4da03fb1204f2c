"""Which Prometheus a pool's cycle asks, and with which credentials.

A pool names its own Prometheus (`spec.metrics.prometheusUrl`) and credentials
(`spec.metrics.tls`, `spec.metrics.auth`, Secrets in its namespace), or falls back to the
operator's (`--prometheus-*` flags, files mounted from the chart's Secrets). The operator's
own credentials are sent only to the operator's own Prometheus URL: a pool that names
another URL cannot collect them. Secrets and files are read at every cycle, so a rotated
token is used from the next cycle on.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.api.modelpool import MetricsAuth, MetricsTLS, ModelPool, SecretKeyRef
from modelfleet.apply.kube import ApiError, KubeClient, resource_path
from modelfleet.observe.prometheus import PrometheusSource
from modelfleet.observe.prometheus_http import (
    DEFAULT_TIMEOUT_SECONDS,
    MetricsUnavailable,
    PrometheusAuth,
)

# A pool's queries get at most this share of its refresh period.
DEADLINE_SHARE_OF_REFRESH = 0.5


@dataclass(frozen=True)
class OperatorPrometheus:
    """The operator's default Prometheus, from `modelfleet run`'s flags."""

    url: str | None = None
    ca_file: Path | None = None
    token_file: Path | None = None
    basic_auth_dir: Path | None = None  # a mounted kubernetes.io/basic-auth Secret
    headers_dir: Path | None = None  # a mounted Secret: file name = header name
    insecure_skip_verify: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def tls(self) -> PrometheusAuth:
        return PrometheusAuth(
            ca_pem=_read(self.ca_file, "--prometheus-ca-file") if self.ca_file else None,
            insecure_skip_verify=self.insecure_skip_verify,
        )

    def credentials(self) -> PrometheusAuth:
        token = _read(self.token_file, "--prometheus-token-file") if self.token_file else None
        username = password = None
        if self.basic_auth_dir is not None:
            username = _read(self.basic_auth_dir / "username", "--prometheus-basic-auth-dir")
            password = _read(self.basic_auth_dir / "password", "--prometheus-basic-auth-dir")
        headers = list(self.extra_headers)
        if self.headers_dir is not None:
            headers += [
                (path.name, _read(path, "--prometheus-headers-dir").strip())
                for path in sorted(self.headers_dir.iterdir())
                if path.is_file() and not path.name.startswith(".")  # mounts keep ..data links
            ]
        return PrometheusAuth(
            bearer_token=token,
            username=username.strip() if username else None,
            password=password.strip() if password else None,
            headers=tuple(headers),
        )


def _read(path: Path, flag: str) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise MetricsUnavailable(f"{flag}: cannot read {path}: {err.strerror}") from None


class PoolSecrets:
    """Reads the keys of Secrets in one pool's namespace, naming the field on failure."""

    def __init__(self, kube: KubeClient, namespace: str):
        self._kube = kube
        self._namespace = namespace
        self._secrets: dict[str, Mapping[str, str]] = {}

    async def data(self, name: str, field_path: str) -> Mapping[str, str]:
        if name not in self._secrets:
            try:
                secret = await self._kube.get(resource_path("v1", "secrets", self._namespace, name))
            except ApiError as err:
                raise MetricsUnavailable(
                    f"{field_path}: cannot read Secret {self._namespace}/{name} (HTTP {err.status})"
                ) from None
            if secret is None:
                raise MetricsUnavailable(
                    f"{field_path}: Secret {self._namespace}/{name} does not exist"
                )
            self._secrets[name] = _decoded(secret, f"{field_path}: Secret {name}")
        return self._secrets[name]

    async def value(self, ref: SecretKeyRef, field_path: str) -> str:
        data = await self.data(ref.name, field_path)
        if ref.key not in data:
            raise MetricsUnavailable(
                f"{field_path}: Secret {self._namespace}/{ref.name} has no key {ref.key!r}"
            )
        return data[ref.key]


def _decoded(secret: Mapping[str, Any], where: str) -> dict[str, str]:
    values = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            values[key] = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, TypeError):
            raise MetricsUnavailable(f"{where}: key {key!r} is not base64 UTF-8 text") from None
    values.update(secret.get("stringData") or {})
    return values


async def pool_tls(secrets: PoolSecrets, tls: MetricsTLS) -> PrometheusAuth:
    ca = None
    if tls.ca_secret is not None:
        ca = await secrets.value(tls.ca_secret, "spec.metrics.tls.caSecret")
    return PrometheusAuth(ca_pem=ca, insecure_skip_verify=tls.insecure_skip_verify)


async def pool_credentials(secrets: PoolSecrets, auth: MetricsAuth) -> PrometheusAuth:
    token = username = password = None
    headers: tuple[tuple[str, str], ...] = ()
    if auth.bearer_token_secret is not None:
        token = await secrets.value(auth.bearer_token_secret, "spec.metrics.auth.bearerTokenSecret")
    if auth.basic_auth_secret is not None:
        where = "spec.metrics.auth.basicAuthSecret"
        username = await secrets.value(
            SecretKeyRef(name=auth.basic_auth_secret, key="username"), where
        )
        password = await secrets.value(
            SecretKeyRef(name=auth.basic_auth_secret, key="password"), where
        )
    if auth.headers_secret is not None:
        data = await secrets.data(auth.headers_secret, "spec.metrics.auth.headersSecret")
        headers = tuple((name, value.strip()) for name, value in sorted(data.items()))
    try:
        return PrometheusAuth(
            bearer_token=token, username=username, password=password, headers=headers
        )
    except MetricsUnavailable as err:
        raise MetricsUnavailable(f"spec.metrics.auth.headersSecret: {err}") from None


def _is_set(model: MetricsTLS | MetricsAuth) -> bool:
    return bool(model.model_dump(exclude_defaults=True))


async def resolve(kube: KubeClient, pool: ModelPool, default: OperatorPrometheus) -> PrometheusAuth:
    """The TLS settings and credentials for `pool`'s Prometheus (see the module's doc)."""
    metrics = pool.spec.metrics
    own_url = metrics.prometheus_url is not None and metrics.prometheus_url != default.url
    secrets = PoolSecrets(kube, pool.namespace)
    if _is_set(metrics.tls):
        tls = await pool_tls(secrets, metrics.tls)
    else:
        tls = PrometheusAuth() if own_url else default.tls()
    if _is_set(metrics.auth):
        credentials = await pool_credentials(secrets, metrics.auth)
    else:
        credentials = PrometheusAuth() if own_url else default.credentials()
    return PrometheusAuth(
        ca_pem=tls.ca_pem,
        insecure_skip_verify=tls.insecure_skip_verify,
        bearer_token=credentials.bearer_token,
        username=credentials.username,
        password=credentials.password,
        headers=credentials.headers,
    )


def sources_for(
    kube: KubeClient, default: OperatorPrometheus
) -> Callable[[ModelPool], PrometheusSource | None]:
    """`metrics_for(pool)` for the controller: None when no Prometheus is configured."""

    def metrics_for(pool: ModelPool) -> PrometheusSource | None:
        url = pool.spec.metrics.prometheus_url or default.url
        if not url:
            return None
        refresh = pool.spec.metrics.refresh_seconds
        return PrometheusSource(
            url,
            lambda: resolve(kube, pool, default),
            timeout_seconds=default.timeout_seconds,
            deadline_seconds=max(
                1.0, min(default.timeout_seconds, refresh * DEADLINE_SHARE_OF_REFRESH)
            ),
        )

    return metrics_for
