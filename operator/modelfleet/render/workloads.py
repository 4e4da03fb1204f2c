"""Desired Deployment and Service of each variant (pure: the pool and a replica count in,
manifests out). Applied with server-side apply under one field manager."""

from __future__ import annotations

import math
from typing import Any

from modelfleet.api.modelpool import ModelPool, Variant
from modelfleet.api.names import (
    MANAGED_BY,
    POOL_LABEL,
    STARTUP_ANNOTATION,
    VARIANT_LABEL,
    owner_reference,
    workload_name,
)
from modelfleet.render.pod_merge import apply_template, combined

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
PROBE_PERIOD_SECONDS = 10


def selector_labels(pool: ModelPool, variant: Variant) -> dict[str, str]:
    return {POOL_LABEL: pool.name, VARIANT_LABEL: variant.name}


def _labels(pool: ModelPool, variant: Variant) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": workload_name(pool.name, variant.name),
        "app.kubernetes.io/component": "model-server",
        **MANAGED_BY,
        **selector_labels(pool, variant),
    }


# vLLM's flags for the tensor-parallel degree: when the variant's args set it, they win.
_TENSOR_PARALLEL_FLAGS = ("--tensor-parallel-size", "-tp")
# Requests a replica gets unless its template sets them: enough to keep it out of the
# BestEffort class (first to be evicted) on any GPU node; size them per model (samples).
DEFAULT_CPU_PER_GPU = 2
DEFAULT_MEMORY_GIB_PER_GPU = 16
# Tensor-parallel workers talk through shared memory; NCCL needs a few GiB of it.
SHM_SIZE = "8Gi"
# Before SIGTERM, a replica leaving waits for the Service and the gateways to stop sending
# it requests; then vLLM has the rest of the grace period to finish what it holds.
PRE_STOP_SLEEP_SECONDS = 15
TERMINATION_GRACE_SECONDS = PRE_STOP_SLEEP_SECONDS + 120


def vllm_args(pool: ModelPool, variant: Variant) -> list[str]:
    # Served under the model id, the variant name and the pool name: clients that pick a
    # model name one of the first two; clients routed by task_type send `model: <pool>`,
    # which every variant of the pool accepts (vLLM refuses names it does not serve).
    tensor_parallel = (
        []
        if _sets_tensor_parallel(variant.args)
        else [
            "--tensor-parallel-size",
            str(variant.gpus_per_replica),
        ]
    )
    return [
        "--model",
        variant.model,
        "--served-model-name",
        variant.model,
        variant.name,
        pool.name,
        *tensor_parallel,
        "--port",
        str(variant.port),
        *variant.args,
    ]


def _sets_tensor_parallel(args: list[str]) -> bool:
    return any(a in _TENSOR_PARALLEL_FLAGS or a.startswith("--tensor-parallel-size=") for a in args)


def _probe(**extra: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": "http"}, **extra}


def _pod(pool: ModelPool, variant: Variant) -> dict[str, Any]:
    """The pod the operator renders for a variant, before any template."""
    labels = _labels(pool, variant)
    # Model load can take many minutes; the startup probe gives it that long before the
    # liveness probe may restart the container.
    startup_failures = max(3, math.ceil(variant.startup_seconds / PROBE_PERIOD_SECONDS) + 3)
    gpus = variant.gpus_per_replica
    return {
        "metadata": {
            "labels": dict(labels),
            "annotations": {
                STARTUP_ANNOTATION: str(variant.startup_seconds),
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(variant.port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "vllm",
                    "image": variant.image,
                    "args": vllm_args(pool, variant),
                    "ports": [{"name": "http", "containerPort": variant.port}],
                    "resources": {
                        "limits": {GPU_RESOURCE: str(gpus)},
                        "requests": {
                            GPU_RESOURCE: str(gpus),
                            "cpu": str(DEFAULT_CPU_PER_GPU * gpus),
                            "memory": f"{DEFAULT_MEMORY_GIB_PER_GPU * gpus}Gi",
                        },
                    },
                    "readinessProbe": _probe(periodSeconds=5, failureThreshold=3),
                    "livenessProbe": _probe(periodSeconds=PROBE_PERIOD_SECONDS, failureThreshold=6),
                    "startupProbe": _probe(
                        periodSeconds=PROBE_PERIOD_SECONDS, failureThreshold=startup_failures
                    ),
                    "lifecycle": {
                        "preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SLEEP_SECONDS)]}},
                    },
                    "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
                }
            ],
            "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}],
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "nodeSelector": dict(variant.node_selector),
            "tolerations": list(variant.tolerations)
            or [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def render_deployment(pool: ModelPool, variant: Variant, replicas: int) -> dict[str, Any]:
    labels = _labels(pool, variant)
    template = combined((pool.spec.template, variant.template))
    gpu_product = {GPU_PRODUCT_LABEL: variant.gpu_type} if variant.gpu_type else {}
    pod = apply_template(_pod(pool, variant), template, labels, gpu_product)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": workload_name(pool.name, variant.name),
            "namespace": pool.namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(pool)],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(pool, variant)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            },
            "template": pod,
        },
    }


def render_service(pool: ModelPool, variant: Variant) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": workload_name(pool.name, variant.name),
            "namespace": pool.namespace,
            "labels": _labels(pool, variant),
            "ownerReferences": [owner_reference(pool)],
        },
        "spec": {
            "selector": selector_labels(pool, variant),
            "ports": [{"name": "http", "port": variant.port, "targetPort": "http"}],
        },
    }
