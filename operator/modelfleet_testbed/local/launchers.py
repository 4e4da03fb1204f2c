"""Which launcher starts a Pod on the local node: the operator's gateway pods run for real
(`gateway_pods`), every other Pod with the default launcher (in the local fleet, a
simulated vLLM replica)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelfleet_testbed.local.agent import Launcher, ReplicaHandle
from modelfleet_testbed.local.gateway_pods import GatewayPodLauncher, is_gateway_pod


class PodLaunchers:
    def __init__(self, default: Launcher, gateways: GatewayPodLauncher):
        self.default = default
        self.gateways = gateways

    async def launch(
        self, pod_name: str, deployment: Mapping[str, Any], startup_seconds: float
    ) -> ReplicaHandle:
        template = (deployment.get("spec") or {}).get("template") or {}
        launcher: Launcher = self.gateways if is_gateway_pod(template) else self.default
        return await launcher.launch(pod_name, deployment, startup_seconds)
