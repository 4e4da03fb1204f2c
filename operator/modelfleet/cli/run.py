"""`modelfleet run`: the operator (kopf), in a cluster or against a kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.cli.plan import parse_instant

if TYPE_CHECKING:
    from modelfleet.render.gateway import GatewaySettings


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "run", help="run the operator (in-cluster config, --kubeconfig or $KUBECONFIG)"
    )
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default: $KUBECONFIG)")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        metavar="NS",
        help="watch this namespace (repeatable)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch all namespaces")
    add_prometheus_arguments(parser)
    parser.add_argument(
        "--health",
        default="0.0.0.0:8080",
        metavar="HOST:PORT",
        help="liveness/readiness endpoint (GET /healthz)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=8081, help="port of the operator's /metrics (0: off)"
    )
    parser.add_argument(
        "--metrics-host", default="0.0.0.0", help="address of the operator's /metrics"
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--peering",
        default="modelfleet",
        help="kopf peering name: replicas with one name never act at once",
    )
    peering.add_argument("--standalone", action="store_true", help="no peering (one replica)")
    parser.add_argument("--priority", type=int, default=0, help="peering priority")
    parser.add_argument(
        "--gateway-config-dir",
        default="/etc/modelfleet/gateway",
        help="where the gateway pods' Envoy reads its files (the sidecar writes them there)",
    )
    parser.add_argument(
        "--gateway-listen-host", default="0.0.0.0", help="address the gateway listener binds"
    )
    parser.add_argument(
        "--gateway-admin",
        default="127.0.0.1:9901",
        metavar="HOST:PORT",
        help="the gateway's Envoy admin address; keep it on loopback",
    )
    parser.add_argument(
        "--gateway-stats-port",
        type=int,
        default=9902,
        metavar="PORT",
        help="the gateway's read-only listener for /stats/prometheus and /ready probes",
    )
    parser.add_argument(
        "--gateway-image",
        default=os.environ.get("MODELFLEET_GATEWAY_IMAGE"),
        metavar="IMAGE",
        help="run each RoutingPolicy's gateway pods (Envoy and the gateway-sync sidecar) "
        "from this image, normally the operator's own; unset: write the configs only",
    )
    parser.add_argument(
        "--gateway-resources",
        type=json.loads,
        metavar="JSON",
        help='the gateway Envoy\'s resources, e.g. {"requests": {"cpu": "500m"}}',
    )
    parser.add_argument(
        "--clock-start", type=parse_instant, help=argparse.SUPPRESS
    )  # demos: the operator's virtual time at --clock-origin
    parser.add_argument("--clock-origin", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--clock-speed", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="INFO")
    parser.set_defaults(handler=run)


def gateway_settings(args: argparse.Namespace) -> GatewaySettings:
    """How the operator renders and runs each RoutingPolicy's gateway, from `run`'s flags."""
    from modelfleet.render.gateway import GatewaySettings

    admin_host, _, admin_port = args.gateway_admin.rpartition(":")
    return GatewaySettings(
        config_dir=args.gateway_config_dir,
        listen_host=args.gateway_listen_host,
        admin=(admin_host, int(admin_port)),
        image=args.gateway_image,
        stats_port=args.gateway_stats_port,
        resources=args.gateway_resources,
    )


def add_prometheus_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Prometheus",
        "the default for pools without spec.metrics.prometheusUrl; its credentials are "
        "sent to this URL only (files are read again at every cycle: rotation works)",
    )
    group.add_argument(
        "--prometheus-url",
        type=prometheus_url,
        default=os.environ.get("MODELFLEET_PROMETHEUS_URL"),
        help="http(s) base URL (default: $MODELFLEET_PROMETHEUS_URL)",
    )
    group.add_argument(
        "--prometheus-ca-file", type=Path, help="PEM CA bundle (default: system trust store)"
    )
    group.add_argument(
        "--prometheus-insecure-skip-verify",
        action="store_true",
        help="accept any certificate (tests only)",
    )
    group.add_argument("--prometheus-token-file", type=Path, help="bearer token file")
    group.add_argument(
        "--prometheus-basic-auth-dir",
        type=Path,
        help="directory with files `username` and `password` (a mounted basic-auth Secret)",
    )
    group.add_argument(
        "--prometheus-headers-dir",
        type=Path,
        help="directory whose every file is a header: name = file name, value = content",
    )
    group.add_argument(
        "--prometheus-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="most time a pool's queries may take (also at most half its refresh period)",
    )


def prometheus_url(value: str) -> str:
    from modelfleet.api.urls import prometheus_url_problem

    problem = prometheus_url_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def operator_prometheus(args: argparse.Namespace):
    from modelfleet.controller.prometheus_sources import OperatorPrometheus

    return OperatorPrometheus(
        url=args.prometheus_url,
        ca_file=args.prometheus_ca_file,
        token_file=args.prometheus_token_file,
        basic_auth_dir=args.prometheus_basic_auth_dir,
        headers_dir=args.prometheus_headers_dir,
        insecure_skip_verify=args.prometheus_insecure_skip_verify,
        timeout_seconds=args.prometheus_timeout,
    )


def run(args: argparse.Namespace) -> int:
    import kopf

    from modelfleet.cli.logs import configure_logging
    from modelfleet.controller import handlers  # noqa: F401  (registers kopf's handlers)
    from modelfleet.controller.clock import ScaledClock
    from modelfleet.controller.runtime import (
        build_runtime,
        serve_operator_metrics,
        tune_garbage_collection,
    )

    configure_logging(args.log_level)
    tune_garbage_collection()
    if args.kubeconfig and not args.kubeconfig.exists():
        logging.getLogger("modelfleet").error("kubeconfig %s does not exist", args.kubeconfig)
        return 2
    gateway = gateway_settings(args)
    clock = None
    if args.clock_start is not None:
        clock = ScaledClock(args.clock_start, args.clock_speed, args.clock_origin or time.time())
    runtime = build_runtime(
        prometheus=operator_prometheus(args),
        gateway=gateway,
        clock=clock,
        kubeconfig=args.kubeconfig,
        namespaced=bool(args.namespaces) and not args.all_namespaces,
    )
    serve_operator_metrics(runtime, args.metrics_host, args.metrics_port)
    options: dict[str, Any] = {
        "liveness_endpoint": f"http://{args.health}/healthz",
        "memo": kopf.Memo(runtime=runtime),
        "priority": args.priority,
    }
    if args.standalone:
        options["standalone"] = True
    else:
        options["peering_name"] = args.peering
    if args.all_namespaces or not args.namespaces:
        options["clusterwide"] = True
    else:
        options["namespaces"] = args.namespaces
    asyncio.run(kopf.operator(**options))
    return 0
