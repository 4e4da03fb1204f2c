"""`modelfleet simulate` as a user runs it: the report files, the same decisions as
`modelfleet plan`, and bad input refused with exit 2 and the field named."""

import contextlib
import csv
import io
import json

import pytest

from modelfleet.cli import main
from modelfleet_testbed.cli.simulate import _run_with_progress
from modelfleet_testbed.sim.run import SimulationOptions, simulate

from .simulate_support import MINI_FLEET, REPO, SMALL_TRACE

BASELINES = "static-peak,schedule-only,queue-only"


def _simulate(*args: str) -> tuple[int, str]:
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(["simulate", *args])
    return status, stdout.getvalue()


def test_report_files_and_plots(tmp_path):
    out = tmp_path / "out"
    status, stdout = _simulate(
        "-f", str(MINI_FLEET), "--trace", str(SMALL_TRACE), "--compare", BASELINES,
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert status == 0
    for name in ("report.json", "report.md", "series.csv", "replicas.png", "queue.png"):
        assert str(out / name) in stdout
    for png in ("replicas.png", "queue.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    report = json.loads((out / "report.json").read_text())
    assert [run["name"] for run in report["runs"]] == ["policy", *BASELINES.split(",")]
    policy, static = report["runs"][0], report["runs"][1]
    assert static["gpuHours"] > policy["gpuHours"]
    assert policy["cost"]["byMode"]["hybrid"] > 0
    # Everyone is billed: acme by its hybrid Reservation (and on demand elsewhere), the
    # tenant without a Reservation at the variants' on-demand prices; tokens counted.
    billing = policy["cost"]["billing"]
    acme = sum(line["amount"] for line in billing if line["tenant"] == "acme")
    assert policy["cost"]["byTenant"]["acme"] == pytest.approx(acme, abs=1e-3)  # rounded
    assert acme >= policy["cost"]["byMode"]["hybrid"]
    assert set(policy["cost"]["byTenant"]) == set(policy["tenants"])
    assert all(t["billed"] > 0 and t["completionTokens"] > 0 for t in policy["tenants"].values())
    assert policy["slo"]["chat"]["ttft"]["targetSeconds"] == 0.5
    assert 0 < policy["sloAttainment"]["e2e"] <= 1
    assert any(e["reason"] == "schedule" for e in policy["scaleEvents"])
    markdown = (out / "report.md").read_text()
    assert "| static-peak |" in markdown and "Day curve:" in markdown
    with (out / "series.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    cycles = len({row["t"] for row in rows})
    assert len(rows) == 4 * cycles * 2  # runs x cycles x variants
    assert "simulated in" in stdout


def test_azure_trace_over_a_day_curve_on_the_samples(tmp_path):
    status, _ = _simulate(
        "-f", str(REPO / "manifests" / "samples"),
        "--trace", str(REPO / "data" / "traces" / "azure-llm-2023-conv.csv"),
        "--days", "0.05", "--diurnal", "office", "--rate", "1",
        "--out", str(tmp_path), "--no-plots", "--quiet",
    )  # fmt: skip
    assert status == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert "Splitwise" in report["trace"]["citation"]
    assert report["replay"]["start"] == "2023-11-17T00:00:00+08:00"  # trace day, pool zone
    statement = report["replay"]["diurnal"]["statement"]
    assert "office" in statement and "assumed, not observed" in statement
    assert report["runs"][0]["requests"]["served"] == report["replay"]["requests"]


def test_plan_decisions_are_those_of_modelfleet_plan(tmp_path):
    log = tmp_path / "plans.jsonl"
    status, _ = _simulate(
        "-f", str(MINI_FLEET), "--trace", str(SMALL_TRACE), "--out", str(tmp_path / "out"),
        "--no-plots", "--quiet", "--plans-log", str(log),
    )  # fmt: skip
    assert status == 0
    cycles = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(cycles) > 10
    changes = 0
    for index, cycle in enumerate(cycles):
        metrics = tmp_path / "metrics.json"
        metrics.write_text(json.dumps(cycle["metrics"]))
        argv = ["plan", "-f", str(MINI_FLEET), "--at", cycle["at"], "--metrics", str(metrics)]
        if index:
            previous = tmp_path / "previous.json"
            previous.write_text(json.dumps(cycles[index - 1]["plan"]))
            argv += ["--previous", str(previous)]
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert main([*argv, "-o", "json"]) == 0
        planned = json.loads(stdout.getvalue())
        simulated = cycle["plan"]
        assert _decisions(planned) == _decisions(simulated), f"cycle {index} at {cycle['at']}"
        assert planned["routing"] == simulated["routing"], f"cycle {index}"
        if index and _desired(simulated) != _desired(cycles[index - 1]["plan"]):
            changes += 1
    assert changes >= 3  # the comparison covers scale-ups and scale-downs


def _desired(document):
    return [v["desiredReplicas"] for v in document["pools"][0]["variants"]]


def _decisions(document):
    """The plan without the observation echo (a metrics file without sampledAt gets the
    plan time as its sample time in `modelfleet plan`)."""
    pool = dict(document["pools"][0])
    pool["variants"] = [
        {k: v for k, v in variant.items() if k != "observed"} for variant in pool["variants"]
    ]
    return pool


def test_progress_bar_does_not_change_the_result():
    options = SimulationOptions(files=[MINI_FLEET], trace=SMALL_TRACE, compare=["queue-only"])
    assert _run_with_progress(options, show=True).report == simulate(options).report


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (["--trace", "BAD_TRACE"], "ContextTokens"),
        (["--mix", "chat=1,chit-chat=1"], "chit-chat"),
        (["--compare", "static-peak,always-on"], "--compare"),
        (["--days", "-1"], "--days"),
        (["--diurnal", "weekly"], "--diurnal"),
        (["--gpu-profile", "moe=h200"], "unknown GPU profile"),
        (["--gpu-profile", "big=mistral-7b/1xL40S"], "--gpu-profile"),
        (["-f", "TYPO_FLEET"], "spec.variants[0].queue.targetPerReplicas"),
        (["-f", "NO_SIZE_FLEET"], "spec.variants[0].model"),
    ],
)
def test_bad_input_exits_2_naming_the_field(tmp_path, capsys, change, named):
    bad_trace = tmp_path / "bad.csv"
    bad_trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,ten,4\n")
    text = MINI_FLEET.read_text()
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("targetPerReplica: 6", "targetPerReplicas: 6"))
    no_size = tmp_path / "no-size.yaml"
    no_size.write_text(text.replace("Qwen/Qwen3-30B-A3B-Instruct-2507", "acme/house-model"))
    substitutes = {"BAD_TRACE": bad_trace, "TYPO_FLEET": typo, "NO_SIZE_FLEET": no_size}
    change = [str(substitutes.get(arg, arg)) for arg in change]
    files = change[1:2] if change[0] == "-f" else [str(MINI_FLEET)]
    rest = [] if change[0] == "-f" else change
    trace = [] if "--trace" in rest else ["--trace", str(SMALL_TRACE)]
    status, _ = _simulate(
        "-f", *files, *trace, *rest, "--out", str(tmp_path / "out"), "--no-plots", "--quiet"
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "problem(s) in the input" in err
    assert named in err
    assert not (tmp_path / "out").exists()
