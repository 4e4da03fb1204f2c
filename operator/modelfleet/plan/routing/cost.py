"""What one request costs on a variant, from live throughput or the spec's estimate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from modelfleet.api.modelpool import Variant
from modelfleet.observe.observation import VariantObservation

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class CostEstimate:
    per_request: float
    basis: Literal["observed", "spec"]  # observed QPS per ready replica, or the spec's estimate

    def describe(self) -> str:
        basis = "observed" if self.basis == "observed" else "spec estimate"
        return f"{self.per_request:.3g}/request, {basis}"


def cost_per_request(
    variant: Variant, observation: VariantObservation | None
) -> CostEstimate | None:
    """costPerReplicaHour spread over the requests one replica serves; None when unknowable.

    Live throughput wins over the spec's requestsPerSecondPerReplica because an idle,
    over-provisioned variant really does cost more per request than its nominal rate.
    """
    cost_per_second = variant.cost_per_replica_hour / SECONDS_PER_HOUR
    if observation is not None:
        qps, ready = observation.qps, observation.ready_replicas
        if qps is not None and qps > 0 and ready is not None and ready > 0:
            return CostEstimate(cost_per_second / (qps / ready), "observed")
    if variant.requests_per_second_per_replica is not None:
        return CostEstimate(cost_per_second / variant.requests_per_second_per_replica, "spec")
    return None
