"""The operator benchmark at a tiny scale, through the same path as `make bench`: a fresh
process measures, the parent writes the JSON. Shape and arithmetic only, never timings."""

import json
import types

import bench.operator as operator_bench
import pytest
from bench import MissingTool
from bench.__main__ import discover, run_one

POOLS = 2


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "operator.json"
    returned = operator_bench.run(pools=POOLS, seed=7, results=path)
    assert json.loads(path.read_text()) == returned
    return returned


def test_json_says_what_was_measured_and_where(result):
    assert result["benchmark"] == "operator"
    assert "Envoy validation" in result["not_included"]
    assert result["date"].endswith("+00:00")
    machine = result["machine"]
    assert machine["nproc"] >= 1
    assert machine["python"].count(".") == 2
    assert {"load_average_1m_before", "load_average_1m_after"} <= set(machine)
    for number in result["memory"].values():
        assert number > 0


def test_every_phase_is_timed_and_the_total_is_the_operators(result):
    for cycle in (result["cycle"], result["first_cycle"]):
        assert tuple(cycle["phases"]) == operator_bench.PHASES
        for clock in ("cpu_seconds", "wall_seconds"):
            parts = sum(
                phase[clock]
                for name, phase in cycle["phases"].items()
                if name in operator_bench.OPERATOR_PHASES
            )
            assert cycle["total"][clock] == pytest.approx(parts, abs=1e-3)


def test_steady_and_worst_cycles_list_every_run_and_the_collector(result):
    steady, worst = result["cycle"], result["worst_cycle"]
    assert len(steady["of_cycles_cpu_seconds"]) == operator_bench.STEADY_CYCLES
    # The reported steady cycle is the median run, the worst the slower of the two.
    ordered = sorted(steady["of_cycles_cpu_seconds"])
    assert steady["total"]["cpu_seconds"] == ordered[len(ordered) // 2]
    assert worst["total"]["cpu_seconds"] == max(worst["of_cycles_cpu_seconds"])
    assert len(worst["of_cycles_cpu_seconds"]) == 2
    for cycle in (steady, worst, result["first_cycle"]):
        assert cycle["gc"]["collections"] >= 0 and cycle["gc"]["cpu_seconds"] >= 0


def test_the_worst_cycle_is_also_charged_one_steady_young_collection(result):
    young, worst = result["young_collection"], result["worst_cycle"]
    # The refreshes since the start-up's collection left their statuses young.
    assert young["objects"] > 10 * POOLS and young["cpu_seconds"] >= 0
    assert young["after_refreshes"] == operator_bench.STEADY_CYCLES
    # Whatever collection fell in a worst cycle is replaced by that one.
    charged = worst["with_young_collection_cpu_seconds"]
    own = worst["total"]["cpu_seconds"] - worst["gc"]["cpu_seconds"]
    assert charged >= own + young["cpu_seconds"] - 1e-3
    assert charged <= max(worst["of_cycles_cpu_seconds"]) + young["cpu_seconds"] + 1e-3


def test_every_run_is_listed_and_the_reported_one_is_the_median_steady_run(result):
    runs = result["runs"]
    assert len(runs) == operator_bench.RUNS
    steady = sorted(r["steady_cpu_seconds"] for r in runs)
    assert result["cycle"]["total"]["cpu_seconds"] == steady[len(steady) // 2]
    median = result["median_of_runs"]
    for name in ("worst_cpu_seconds", "worst_with_young_collection_cpu_seconds"):
        values = sorted(r[name] for r in runs)
        assert median[name] == values[len(values) // 2]
    assert median["max_rss_mib"] == max(r["max_rss_mib"] for r in runs)
    assert "median of 3 runs" in operator_bench.headline(result)


def test_scale_matches_the_request(result):
    scale = result["scale"]
    assert scale["pools"] == scale["routing_policies"] == POOLS
    assert scale["variants"] == 4 * POOLS
    assert scale["observations_moved"] == round(scale["observed_variants"] * 0.1)


def test_every_rendered_object_is_diffed_once(result):
    for counts in (result["counts"], result["first_cycle_counts"]):
        plan, render, diff = counts["plan"], counts["render"], counts["diff"]
        assert sum(plan["by_reason"].values()) == plan["variants"] == 4 * POOLS
        assert render["deployments"] == render["services"] == plan["variants"]
        assert render["gateways"] == POOLS
        assert sum(diff["deployments"].values()) == render["deployments"]
        assert sum(diff["services"].values()) == render["services"]
        assert sum(diff["gateways"].values()) == render["gateways"]
        # A gateway that changed is applied as a ConfigMap and a Secret.
        published = diff["gateways"]["new"] + diff["gateways"]["changed"]
        assert diff["gateway_objects_to_apply"] == 2 * published
        # A pool's status always moves (its plan's time); the others only when they change.
        assert POOLS <= diff["statuses_written"] <= render["statuses"]
    # The first cycle writes every status: none was there to compare with.
    first = result["first_cycle_counts"]
    assert first["diff"]["statuses_written"] == first["render"]["statuses"]


def test_first_cycle_creates_everything_second_applies_only_scaled_deployments(result):
    first = result["first_cycle_counts"]["diff"]
    assert first["deployments"]["new"] == first["services"]["new"] == 4 * POOLS
    assert first["gateways"]["new"] == POOLS
    counts = result["counts"]
    diff = counts["diff"]
    assert diff["deployments"]["new"] == diff["services"]["new"] == diff["gateways"]["new"] == 0
    # Only the replica count of a Deployment follows the plan; Services never change.
    assert diff["deployments"]["changed"] == counts["plan"]["scaled"]
    assert diff["services"]["changed"] == 0


def test_discovery_finds_the_benchmarks_and_not_their_helpers():
    found, broken = discover()
    assert broken == {}
    assert {"gateway", "operator"} <= set(found)
    assert "operator_fleet" not in found


def test_a_benchmark_whose_tool_is_missing_is_skipped_with_the_message():
    def wrk_binary():
        raise RuntimeError("the gateway benchmark needs wrk: apt-get install wrk")

    def never():
        raise AssertionError("run() must not be called when a tool is missing")

    module = types.SimpleNamespace(wrk_binary=wrk_binary, run=never)
    outcome = run_one("fake", module)
    assert (outcome.status, outcome.detail) == (
        "skipped",
        "wrk is missing: the gateway benchmark needs wrk: apt-get install wrk",
    )

    def needs_tool():
        raise MissingTool("install thing")

    outcome = run_one("fake", types.SimpleNamespace(run=needs_tool))
    assert (outcome.status, outcome.detail) == ("skipped", "install thing")
