"""Each variant's Deployment and Service rendered once per pool spec, not once per cycle.

A variant's manifests depend on the pool's spec and identity only, except the
Deployment's replica count, which the plan sets each cycle. The operator parses a spec
once per generation (`ParseCache`), so while a pool's spec object is the same the
rendered manifests are too: a cycle copies the top of the Deployment and sets its
replicas. One entry per pool, rebuilt whole when its spec or uid changes; the result is
the same manifests `render_deployment` and `render_service` give (a test compares them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelfleet.api.modelpool import ModelPool, ModelPoolSpec
from modelfleet.render.shared_documents import SharedDocuments
from modelfleet.render.workloads import render_deployment, render_service


@dataclass
class _PoolWorkloads:
    spec: ModelPoolSpec  # held, so that the identity it was rendered for stays unique
    uid: str | None
    rendered: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)


class WorkloadRenderCache:
    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], _PoolWorkloads] = {}
        # What pools' manifests have in common (probes, volumes, env...) held once.
        self._shared = SharedDocuments()

    def __len__(self) -> int:
        return len(self._pools)

    def forget(self, namespace: str, pool: str) -> None:
        self._pools.pop((namespace, pool), None)

    def manifests(
        self, pool: ModelPool, variant_index: int, replicas: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(Service, Deployment) of the pool's `variant_index`-th variant."""
        key = (pool.namespace, pool.name)
        entry = self._pools.get(key)
        if entry is None or entry.spec is not pool.spec or entry.uid != pool.metadata.uid:
            entry = self._pools[key] = _PoolWorkloads(pool.spec, pool.metadata.uid)
        variant = pool.spec.variants[variant_index]
        rendered = entry.rendered.get(variant.name)
        if rendered is None:
            rendered = (
                self._shared.share(render_service(pool, variant)),
                self._shared.share(render_deployment(pool, variant, 0)),
            )
            entry.rendered[variant.name] = rendered
        service, deployment = rendered
        # Shared below the top: manifests are read (applied, hashed), never changed.
        return service, {**deployment, "spec": {**deployment["spec"], "replicas": replicas}}
