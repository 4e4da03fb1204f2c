"""crds/ is generated from the models: no drift, valid and structural CRDs, samples accepted,
bad objects refused by the schema or by the CEL rules (evaluated with cel-python), and the
pydantic models agreeing with the CRDs on every one of those objects."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pydantic
import pytest
import yaml
from celpy import celtypes

from modelfleet.api import GROUP, KINDS
from modelfleet.api.crd import CONDITION_FIELDS, crd_documents, crd_file_name, crd_yaml, write_crds

REPO = Path(__file__).resolve().parents[2]
CRDS_DIR = REPO / "crds"
SAMPLES_DIR = REPO / "manifests" / "samples"

CEL = "x-kubernetes-validations"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
NOT_STRUCTURAL = ("$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "not", "title")
LIST_MACRO = re.compile(r"\bself\.(\w+)\.(?:all|exists|exists_one|map|filter)\(")


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {doc["spec"]["names"]["kind"]: doc for doc in crd_documents()}


@pytest.fixture(scope="module")
def schemas(documents: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        kind: doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for kind, doc in documents.items()
    }


@pytest.fixture(scope="module")
def samples() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj:
                assert obj["kind"] not in found, f"{path.name}: a second {obj['kind']} sample"
                found[obj["kind"]] = obj
    assert set(found) == set(KINDS), f"manifests/samples/ lacks {set(KINDS) - set(found)}"
    return found


# --- drift and files -------------------------------------------------------------------------


def test_committed_crds_match_the_models(documents: dict[str, dict[str, Any]]) -> None:
    expected = {crd_file_name(doc): crd_yaml(doc) for doc in documents.values()}
    committed = {path.name: path.read_text() for path in CRDS_DIR.glob(f"*.{GROUP}.yaml")}
    assert sorted(committed) == sorted(expected), (
        "crds/ has other files than the models make: run make crds"
    )
    for name, text in expected.items():
        assert committed[name] == text, f"crds/{name} differs from the models: run make crds"


def test_write_crds_is_byte_stable_and_drops_stale_files(tmp_path: Path) -> None:
    stale = tmp_path / f"oldkinds.{GROUP}.yaml"
    stale.write_text("kind: CustomResourceDefinition\n")
    unrelated = tmp_path / "README.md"
    unrelated.write_text("kept\n")
    first = {path.name: path.read_bytes() for path in write_crds(tmp_path)}
    second = {path.name: path.read_bytes() for path in write_crds(tmp_path)}
    assert first == second
    assert sorted(first) == sorted(
        f"{plural}.{GROUP}.yaml" for plural in ("modelpools", "reservations", "routingpolicies")
    )
    assert not stale.exists() and unrelated.exists()


# --- the CRD objects -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_is_a_valid_apiextensions_v1_object(
    documents: dict[str, dict[str, Any]], kind: str
) -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(documents[kind], version, strict=True)


def test_crd_names_columns_and_subresources(
    documents: dict[str, dict[str, Any]], schemas: dict[str, Any]
) -> None:
    expected = {
        "ModelPool": ("modelpools", ["mp"], ["Ready", "Desired", "GPUs", "Budget", "Age"]),
        "Reservation": (
            "reservations",
            ["rsv"],
            ["Pool", "Variant", "Tenant", "Replicas", "Granted", "Age"],
        ),
        "RoutingPolicy": ("routingpolicies", ["rp"], ["Pool", "Hash", "Ready", "Age"]),
    }
    assert set(documents) == set(expected)
    for kind, (plural, short_names, columns) in expected.items():
        spec = documents[kind]["spec"]
        assert documents[kind]["metadata"]["name"] == f"{plural}.{GROUP}"
        assert (spec["group"], spec["scope"]) == (GROUP, "Namespaced")
        assert spec["names"]["plural"] == plural
        assert spec["names"]["shortNames"] == short_names
        assert spec["names"]["categories"] == ["modelfleet"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        assert [column["name"] for column in version["additionalPrinterColumns"]] == columns
        for column in version["additionalPrinterColumns"]:
            node = _node_at_json_path(schemas[kind], column["jsonPath"])
            assert _column_type(node) == column["type"], f"{kind} column {column['name']}"


def _node_at_json_path(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    if json_path == ".metadata.creationTimestamp":
        return {"type": "string", "format": "date-time"}
    node = schema
    for name, selector in re.findall(r"\.(\w+)(\[[^\]]*\])?", json_path):
        node = node["properties"][name]
        if selector:
            node = node["items"]
    return node


def _column_type(node: dict[str, Any]) -> str:
    return "date" if node.get("format") == "date-time" else node["type"]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_status_conditions_are_metav1_conditions(schemas: dict[str, Any], kind: str) -> None:
    conditions = schemas[kind]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert tuple(item["properties"]) == CONDITION_FIELDS
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    transition = item["properties"]["lastTransitionTime"]
    assert (transition["type"], transition["format"]) == ("string", "date-time")
    assert item["properties"]["observedGeneration"]["type"] == "integer"
    assert {"type", "status", "reason"} <= set(item["required"])


# --- structural schemas ----------------------------------------------------------------------


def structural_problems(node: dict[str, Any], path: str = "") -> list[str]:
    """What the API server would object to in a CRD schema node and below."""
    problems = [f"{path or '.'}: {key} is not allowed" for key in NOT_STRUCTURAL if key in node]
    if "type" not in node and not node.get(PRESERVE):
        problems.append(f"{path or '.'}: no type and not x-kubernetes-preserve-unknown-fields")
    if node.get("type") not in (None, "object", "array", "string", "integer", "number", "boolean"):
        problems.append(f"{path or '.'}: type {node.get('type')!r}")
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if bound in node and not isinstance(node[bound], bool):
            problems.append(f"{path}: {bound} must be a boolean (OpenAPI v3.0)")
    if node.get("uniqueItems"):
        problems.append(f"{path}: uniqueItems is not allowed")
    if "additionalProperties" in node:
        if not isinstance(node["additionalProperties"], dict):
            problems.append(f"{path}: additionalProperties must be a schema")
        if "properties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
    if node.get("type") == "array" and not isinstance(node.get("items"), dict):
        problems.append(f"{path}: an array needs one items schema")
    if node.get("x-kubernetes-list-type") == "map":
        item = node.get("items", {})
        for key in node.get("x-kubernetes-list-map-keys", []) or [None]:
            field = item.get("properties", {}).get(key)
            if field is None or field.get("type") not in ("string", "integer", "boolean"):
                problems.append(f"{path}: list map key {key!r} is not a scalar field")
            elif key not in item.get("required", []) and "default" not in field:
                problems.append(f"{path}: list map key {key!r} is neither required nor defaulted")
    if "default" in node:
        problems.extend(
            f"{path}: default {node['default']!r}: {error.message}"
            for error in schema_validator(node).iter_errors(node["default"])
        )
    for name, sub in node.get("properties", {}).items():
        problems.extend(structural_problems(sub, f"{path}.{name}"))
    for key, suffix in (("items", "[]"), ("additionalProperties", ".*")):
        if isinstance(node.get(key), dict):
            problems.extend(structural_problems(node[key], path + suffix))
    return problems


def envelope_problems(schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    problems = [] if schema.get("type") == "object" else ["root is not an object"]
    if properties.get("metadata") != {"type": "object"}:
        problems.append(".metadata: must be just {type: object}")
    problems += [
        f".{name}: must be a string"
        for name in ("apiVersion", "kind")
        if properties.get(name, {}).get("type") != "string"
    ]
    return problems


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_crd_schema_is_structural(schemas: dict[str, Any], kind: str) -> None:
    assert structural_problems(schemas[kind]) + envelope_problems(schemas[kind]) == []


def test_structural_check_catches_what_the_api_server_refuses() -> None:
    bad = {
        "type": "object",
        "properties": {
            "ref": {"$ref": "#/$defs/Thing"},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "closed": {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": False,
            },
            "ratio": {"type": "number", "exclusiveMinimum": 0},
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["k"],
            },
            "port": {"type": "integer", "minimum": 1, "default": 0},
            "named": {"title": "Named", "type": "string"},
        },
    }
    problems = "\n".join(structural_problems(bad))
    for expected in (
        ".ref: $ref is not allowed",
        ".ref: no type",
        ".maybe: anyOf is not allowed",
        ".closed: additionalProperties must be a schema",
        ".ratio: exclusiveMinimum must be a boolean",
        ".items: list map key 'k' is neither required nor defaulted",
        ".port: default 0",
        ".named: title is not allowed",
    ):
        assert expected in problems
    assert envelope_problems(
        {"type": "object", "properties": {"metadata": {"type": "object", "properties": {}}}}
    ) == [
        ".metadata: must be just {type: object}",
        ".apiVersion: must be a string",
        ".kind: must be a string",
    ]


# --- schema validation of samples and bad objects --------------------------------------------

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = jsonschema.FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value)  # refuses impossible dates such as 2026-02-30
    return True


def schema_validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas are Draft 4 in the parts that validate (boolean exclusiveMinimum);
    # the x-kubernetes-* keywords are ignored here and checked by the CEL tests below.
    return jsonschema.Draft4Validator(schema, format_checker=FORMATS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_sample_validates_against_its_crd(
    schemas: dict[str, Any], samples: dict[str, Any], kind: str
) -> None:
    errors = [
        f"{list(error.absolute_path)}: {error.message}"
        for error in schema_validator(schemas[kind]).iter_errors(samples[kind])
    ]
    assert errors == []


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        node = obj
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return mutate


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        node = obj
        for step in path[:-1]:
            node = node[step]
        del node[path[-1]]

    return mutate


def _all(*mutations: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def mutate(obj: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(obj)

    return mutate


def _variant(index: int, *path: Any) -> tuple[Any, ...]:
    return ("spec", "variants", index, *path)


SCHEMA_REFUSALS = [
    pytest.param(
        "ModelPool",
        _set(("spec", "gpuBudget"), "lots"),
        ("spec", "gpuBudget"),
        "type",
        id="wrong-type",
    ),
    pytest.param(
        "ModelPool",
        _set(_variant(0, "gpusPerReplica"), 0),
        _variant(0, "gpusPerReplica"),
        "minimum",
        id="below-minimum",
    ),
    pytest.param(
        "ModelPool",
        _set(_variant(2, "queue", "targetPerReplica"), 0),
        _variant(2, "queue", "targetPerReplica"),
        "minimum",
        id="not-above-exclusive-minimum",
    ),
    pytest.param(
        "ModelPool",
        _set(_variant(3, "name"), "Qwen_7B"),
        _variant(3, "name"),
        "pattern",
        id="variant-name-not-dns-label",
    ),
    pytest.param(
        "ModelPool",
        _set(
            ("status",), {"conditions": [{"type": "Ready", "status": "Maybe", "reason": "Planned"}]}
        ),
        ("status", "conditions", 0, "status"),
        "enum",
        id="condition-status-unknown-value",
    ),
    pytest.param(
        "RoutingPolicy",
        _set(("spec", "routes", 1, "backends", 0, "variant"), "qwen3.30b"),
        ("spec", "routes", 1, "backends", 0, "variant"),
        "pattern",
        id="backend-variant-not-dns-label",
    ),
    pytest.param(
        "RoutingPolicy",
        _set(("spec", "gateway", "listenerPort"), 70000),
        ("spec", "gateway", "listenerPort"),
        "maximum",
        id="above-maximum",
    ),
    pytest.param(
        "Reservation",
        _set(("spec", "billing", "mode"), "prepaid"),
        ("spec", "billing", "mode"),
        "enum",
        id="billing-mode-unknown-value",
    ),
    pytest.param(
        "Reservation", _delete(("spec", "tenant")), ("spec",), "required", id="missing-required"
    ),
    pytest.param(
        "Reservation",
        _set(("spec", "window"), {"start": "tomorrow"}),
        ("spec", "window", "start"),
        "format",
        id="window-start-not-rfc3339",
    ),
]


@pytest.mark.parametrize(("kind", "mutate", "path", "validator"), SCHEMA_REFUSALS)
def test_schema_refuses_bad_object_at_its_path(
    schemas: dict[str, Any],
    samples: dict[str, Any],
    kind: str,
    mutate: Callable[[dict[str, Any]], None],
    path: tuple[Any, ...],
    validator: str,
) -> None:
    obj = copy.deepcopy(samples[kind])
    mutate(obj)
    errors = list(schema_validator(schemas[kind]).iter_errors(obj))
    assert [(tuple(error.absolute_path), error.validator) for error in errors] == [
        (path, validator)
    ]
    with pytest.raises(pydantic.ValidationError):
        KINDS[kind].model_validate(obj)


# --- CEL rules -------------------------------------------------------------------------------


@functools.cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def evaluate(rule: str, value: celtypes.Value) -> bool:
    result = _program(rule).evaluate({"self": value})
    if not isinstance(result, celtypes.BoolType):
        pytest.fail(f"cel-python could not evaluate {rule!r}: it gave {result!r}")
    return bool(result)


def to_cel(schema: dict[str, Any], value: Any) -> celtypes.Value:
    """A JSON value typed the way the API server types it for CEL (date-time -> timestamp)."""
    kind = schema.get("type")
    if kind == "object" and ("properties" in schema or "additionalProperties" in schema):
        properties = schema.get("properties", {})
        return celtypes.MapType(
            {
                celtypes.StringType(key): to_cel(
                    properties.get(key) or schema.get("additionalProperties") or {}, item
                )
                for key, item in value.items()
            }
        )
    if kind == "array":
        return celtypes.ListType([to_cel(schema["items"], item) for item in value])
    if kind == "string" and schema.get("format") == "date-time":
        return celtypes.TimestampType(value)
    if kind == "integer":
        return celtypes.IntType(value)
    if kind == "number":
        return celtypes.DoubleType(float(value))
    return celpy.json_to_cel(value)


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """The API server defaults an object before it runs the rules; do the same."""
    if isinstance(value, dict) and "properties" in schema:
        filled = {
            name: sub["default"]
            for name, sub in schema["properties"].items()
            if "default" in sub and name not in value
        }
        filled.update(
            {
                name: with_defaults(schema["properties"].get(name, {}), item)
                for name, item in value.items()
            }
        )
        return filled
    if isinstance(value, list) and "items" in schema:
        return [with_defaults(schema["items"], item) for item in value]
    return value


def rule_results(
    schema: dict[str, Any], value: Any, path: tuple[Any, ...] = ()
) -> Iterator[tuple[str, tuple[Any, ...], bool]]:
    """(rule, path of the value it ran on, verdict) for every rule at every node of value."""
    if path == ():
        value = with_defaults(schema, value)
    for rule in schema.get(CEL, []):
        yield rule["rule"], path, evaluate(rule["rule"], to_cel(schema, value))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from rule_results(sub, value[name], (*path, name))
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from rule_results(schema["items"], item, (*path, index))


def rules_in(
    schema: dict[str, Any], path: str = "", lists: tuple[tuple[str, dict[str, Any]], ...] = ()
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any], tuple[tuple[str, dict[str, Any]], ...]]]:
    """(schema path, node, rule, enclosing arrays) for every CEL rule in a schema."""
    for rule in schema.get(CEL, []):
        yield path or ".", schema, rule, lists
    for name, sub in schema.get("properties", {}).items():
        yield from rules_in(sub, f"{path}.{name}", lists)
    if "items" in schema:
        yield from rules_in(schema["items"], f"{path}[]", (*lists, (path, schema)))


def all_rules(schemas: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (kind, rule["rule"])
        for kind, schema in schemas.items()
        for _, _, rule, _ in rules_in(schema)
    }


def test_cel_rules_compile_and_point_at_real_fields(schemas: dict[str, Any]) -> None:
    for kind, schema in schemas.items():
        for path, node, rule, _ in rules_in(schema):
            _program(rule["rule"])
            assert rule["message"], f"{kind} {path}: a rule without a message"
            if "fieldPath" in rule:
                target = node
                for field in rule["fieldPath"].lstrip(".").split("."):
                    assert field in target.get("properties", {}), (
                        f"{kind} {path}: fieldPath {rule['fieldPath']} names no field"
                    )
                    target = target["properties"][field]


def test_cel_rules_stay_within_the_api_servers_cost_budget(schemas: dict[str, Any]) -> None:
    # The API server estimates each rule's cost on the largest object a request can hold and
    # refuses the CRD when a rule runs over, or sits inside, a list with no maxItems.
    unbounded = []
    for kind, schema in schemas.items():
        for path, node, rule, lists in rules_in(schema):
            unbounded += [
                f"{kind} {list_path}[] holds rule {rule['rule']!r}"
                for list_path, array in lists
                if "maxItems" not in array
            ]
            for field in LIST_MACRO.findall(rule["rule"]):
                if "maxItems" not in node["properties"][field]:
                    unbounded.append(f"{kind} {path}.{field} is iterated by {rule['rule']!r}")
    assert unbounded == []


WINDOW = ("spec", "window")
BILLING = ("spec", "billing")
METRICS_AUTH = ("spec", "metrics", "auth")
CLASSIFICATION = ("spec", "classification")
RULE = (*CLASSIFICATION, "rules", 0)


def _classification(rule: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return _set(CLASSIFICATION, {"rules": [{"name": "r", "taskType": "chat", **rule}]})


# Objects the rules must accept besides the samples, for rules the samples do not reach.
CEL_ACCEPTED = [
    (
        "Reservation",
        _set(WINDOW, {"start": "2026-12-01T08:00:00+08:00", "end": "2026-12-02T00:00:00Z"}),
    ),
    ("Reservation", _set(WINDOW, {"end": "2026-12-02T00:00:00Z"})),
    ("ModelPool", _set(METRICS_AUTH, {"bearerTokenSecret": {"name": "prom", "key": "token"}})),
    (
        "RoutingPolicy",
        _set(
            CLASSIFICATION,
            {
                "defaultRoute": "chat-summary",
                "rules": [
                    {"name": "code", "taskType": "code-simple", "keywords": ["python"]},
                    {"name": "legal", "taskType": "legal", "regex": "(?i)contract"},
                    {"name": "mid", "taskType": "chat", "promptLength": {"min": 10, "max": 90}},
                    {"name": "long", "taskType": "summary", "promptLength": {"min": 9000}},
                ],
            },
        ),
    ),
]

CEL_REFUSALS = [
    pytest.param(
        "ModelPool",
        _set(
            METRICS_AUTH,
            {"bearerTokenSecret": {"name": "prom", "key": "token"}, "basicAuthSecret": "prom"},
        ),
        "has(self.basicAuthSecret)",
        METRICS_AUTH,
        id="bearer-token-and-basic-auth",
    ),
    pytest.param(
        "ModelPool",
        _set(_variant(1, "replicas"), {"min": 13, "max": 12}),
        "self.min <= self.max",
        _variant(1, "replicas"),
        id="replicas-min-above-max",
    ),
    pytest.param(
        "ModelPool",
        _set(_variant(0, "schedules", 0, "replicas"), 25),
        "self.schedules.all(",
        _variant(0),
        id="schedule-replicas-above-max",
    ),
    # the same instant written with two offsets: compared as timestamps, not as text
    pytest.param(
        "Reservation",
        _set(WINDOW, {"start": "2026-12-01T08:00:00+08:00", "end": "2026-12-01T00:00:00Z"}),
        "self.end > self.start",
        WINDOW,
        id="window-end-not-after-start",
    ),
    pytest.param(
        "Reservation",
        _all(
            _set((*BILLING, "mode"), "reserved"), _delete((*BILLING, "reservedPricePerReplicaHour"))
        ),
        "has(self.reservedPricePerReplicaHour)",
        BILLING,
        id="reserved-without-price",
    ),
    pytest.param(
        "Reservation",
        _all(_set((*BILLING, "mode"), "onDemand"), _delete((*BILLING, "onDemandPricePerRequest"))),
        "has(self.onDemandPricePerRequest)",
        BILLING,
        id="ondemand-without-price",
    ),
    pytest.param(
        "RoutingPolicy",
        _all(
            _set(("spec", "routes", 1, "backends", 0, "weight"), 0),
            _set(("spec", "routes", 1, "backends", 1, "weight"), 0),
        ),
        "self.backends.exists(",
        ("spec", "routes", 1),
        id="all-weights-zero",
    ),
    pytest.param(
        "RoutingPolicy",
        _set(("spec", "degrade", 0, "fallback"), "qwen3-235b"),
        "self.fallback != self.variant",
        ("spec", "degrade", 0),
        id="degrade-to-itself",
    ),
    pytest.param(
        "RoutingPolicy",
        _classification({"keywords": ["python"], "regex": "python"}),
        "size(self.keywords) > 0",
        RULE,
        id="classification-rule-with-two-tests",
    ),
    pytest.param(
        "RoutingPolicy",
        _classification({"promptLength": {"unit": "tokens"}}),
        "has(self.min) || has(self.max)",
        (*RULE, "promptLength"),
        id="prompt-length-without-bounds",
    ),
    pytest.param(
        "RoutingPolicy",
        _classification({"promptLength": {"min": 10, "max": 5}}),
        "self.min <= self.max",
        (*RULE, "promptLength"),
        id="prompt-length-min-above-max",
    ),
    *(
        pytest.param(
            kind,
            _set(("metadata", "name"), "chat.v2"),
            "self.metadata.name",
            (),
            id=f"{kind}-name-not-dns-label",
        )
        for kind in sorted(KINDS)
    ),
]


def test_cel_rules_accept_the_samples(schemas: dict[str, Any], samples: dict[str, Any]) -> None:
    objects = [(kind, sample) for kind, sample in samples.items()]
    for kind, mutate in CEL_ACCEPTED:
        obj = copy.deepcopy(samples[kind])
        mutate(obj)
        KINDS[kind].model_validate(obj)
        objects.append((kind, obj))
    evaluated = set()
    for kind, obj in objects:
        for rule, path, verdict in rule_results(schemas[kind], obj):
            assert verdict, f"{kind} {list(path)}: {rule!r} refuses a valid object"
            evaluated.add((kind, rule))
    assert all_rules(schemas) - evaluated == set(), (
        "rules no valid object exercised: extend CEL_ACCEPTED"
    )


@pytest.mark.parametrize(("kind", "mutate", "rule_part", "path"), CEL_REFUSALS)
def test_cel_rule_refuses_bad_object(
    schemas: dict[str, Any],
    samples: dict[str, Any],
    kind: str,
    mutate: Callable[[dict[str, Any]], None],
    rule_part: str,
    path: tuple[Any, ...],
) -> None:
    obj = copy.deepcopy(samples[kind])
    mutate(obj)
    assert list(schema_validator(schemas[kind]).iter_errors(obj)) == [], (
        "the schema alone refuses it"
    )
    refused = [(rule, at) for rule, at, verdict in rule_results(schemas[kind], obj) if not verdict]
    assert len(refused) == 1 and rule_part in refused[0][0] and refused[0][1] == path, refused
    with pytest.raises(pydantic.ValidationError):
        KINDS[kind].model_validate(obj)


def test_every_cel_rule_has_a_bad_object(schemas: dict[str, Any]) -> None:
    covered = set()
    for case in CEL_REFUSALS:
        kind, _, rule_part, _ = case.values
        covered |= {
            (kind, rule) for k, rule in all_rules(schemas) if k == kind and rule_part in rule
        }
    assert all_rules(schemas) - covered == set(), "add a CEL_REFUSALS case for these rules"


def _undescribed(schema: dict, path: str, root: bool = False) -> list[str]:
    missing = []
    for name, node in (schema.get("properties") or {}).items():
        where = f"{path}.{name}"
        # The API server owns metadata's schema (and `kubectl explain` its descriptions).
        if "description" not in node and not (root and name == "metadata"):
            missing.append(where)
        missing += _undescribed(node, where)
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(schema.get(key), dict):
            missing += _undescribed(schema[key], path + suffix)
    return missing


@pytest.mark.parametrize("document", crd_documents(), ids=lambda d: d["spec"]["names"]["kind"])
def test_every_field_and_kind_is_described_for_kubectl_explain(document):
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema.get("description"), "the kind itself needs a description (its docstring)"
    missing = _undescribed(schema, document["spec"]["names"]["kind"], root=True)
    assert missing == [], "give these fields a Field(description=...): " + ", ".join(missing)
