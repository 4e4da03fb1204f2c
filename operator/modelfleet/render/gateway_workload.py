"""Pure: the pods and objects that run one RoutingPolicy's gateway, as Envoy Gateway
provisions its data plane from a Gateway: a Deployment of Envoy with the gateway-sync
sidecar (a native sidecar: it starts first, writes the files Envoy reads, and keeps them
current), its Service, a PodDisruptionBudget, a ServiceAccount with a Role that can read
only the gateway's ConfigMap and Secret, and a NetworkPolicy. All are owned by the policy,
so deleting it deletes them."""

from __future__ import annotations

from typing import Any

from modelfleet.api.names import (
    MANAGED_BY,
    POLICY_LABEL,
    owner_reference,
    routes_secret_name,
)
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.pod_merge import apply_template, combined

COMPONENT = "gateway"
CONFIG_VOLUME = "config"
TMP_VOLUME = "tmp"
TOKEN_VOLUME = "api-token"
# Where a pod's API client (the sidecar's, in-cluster) finds its token, CA and namespace.
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The sidecar answers 200 on this port once it has published the files: the kubelet starts
# Envoy only then.
SYNC_HEALTH_PORT = 8090
DEFAULT_RESOURCES = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
# Envoy keeps serving open connections this long after the pod is told to stop, while the
# Service stops sending new ones.
DRAIN_SECONDS = 15


def gateway_name(policy: RoutingPolicy) -> str:
    return f"{policy.name}-gateway"


def selector_labels(policy: RoutingPolicy) -> dict[str, str]:
    return {POLICY_LABEL: policy.name, "app.kubernetes.io/component": COMPONENT}


def _labels(policy: RoutingPolicy) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modelfleet-gateway",
        "app.kubernetes.io/instance": gateway_name(policy),
        **MANAGED_BY,
        **selector_labels(policy),
    }


def _metadata(policy: RoutingPolicy, name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or gateway_name(policy),
        "namespace": policy.namespace,
        "labels": _labels(policy),
        "ownerReferences": [owner_reference(policy)],
    }


def _security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _token_volume() -> dict[str, Any]:
    """The service-account token, mounted into the sidecar only: Envoy faces clients and
    gets no API credentials."""
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ]
        },
    }


def _pod(policy: RoutingPolicy, settings: GatewaySettings) -> dict[str, Any]:
    assert settings.image is not None
    gateway = policy.spec.gateway
    config = {"name": CONFIG_VOLUME, "mountPath": settings.config_dir}
    return {
        "metadata": {
            "labels": _labels(policy),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(settings.stats_port),
                "prometheus.io/path": "/stats/prometheus",
            },
        },
        "spec": {
            "serviceAccountName": gateway_name(policy),
            "automountServiceAccountToken": False,
            # One user for both containers (the image's): the sidecar writes the routes file,
            # which holds the API keys, with mode 0600, and Envoy reads it.
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "initContainers": [
                {
                    "name": "gateway-sync",
                    "image": settings.image,
                    "restartPolicy": "Always",
                    "args": [
                        "gateway-sync",
                        "-n",
                        policy.namespace,
                        "--config-map",
                        gateway.config_map,
                        "--out",
                        settings.config_dir,
                        "--health-port",
                        str(SYNC_HEALTH_PORT),
                    ],
                    "ports": [{"name": "sync-health", "containerPort": SYNC_HEALTH_PORT}],
                    "startupProbe": {
                        "httpGet": {"path": "/healthz", "port": "sync-health"},
                        "periodSeconds": 1,
                        "failureThreshold": 300,
                    },
                    # Envoy validates each config in temporary files; the API client keeps
                    # its CA there.
                    "env": [{"name": "TMPDIR", "value": "/tmp"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}},
                    "securityContext": _security(),
                    "volumeMounts": [
                        config,
                        {"name": TMP_VOLUME, "mountPath": "/tmp"},
                        {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
                    ],
                }
            ],
            "containers": [
                {
                    "name": "envoy",
                    "image": settings.image,
                    "command": ["envoy"],
                    "args": [
                        "-c",
                        f"{settings.config_dir}/envoy.yaml",
                        "--disable-hot-restart",
                        "--drain-time-s",
                        str(DRAIN_SECONDS),
                        "--log-level",
                        "info",
                    ],
                    "ports": [
                        {"name": "http", "containerPort": gateway.listener_port},
                        {"name": "stats", "containerPort": settings.stats_port},
                    ],
                    "readinessProbe": {
                        "httpGet": {"path": settings.ready_path, "port": "stats"},
                        "periodSeconds": 2,
                    },
                    "resources": settings.resources or DEFAULT_RESOURCES,
                    "securityContext": _security(),
                    "volumeMounts": [{**config, "readOnly": True}],
                }
            ],
            "volumes": [
                {"name": CONFIG_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}},
                {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
                _token_volume(),
            ],
            "terminationGracePeriodSeconds": DRAIN_SECONDS + 15,
        },
    }


def gateway_workloads(policy: RoutingPolicy, settings: GatewaySettings) -> list[dict[str, Any]]:
    """Everything that runs the policy's gateway, in the order to apply it."""
    gateway = policy.spec.gateway
    name = gateway_name(policy)
    pod = apply_template(_pod(policy, settings), combined((gateway.template,)), _labels(policy))
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(policy)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(policy),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [gateway.config_map],
                    "verbs": ["get", "watch"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": [routes_secret_name(gateway.config_map)],
                    "verbs": ["get", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(policy),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": policy.namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(policy),
            "spec": {
                "replicas": gateway.replicas,
                "selector": {"matchLabels": selector_labels(policy)},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
                },
                "template": pod,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**_metadata(policy), "annotations": dict(gateway.service.annotations)},
            "spec": {
                "type": gateway.service.type,
                "selector": selector_labels(policy),
                "ports": [
                    {"name": "http", "port": gateway.service.port, "targetPort": "http"},
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(policy),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(policy)}},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": _metadata(policy),
            "spec": {
                "podSelector": {"matchLabels": selector_labels(policy)},
                "policyTypes": ["Ingress"],
                # Clients reach the listener; Prometheus and the kubelet the stats and
                # readiness port. Envoy's admin listens on localhost only.
                "ingress": [
                    {
                        "ports": [
                            {"port": gateway.listener_port, "protocol": "TCP"},
                            {"port": settings.stats_port, "protocol": "TCP"},
                        ]
                    }
                ],
            },
        },
    ]
