"""Golden cases of the operator's whole cycle, `desired()` called directly (as Envoy
Gateway tests its translator): tests/golden/desired/<case>.in.yaml -> <case>.out.yaml.

An input is multi-document YAML. The first document is the case:
`{at: ISO-8601, files: [paths relative to the repo] (optional), metrics: {...} (as
`plan --metrics`), apiKeys: {"<ns>/<policy>": {keys: [...]}}, deployedReplicas:
{"<ns>/<pool>/<variant>": n}, serviceAddresses: {"<ns>/<pool>": {variant: "ip:port"}}, gateway: {image: ...} (the operator runs the
gateways' pods)}`;
the rest are resources, as the API server would return them (a `status` is the previous
cycle's). Invalid resources are kept, as the controller keeps them: their status says why.

The output holds every object the operator would write (Secrets with their data decoded
into `stringData`, so that the routes read as text), the status of every input resource
and the Events.
"""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from modelfleet.api.keys import parse_api_keys
from modelfleet.api.load import iter_documents
from modelfleet.observe.observation import load_observations
from modelfleet.render.desired import desired
from modelfleet.render.envoy.render import dump_yaml
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.inputs import FleetInputs, parse_body
from tests.golden.cases import GoldenCases

CASES_DIR = Path(__file__).parent / "desired"
REPO = Path(__file__).resolve().parents[2]


def _key(text: str) -> tuple[str, ...]:
    return tuple(text.split("/"))


def inputs_of(case: Path, tmp: Path) -> FleetInputs:
    header, *documents = list(yaml.safe_load_all(case.read_text()))
    at = datetime.fromisoformat(header["at"])
    bodies = [doc for _, doc in iter_documents([REPO / f for f in header.get("files", [])])]
    bodies += [doc for doc in documents if doc]
    parsed = [parse_body(body) for body in bodies]
    models = [model for model, _ in parsed if model is not None]
    metrics = tmp / "metrics.yaml"
    metrics.write_text(yaml.safe_dump(header.get("metrics") or {"variants": {}}))
    addresses: dict[Any, dict[str, tuple[str, int]]] = {}
    for pool, by_variant in (header.get("serviceAddresses") or {}).items():
        addresses[_key(pool)] = {
            variant: (address.rpartition(":")[0], int(address.rpartition(":")[2]))
            for variant, address in by_variant.items()
        }
    return FleetInputs(
        now=at,
        pools=[m for m in models if m.kind == "ModelPool"],
        reservations=[m for m in models if m.kind == "Reservation"],
        policies=[m for m in models if m.kind == "RoutingPolicy"],
        rejected=[rejected for _, rejected in parsed if rejected is not None],
        observations=load_observations(metrics, at),
        api_keys={
            _key(policy): parse_api_keys(keys, f"{case.name} apiKeys.{policy}")
            for policy, keys in (header.get("apiKeys") or {}).items()
        },
        service_addresses=addresses,
        deployed_replicas=dict(header.get("deployedReplicas") or {}),
        gateway=GatewaySettings(**_settings(header.get("gateway") or {})),
    )


def _settings(given: dict[str, Any]) -> dict[str, Any]:
    """`gateway: {image, statsPort, ...}` of a case -> GatewaySettings' fields."""
    names = {"image": "image", "statsPort": "stats_port", "resources": "resources"}
    return {names[key]: value for key, value in given.items()}


def _readable(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] != "Secret":
        return obj
    shown = {k: v for k, v in obj.items() if k != "data"}
    shown["stringData"] = {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}
    return shown


def run_case(case: Path) -> str:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = desired(inputs_of(case, Path(tmp)))
    objects = list(result.workloads)
    for gateway in result.gateways.values():
        objects += [gateway.secret, gateway.config_map]
    document = {
        "objects": [_readable(obj) for obj in objects],
        "statuses": [
            {
                "kind": update.target.kind,
                "namespace": update.target.namespace,
                "name": update.target.name,
                "status": update.wire(),
            }
            for update in result.statuses.values()
        ],
        "events": [
            {
                "kind": e.target.kind,
                "namespace": e.target.namespace,
                "name": e.target.name,
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
            }
            for e in result.events
        ],
    }
    return dump_yaml(document)


CASES = GoldenCases(CASES_DIR, ".out.yaml", run_case)
case_inputs = CASES.inputs
expected_output = CASES.expected
regenerate = CASES.regenerate
