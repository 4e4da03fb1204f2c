"""The node agent's launcher for the local cluster: each Pod becomes a simulated vLLM
replica, configured from the Deployment's container args the way vLLM reads them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelfleet_testbed.local.agent import ServesOnItsPort
from modelfleet_testbed.sim.gpu import profile_for_model
from modelfleet_testbed.sim.replica import RunningReplica, start_replica


def _flag(args: Sequence[str], name: str) -> list[str]:
    """Values after `name` up to the next flag (vLLM's --served-model-name takes several)."""
    if name not in args:
        return []
    values = []
    for value in args[args.index(name) + 1 :]:
        if value.startswith("--"):
            break
        values.append(value)
    return values


DRAIN_SECONDS = 5.0


@dataclass(eq=False)
class LaunchedReplica(ServesOnItsPort):
    """What the agent holds for one Pod; stopping it also forgets it in the launcher."""

    replica: RunningReplica
    registry: dict[str, RunningReplica]

    @property
    def host(self) -> str:
        return self.replica.host

    @property
    def port(self) -> int:
        return self.replica.port

    async def stop(self) -> None:
        self.registry.pop(self.replica.name, None)
        # Like a pod's termination grace period: running requests finish, new ones get 503.
        await self.replica.stop(grace_seconds=DRAIN_SECONDS)


class SimulatedReplicaLauncher:
    def __init__(self, speedup: float = 1.0, max_num_seqs: int | None = None):
        self.speedup = speedup
        self.max_num_seqs = max_num_seqs
        self.running: dict[str, RunningReplica] = {}

    async def launch(
        self, pod_name: str, deployment: Mapping[str, Any], startup_seconds: float
    ) -> LaunchedReplica:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = list(container.get("args") or [])
        model = (_flag(args, "--model") or [pod_name])[0]
        names = _flag(args, "--served-model-name") or [model]
        gpus = int((_flag(args, "--tensor-parallel-size") or ["1"])[0])
        max_seqs = _flag(args, "--max-num-seqs")
        replica = await start_replica(
            pod_name,
            names[0],
            profile_for_model(model, gpus),
            startup_seconds=startup_seconds,
            max_num_seqs=int(max_seqs[0]) if max_seqs else self.max_num_seqs,
            speedup=self.speedup,
            aliases=names[1:],
        )
        self.running[pod_name] = replica
        return LaunchedReplica(replica, self.running)
