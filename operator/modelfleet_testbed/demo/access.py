"""What a user needs to drive the demo's fleet once its day is over: the kubeconfig, the
addresses, the API keys, a first request and how to stop it. Printed as plain lines (no
terminal-wide wrapping) so each can be copied whole."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Access:
    kubeconfig: str
    api_server: str
    prometheus: str
    gateway: str  # its listener
    gateway_service: str  # the same gateway through its Service's cluster IP
    policy: str  # namespace/name of the RoutingPolicy the gateway serves
    model: str
    keys: Sequence[Mapping[str, Any]]
    limited_key: str
    limited_per_minute: int


def curl_command(access: Access) -> str:
    body = json.dumps(
        {
            "model": access.model,
            "task_type": "chat",
            "messages": [{"role": "user", "content": "Hello!"}],
        }
    )
    return (
        f"curl -s {access.gateway}/v1/chat/completions "
        f"-H 'Authorization: Bearer {access.keys[0]['key']}' -H 'Content-Type: application/json' "
        f"-d '{body}'"
    )


def access_lines(access: Access) -> list[str]:
    pid = os.getpid()
    keys = [
        f"    {key['key']}  (id {key['id']}, tenant {key['tenant']}"
        + (
            f", held to {access.limited_per_minute} requests a minute)"
            if key["id"] == access.limited_key
            else ")"
        )
        for key in access.keys
    ]
    return [
        "The fleet keeps running, now on the wall clock: schedules fire at real times,",
        "status times and metric ages are real, and `modelfleet plan` (its default is now)",
        "predicts the Deployments the operator keeps. The operator watches every namespace.",
        "",
        "  kubectl:",
        f"    export KUBECONFIG={access.kubeconfig}",
        "    kubectl get mp,rp,rsv -A",
        "    kubectl apply -f my-pool.yaml         (validated like a cluster: schema and CEL rules)",
        "    kubectl get deploy,events -n <namespace>",
        "    a RoutingPolicy of your own gets its gateway from the operator (give it a free",
        "    spec.gateway.listenerPort): kubectl get deploy,svc <policy>-gateway -n <namespace>",
        f"  API server:  {access.api_server}",
        f"  Prometheus:  {access.prometheus}",
        f"  Gateway:     {access.gateway}  (OpenAI API, RoutingPolicy {access.policy};",
        f"               its Service: {access.gateway_service})",
        "  API keys:",
        *keys,
        "  Try it:",
        f"  {curl_command(access)}",
        "",
        f"  Stop: Ctrl-C here, or `kill -INT {pid}` / `kill {pid}` (SIGTERM): either stops",
        "  everything the demo started.",
        "",
    ]
