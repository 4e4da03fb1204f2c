"""Logging in to the API server with the `kubernetes` package's config loaders.

kopf's own kubeconfig login knows tokens, client certificates and basic auth only; real
clusters' kubeconfigs (EKS, GKE, AKS, OIDC) run an exec credential plugin. The kubernetes
package runs those plugins, so the operator loads its configuration with it and hands
kopf (and the operator's own API client) the result, as `kopf.login_via_client` does.

- A kubeconfig named with `--kubeconfig` is used as is, even inside a pod.
- Otherwise: the pod's service account (in-cluster), else $KUBECONFIG or ~/.kube/config.

Tokens expire (an EKS token lives 15 minutes, a projected service-account token an hour):
on a 401 kopf and the operator's client log in again, which runs the plugin again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import kopf
import structlog

log = structlog.get_logger(__name__)


def login_with_kubernetes_client(
    kubeconfig: Path | None, *, settings: kopf.OperatorSettings, **kwargs: Any
) -> kopf.ConnectionInfo:
    if kubeconfig is None:
        logger = kwargs.pop("logger", None) or logging.getLogger("modelfleet.login")
        return kopf.login_via_client(logger=logger, settings=settings, **kwargs) or _no_login()
    import kubernetes

    configuration = kubernetes.client.Configuration()
    try:
        # persist_config=False: a mounted kubeconfig is read-only, and the operator
        # must never rewrite a user's file.
        kubernetes.config.load_kube_config(
            config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
        )
    except (kubernetes.config.ConfigException, OSError, ValueError) as err:
        raise kopf.LoginError(f"cannot log in with {kubeconfig}: {err}") from None
    info = connection_info(configuration, settings)
    log.info("kube.login", server=info.server, kubeconfig=str(kubeconfig), method=_method(info))
    return info


def connection_info(configuration: Any, settings: kopf.OperatorSettings) -> kopf.ConnectionInfo:
    """kopf's credentials from a loaded kubernetes.client.Configuration."""
    # Reading the key through get_api_key_with_prefix runs the loader's refresh hook, so an
    # expired exec-plugin or service-account token is renewed here.
    header = configuration.get_api_key_with_prefix(
        "BearerToken"
    ) or configuration.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").partition(" ")
    if not token:  # a bare token without a scheme
        scheme, token = "", scheme
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        trust_env=settings.networking.trust_env,
    )


def _method(info: kopf.ConnectionInfo) -> str:
    if info.token:
        return "token"
    if info.certificate_path:
        return "client certificate"
    if info.username:
        return "basic auth"
    return "none"


def _no_login() -> kopf.ConnectionInfo:
    raise kopf.LoginError(
        "no Kubernetes credentials: not in a pod with a service account, and no kubeconfig "
        "($KUBECONFIG, ~/.kube/config or --kubeconfig)"
    )
