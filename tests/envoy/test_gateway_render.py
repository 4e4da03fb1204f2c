"""The renderer and its helpers without running Envoy: keys, matchers, clusters, where the
secrets go, and how files are published."""

from __future__ import annotations

import re

import pytest
import yaml

from modelfleet.api.keys import ApiKey, load_api_keys, parse_api_keys
from modelfleet.api.load import InvalidInput
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.apply.files import publish_gateway
from modelfleet.plan.routing.planner import plan_routing
from modelfleet.plan.routing.table import RouteMatchSpec, RoutingTable, TableRoute, WeightedBackend
from modelfleet.render.envoy.lua import lua_string
from modelfleet.render.envoy.matching import re2_literal, route_matches
from modelfleet.render.envoy.render import render_gateway

from .fleet import Fleet

LISTEN, ADMIN = ("0.0.0.0", 8080), ("127.0.0.1", 9901)


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return Fleet.load()


def render(fleet: Fleet, table=None, backends=None, keys=None) -> dict[str, str]:
    table = table or plan_routing(fleet.policy, fleet.pool, {})
    keys = fleet.keys if keys is None else keys
    return render_gateway(table, fleet.pool, fleet.policy, keys, backends or {}, LISTEN, ADMIN, "/")


def resources(files: dict[str, str], name: str) -> list[dict]:
    return yaml.safe_load(files[name])["resources"]


def test_api_keys_are_checked_field_by_field_without_echoing_keys():
    with pytest.raises(InvalidInput) as caught:
        parse_api_keys(
            {
                "keys": [
                    {"id": "a", "key": "sk-1", "tenant": "t"},
                    {"id": "b", "key": "sk 2", "tenant": "t.x", "extra": 1},
                    {"key": "sk-3", "tenant": "t"},
                    "sk-4",
                ]
            },
            "keys.yaml",
        )
    messages = [str(e) for e in caught.value.errors]
    assert messages == [
        "keys.yaml: api keys: keys[1].extra: unknown field: use only id, key and tenant",
        "keys.yaml: api keys: keys[1].tenant: 't.x' is not a valid tenant: use 1-63 letters, "
        "digits and '-', starting and ending with a letter or digit",
        "keys.yaml: api keys: keys[1].key: must be a non-empty string of visible ASCII "
        "characters (no spaces): it travels in an HTTP header",
        "keys.yaml: api keys: keys[2].id: this field is required: add it",
        "keys.yaml: api keys: keys[3]: expected {id, key, tenant}",
    ]
    assert not any(secret in m for secret in ("sk-1", "sk 2", "sk-3") for m in messages)
    with pytest.raises(InvalidInput, match="a list `keys"):
        parse_api_keys(["sk-1"], "keys.yaml")


def test_a_yaml_error_in_the_keys_file_does_not_quote_the_line(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - {id: a, key: sk-very-secret: x, tenant: t}\n")
    with pytest.raises(InvalidInput) as caught:
        load_api_keys(path)
    assert "line 2" in str(caught.value)
    assert "sk-very-secret" not in str(caught.value)
    assert "sk-very-secret" not in repr(ApiKey("a", "sk-very-secret", "t"))


def test_task_types_match_in_the_body_or_else_the_header():
    body, header = route_matches(RouteMatchSpec(task_types=("chat", "c++"), models=("m",)))
    assert body["dynamic_metadata"][1]["value"]["string_match"] == {
        "safe_regex": {"regex": r"^(?:chat|c\+\+)$"}
    }
    assert body["dynamic_metadata"][0]["value"]["string_match"] == {"exact": "m"}
    assert "headers" not in body
    assert header["headers"] == [
        {"name": "x-task-type", "string_match": {"safe_regex": {"regex": r"^(?:chat|c\+\+)$"}}}
    ]
    absent = header["dynamic_metadata"][1]
    assert absent["invert"] is True and absent["value"] == {"present_match": True}
    (only,) = route_matches(RouteMatchSpec(headers=(("X-Canary", "yes"),)))
    assert only["headers"] == [{"name": "x-canary", "string_match": {"exact": "yes"}}]
    assert re2_literal("a.b_c d/é") == r"a\.b_c d\/é"
    every_ascii = "".join(map(chr, range(128)))
    assert re.fullmatch(re2_literal(every_ascii), every_ascii)


def test_lua_literals_escape_everything_risky():
    assert lua_string('a"b\\c\nd') == r'"a\"b\\c\010d"'
    assert lua_string("é") == r'"\195\169"'


def test_upstreams_default_to_the_variants_services(fleet):
    clusters = resources(render(fleet, backends={"mid": ("10.0.0.9", 9000)}), "cds.yaml")
    by_name = {c["name"]: c for c in clusters}
    assert list(by_name)[:3] == ["big", "mid", "small"]

    def address(name):
        endpoint = by_name[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
        return endpoint["endpoint"]["address"]["socket_address"]

    assert address("big") == {"address": "gw-big.test.svc.cluster.local", "port_value": 8000}
    assert by_name["big"]["type"] == "STRICT_DNS"
    assert address("mid") == {"address": "10.0.0.9", "port_value": 9000}
    assert by_name["mid"]["type"] == "STATIC"
    with pytest.raises(ValueError, match="unknown variant 'huge'"):
        render(fleet, backends={"huge": ("10.0.0.1", 1)})


def test_keys_live_only_in_the_routes_file(fleet):
    files = render(fleet)
    for key in fleet.keys:
        assert [name for name, text in files.items() if key.key in text] == ["rds.yaml"]
    vhost = resources(files, "rds.yaml")[0]["virtual_hosts"][0]
    names = [v["name"] for v in vhost["virtual_clusters"]]
    assert names == ["acme_app", "acme_limited", "globex_other"]


def test_rendering_is_deterministic_and_tied_to_its_policy(fleet):
    assert render(fleet) == render(fleet, keys=list(reversed(fleet.keys)))
    stranger = RoutingTable(namespace="test", policy="other", pool="gw")
    with pytest.raises(ValueError, match="does not belong"):
        render(fleet, table=stranger)


def test_a_route_without_weight_answers_503(fleet):
    route = TableRoute("dead", RouteMatchSpec(models=("x",)), (WeightedBackend("big", 0),))
    table = RoutingTable(namespace="test", policy="gw", pool="gw", routes=(route,))
    vhost = resources(render(fleet, table=table), "rds.yaml")[0]["virtual_hosts"][0]
    (dead,) = [r for r in vhost["routes"] if r["name"] == "dead"]
    assert dead["direct_response"]["status"] == 503


def test_publish_renames_clusters_before_routes_and_skips_unchanged(tmp_path, monkeypatch):
    moves = []
    real_replace = __import__("os").replace
    monkeypatch.setattr(
        "modelfleet.apply.files.os.replace",
        lambda src, dst: (moves.append(dst.name), real_replace(src, dst)),
    )
    files = {"rds.yaml": "r1", "lds.yaml": "l1", "cds.yaml": "c1", "envoy.yaml": "b1"}
    written = publish_gateway(tmp_path, files, validate=None)
    assert moves == ["envoy.yaml", "cds.yaml", "lds.yaml", "rds.yaml"]
    assert [p.name for p in written] == moves
    assert (tmp_path / "rds.yaml").stat().st_mode & 0o777 == 0o600
    moves.clear()
    assert publish_gateway(tmp_path, {**files, "rds.yaml": "r2"}, validate=None)[0].name == (
        "rds.yaml"
    )
    assert moves == ["rds.yaml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_publish_writes_nothing_when_validation_fails(tmp_path):
    def refuse(files):
        raise ValueError("no")

    with pytest.raises(ValueError):
        publish_gateway(tmp_path / "out", {"rds.yaml": "r"}, validate=refuse)
    assert not (tmp_path / "out").exists()


def test_each_first_choice_falls_back_to_its_routes_heaviest_other_backend(fleet):
    files = render(fleet)
    clusters = {c["name"]: c for c in resources(files, "cds.yaml")}
    # split: big 70 / mid 20 / small 10; flip: mid only (small has weight 0); the others
    # have one backend and retry it.
    assert sorted(name for name in clusters if "." in name) == [
        "big.fallback-mid",
        "mid.fallback-big",
        "small.fallback-big",
    ]
    aggregate = clusters["small.fallback-big"]["cluster_type"]["typed_config"]["clusters"]
    assert aggregate == ["small", "big"]
    endpoint = clusters["big"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert endpoint["metadata"] == {"filter_metadata": {"modelfleet": {"variant": "big"}}}
    budget = clusters["big"]["circuit_breakers"]["thresholds"][0]["retry_budget"]
    assert budget == {"budget_percent": {"value": 20.0}, "min_retry_concurrency": 3}
    routes = resources(files, "rds.yaml")[0]["virtual_hosts"][0]["routes"]
    split = next(r for r in routes if r["name"] == "split")["route"]
    assert [c["name"] for c in split["weighted_clusters"]["clusters"]] == [
        "big.fallback-mid",
        "mid.fallback-big",
        "small.fallback-big",
    ]
    assert split["retry_policy"]["num_retries"] == 1
    assert split["retry_policy"]["per_try_timeout"] == "60s"
    assert split["hedge_policy"] == {"hedge_on_per_try_timeout": True}
    code = next(r for r in routes if r["name"] == "code")["route"]
    assert code["weighted_clusters"]["clusters"] == [{"name": "small", "weight": 100}]
    assert "retry_priority" not in code["retry_policy"]


def test_a_declared_fallback_and_slo_shape_a_route(fleet):
    data = fleet.policy.to_wire()
    code = next(r for r in data["spec"]["routes"] if r["name"] == "code")
    code["fallback"] = "mid"
    code["slo"] = {"e2eSeconds": 42}
    data["spec"]["gateway"]["timeouts"] = {"routeSeconds": 90}
    data["spec"]["gateway"]["fallback"] = {"firstByteSeconds": 2.5}
    policy = RoutingPolicy.model_validate(data)
    files = render_gateway(
        plan_routing(policy, fleet.pool, {}), fleet.pool, policy, fleet.keys, {}, LISTEN, ADMIN, "/"
    )
    routes = resources(files, "rds.yaml")[0]["virtual_hosts"][0]["routes"]
    by_name = {r["name"]: r["route"] for r in routes if "route" in r}
    assert by_name["code"]["weighted_clusters"]["clusters"] == [
        {"name": "small.fallback-mid", "weight": 100}
    ]
    assert (by_name["code"]["timeout"], by_name["code"]["idle_timeout"]) == ("42s", "42s")
    assert by_name["split"]["timeout"] == "90s"
    assert by_name["split"]["retry_policy"]["per_try_timeout"] == "2.5s"


def test_admin_stays_on_loopback_and_probes_use_the_stats_listener(fleet):
    bootstrap = yaml.safe_load(render(fleet)["envoy.yaml"])
    assert bootstrap["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }
    (stats,) = bootstrap["static_resources"]["listeners"]
    assert stats["address"]["socket_address"]["port_value"] == 9902
    assert stats["ignore_global_conn_limit"] is True
    manager = stats["filter_chains"][0]["filters"][0]["typed_config"]
    paths = [r["match"].get("path") for r in manager["route_config"]["virtual_hosts"][0]["routes"]]
    assert paths == ["/stats/prometheus", "/ready", None]
    (admin,) = bootstrap["static_resources"]["clusters"]
    assert admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"] == {
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9901}}
    }
    monitor = bootstrap["overload_manager"]["resource_monitors"][0]
    assert monitor["typed_config"]["max_active_downstream_connections"] == 10000
    with pytest.raises(ValueError, match="admin port must be fixed"):
        render_gateway(
            plan_routing(fleet.policy, fleet.pool, {}),
            fleet.pool,
            fleet.policy,
            fleet.keys,
            {},
            LISTEN,
            ("127.0.0.1", 0),
            "/",
        )


def test_lowercase_bearer_is_a_credential_too(fleet):
    vhost = resources(render(fleet), "rds.yaml")[0]["virtual_hosts"][0]
    credentials = vhost["typed_per_filter_config"]["envoy.filters.http.api_key_auth"]["credentials"]
    app = fleet.key("app").key
    assert [c["key"] for c in credentials if c["client"] == "app"] == [
        app,
        f"bearer {app}",
        f"BEARER {app}",
    ]
