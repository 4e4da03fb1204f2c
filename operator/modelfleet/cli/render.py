"""`modelfleet render envoy`: the gateway's Envoy files for a RoutingPolicy, validated by
Envoy and written atomically (safe to re-run against a directory a live Envoy watches)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from modelfleet.api.keys import ApiKey, load_api_keys
from modelfleet.api.load import InputError, InvalidInput, Resources, load_resources
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.files import publish_gateway
from modelfleet.apply.validate import EnvoyNotFound, InvalidEnvoyConfig
from modelfleet.cli.plan import add_input_arguments, print_errors
from modelfleet.observe.observation import load_observations
from modelfleet.render.desired import desired
from modelfleet.render.envoy.render import DEFAULT_ACCESS_LOG, DEFAULT_STATS_PORT
from modelfleet.render.envoy.xds import HostPort, is_ip
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.inputs import FleetInputs

DEFAULT_ADMIN = ("127.0.0.1", 9901)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "render", help="render the config of a component (the Envoy gateway)"
    )
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    envoy = targets.add_parser(
        "envoy",
        help="the Envoy gateway's files for a RoutingPolicy",
        description="Write DIR/envoy.yaml and the lds/cds/rds files it reads, so that "
        "`envoy -c DIR/envoy.yaml` serves the RoutingPolicy's gateway. The files are "
        "validated with the envoy binary first; an invalid render writes nothing.",
    )
    add_input_arguments(envoy)
    envoy.add_argument(
        "--policy", metavar="NS/NAME", help="which RoutingPolicy, when the input has several"
    )
    envoy.add_argument(
        "--api-keys",
        type=Path,
        metavar="FILE",
        help="YAML `keys: [{id, key, tenant}]` (in a cluster: the policy's Secret)",
    )
    envoy.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="VARIANT=HOST:PORT",
        help="send a variant's traffic here instead of its Service (repeatable)",
    )
    envoy.add_argument(
        "--listen",
        type=ip_port,
        metavar="IP:PORT",
        help="gateway address (default 0.0.0.0:<spec.gateway.listenerPort>)",
    )
    envoy.add_argument(
        "--admin",
        type=ip_port,
        default=DEFAULT_ADMIN,
        metavar="IP:PORT",
        help="Envoy's admin interface; keep it on loopback (default 127.0.0.1:9901)",
    )
    envoy.add_argument(
        "--stats-port",
        type=port_number,
        default=DEFAULT_STATS_PORT,
        metavar="PORT",
        help="read-only listener for /stats/prometheus and /ready, on the --listen host "
        f"(default {DEFAULT_STATS_PORT})",
    )
    envoy.add_argument(
        "--access-log",
        default=DEFAULT_ACCESS_LOG,
        metavar="PATH",
        help=f"where the JSON audit log goes (default {DEFAULT_ACCESS_LOG})",
    )
    envoy.add_argument(
        "--config-dir",
        metavar="PATH",
        help="where the files will be when Envoy runs (default: --out)",
    )
    envoy.add_argument("--out", type=Path, required=True, metavar="DIR")
    envoy.set_defaults(handler=run_envoy)


def host_port(text: str) -> HostPort:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT: write e.g. 127.0.0.1:8080 or [::1]:8080"
        )
    return host, int(port)


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: write 0-65535")
    return int(text)


def ip_port(text: str) -> HostPort:
    """Envoy binds listeners to IP addresses only; it does not resolve names there."""
    host, port = host_port(text)
    if not is_ip(host):
        raise argparse.ArgumentTypeError(
            f"{host!r} is not an IP address: Envoy binds to IPs only (e.g. 127.0.0.1, 0.0.0.0)"
        )
    return host, port


def option_error(option: str, message: str) -> InputError:
    return InputError(option, "", "", message)


def parse_backends(values: list[str], known: list[str]) -> dict[str, HostPort]:
    backends: dict[str, HostPort] = {}
    errors = []
    for value in values:
        variant, sep, address = value.partition("=")
        option = f"--backend {value}"
        if not sep:
            errors.append(option_error(option, "write VARIANT=HOST:PORT"))
        elif variant not in known:
            message = f"no variant {variant!r} in the pool: use one of {', '.join(known)}"
            errors.append(option_error(option, message))
        else:
            try:
                backends[variant] = host_port(address)
            except argparse.ArgumentTypeError as err:
                errors.append(option_error(option, str(err)))
    if errors:
        raise InvalidInput(errors)
    return backends


def choose_policy(resources: Resources, wanted: str | None) -> RoutingPolicy:
    by_name = {f"{p.namespace}/{p.name}": p for p in resources.policies}
    names = ", ".join(sorted(by_name)) or "none"
    if wanted is not None:
        if wanted not in by_name:
            message = f"no RoutingPolicy {wanted!r} in the input (found: {names})"
            raise InvalidInput([option_error("--policy", message)])
        return by_name[wanted]
    if not by_name:
        message = "no RoutingPolicy in the input: the gateway is rendered from one; add it with -f"
        raise InvalidInput([option_error("-f", message)])
    if len(by_name) > 1:
        message = f"the input has several RoutingPolicies ({names}): pick one with --policy NS/NAME"
        raise InvalidInput([option_error("--policy", message)])
    return resources.policies[0]


def unused_rate_limits(policy: RoutingPolicy, keys: list[ApiKey]) -> list[str]:
    ids = {key.id for key in keys}
    return [o.key_id for o in policy.spec.gateway.rate_limit.per_key if o.key_id not in ids]


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_envoy(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    try:
        resources = load_resources(args.files)
        observations = load_observations(args.metrics, now) if args.metrics else {}
        policy = choose_policy(resources, args.policy)
        pool = resources.pool(policy.namespace, policy.spec.pool)
        assert pool is not None, "load_resources checks that the policy's pool exists"
        keys = load_api_keys(args.api_keys) if args.api_keys else []
        backends = parse_backends(args.backend, [v.name for v in pool.spec.variants])
        if args.admin[1] == 0:
            message = (
                "the admin port must be fixed, not 0: the stats listener (--stats-port) "
                "forwards /stats/prometheus and /ready to it"
            )
            raise InvalidInput([option_error("--admin", message)])
    except InvalidInput as err:
        print_errors(err)
        return 2
    for key_id in unused_rate_limits(policy, keys):
        warn(
            f"spec.gateway.rateLimit.perKey names key {key_id!r}, which is not among the API "
            "keys: it has no effect"
        )
    listen_host, listen_port = args.listen or ("0.0.0.0", None)
    settings = GatewaySettings(
        config_dir=args.config_dir or str(args.out.resolve()),
        listen_host=listen_host,
        listen_port=listen_port,
        admin=args.admin,
        access_log=args.access_log,
        stats_port=args.stats_port,
    )
    policy_key = (policy.namespace, policy.name)
    result = desired(
        FleetInputs(
            now=now,
            pools=[pool],
            reservations=resources.reservations_for(pool),
            policies=[policy],
            observations=observations,
            api_keys={policy_key: keys},
            service_addresses={(pool.namespace, pool.name): backends},
            gateway=settings,
        )
    )
    gateway = result.gateways.get(policy_key)
    if gateway is None:
        status = result.status_of(policy.kind, policy.namespace, policy.name)
        problems = [c.message for c in getattr(status, "conditions", []) if c.status == "False"]
        message = "; ".join(problems) or "the gateway was not rendered"
        if not keys:
            message = "no API keys: every request would be refused (401): pass --api-keys FILE"
        print(f"error: {message}", file=sys.stderr)
        return 2
    try:
        written = publish_gateway(args.out, gateway.files)
    except (InvalidEnvoyConfig, EnvoyNotFound) as err:
        print(f"error: the rendered gateway was not written: {err}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    if not written:
        print(f"{args.out}: unchanged", file=sys.stderr)
    return 0
