"""`modelfleet gateway-sync`: the gateway pod's sidecar (see modelfleet.sidecar.gateway_sync)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "gateway-sync",
        help="keep an Envoy config directory in step with the operator's ConfigMap and Secret",
    )
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: in-cluster)")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--config-map", required=True, help="spec.gateway.configMap")
    parser.add_argument("--out", type=Path, required=True, help="directory Envoy watches")
    parser.add_argument(
        "--health-port",
        type=int,
        default=0,
        help="serve GET /healthz here: 200 once the files are published (0: off)",
    )
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import kopf

    from modelfleet.apply.kube import KubeClient
    from modelfleet.apply.login import login_with_kubernetes_client
    from modelfleet.cli.logs import configure_logging
    from modelfleet.sidecar.gateway_sync import GatewaySync

    configure_logging(args.log_level)
    settings = kopf.OperatorSettings()

    def login() -> kopf.ConnectionInfo:
        return login_with_kubernetes_client(args.kubeconfig, settings=settings)

    try:
        info = login()
    except kopf.LoginError as err:
        raise SystemExit(f"{err}: run in a pod or pass --kubeconfig") from None

    async def main() -> None:
        kube = KubeClient(info, relogin=login, user_agent="modelfleet-gateway-sync")
        sync = GatewaySync(kube, args.namespace, args.config_map, args.out)
        health = await sync.serve_health(args.health_port) if args.health_port else None
        try:
            await sync.run()
        finally:
            if health is not None:
                await health.cleanup()
            await kube.close()

    asyncio.run(main())
    return 0
