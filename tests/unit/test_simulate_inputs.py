"""Traces, day curves and the request mix of `modelfleet simulate`."""

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from modelfleet.api.load import InvalidInput, load_resources
from modelfleet_testbed.sim.arrivals import from_trace, synthetic
from modelfleet_testbed.sim.diurnal import PROFILES, envelope, parse_profile
from modelfleet_testbed.sim.traces import Trace, read_trace
from modelfleet_testbed.sim.workload import Mix, build_workload, default_mix, parse_shares

from .simulate_support import REPO

AZURE = REPO / "data" / "traces" / "azure-llm-2023-conv.csv"


def test_azure_trace_reads_the_shipped_file():
    trace = read_trace(AZURE)
    assert trace.format == "azure"
    assert len(trace) == 19366
    assert trace.arrivals[0] == 0.0
    assert trace.arrivals == sorted(trace.arrivals)
    assert trace.origin == datetime(2023, 11, 16, 18, 15, 46, 680590, tzinfo=UTC)
    assert (trace.prompt_tokens[0], trace.output_tokens[0]) == (374, 44)
    assert 5.0 < trace.mean_rate < 6.0


def test_mooncake_and_plain_csv_traces(tmp_path):
    mooncake = tmp_path / "trace.jsonl"
    mooncake.write_text(
        "\n".join(
            json.dumps(r)
            for r in (
                {"timestamp": 1500, "input_length": 10, "output_length": 3, "hash_ids": [1]},
                {"timestamp": 500, "input_length": 20, "output_length": 4},
            )
        )
    )
    trace = read_trace(mooncake)
    assert trace.format == "mooncake"
    assert trace.arrivals == [0.0, 1.0]  # sorted, milliseconds -> seconds
    assert trace.prompt_tokens == [20, 10]
    plain = tmp_path / "trace.csv"
    plain.write_text(
        "timestamp,input_tokens,output_tokens,task_type,tenant,priority\n"
        "2.5,100,10,chat,acme,low\n0.5,50,5,,,\n"
    )
    trace = read_trace(plain)
    assert trace.format == "csv"
    assert trace.arrivals == [0.0, 2.0]
    assert trace.task_types == [None, "chat"]
    assert trace.tenants == [None, "acme"]
    assert trace.priorities == [None, "low"]


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        (
            "a.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,12x,4\n",
            "a.csv:2",
        ),
        ("b.csv", "timestamp,input_tokens,output_tokens\n1,0,4\n", "input_tokens"),
        ("c.csv", "timestamp,input_tokens\n1,4\n", "output_tokens"),
        ("d.jsonl", '{"timestamp": 1, "input_length": 4}\n', "output_length"),
        ("e.csv", "timestamp,input_tokens,output_tokens\nsoon,4,4\n", "timestamp"),
    ],
)
def test_bad_trace_rows_name_line_and_column(tmp_path, name, text, where):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InvalidInput) as err:
        read_trace(path)
    assert where in str(err.value)


def test_envelope_has_mean_one_and_follows_the_profile():
    tz = ZoneInfo("Asia/Kolkata")  # a half-hour offset: pieces are cut at local hours
    start = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
    shape = envelope(PROFILES["office"], start, 7 * 86400, tz)
    widths = [b - a for a, b in zip(shape.starts, [*shape.starts[1:], shape.duration], strict=True)]
    mean = sum(f * w for f, w in zip(shape.factors, widths, strict=True)) / shape.duration
    assert mean == pytest.approx(1.0)
    local_noon_monday = datetime(2026, 1, 5, 12, 10, tzinfo=tz)
    local_3am = datetime(2026, 1, 5, 3, 10, tzinfo=tz)
    factor = shape.factor_at
    assert factor((local_noon_monday - start).total_seconds()) > 5 * factor(
        (local_3am - start).total_seconds()
    )


def test_stretching_keeps_requests_and_bends_the_rate():
    trace = Trace(
        "t", "csv", [float(i) for i in range(3600)], [100] * 3600, [10] * 3600
    )  # one a second
    day = 86400.0
    start = datetime(2026, 1, 5, tzinfo=UTC)
    shape = envelope(parse_profile(",".join(["0"] * 12 + ["2"] * 12)), start, day, UTC)
    requests = from_trace(trace, day, 0.5, shape)
    assert len(requests) == pytest.approx(0.5 * day, rel=0.001)
    assert list(requests.times) == sorted(requests.times)
    # the morning has factor 0: everything lands in the afternoon, at twice the mean rate
    assert min(requests.times) >= day / 2
    assert requests.times[-1] < day


def test_synthetic_is_seeded():
    one = synthetic(3600, 2.0, None, seed=3)
    two = synthetic(3600, 2.0, None, seed=3)
    other = synthetic(3600, 2.0, None, seed=4)
    assert list(one.times) == list(two.times) and list(one.prompt_tokens) == list(two.prompt_tokens)
    assert list(one.times) != list(other.times)
    assert len(one) == pytest.approx(7200, rel=0.1)


def test_default_mix_and_explicit_shares():
    resources = load_resources([REPO / "manifests" / "samples"])
    policy = resources.policies[0]
    mix = default_mix(policy, resources.reservations)
    assert mix.routes == {
        n: 0.25 for n in ("legal-medical", "chat-summary", "code-simple", "code-complex")
    }
    assert mix.tenants == {"fin-risk": 0.5, "shared": 0.5}
    assert mix.priorities == {"low": 0.25, "none": 0.75}
    assert parse_shares("a=1,b=3", "--mix") == {"a": 1.0, "b": 3.0}
    with pytest.raises(InvalidInput) as err:
        parse_shares("a=1,b", "--mix")
    assert "--mix" in str(err.value) and "NAME=SHARE" in str(err.value)


def test_workload_classes_match_their_routes_and_trace_fields_win(tmp_path):
    resources = load_resources([REPO / "manifests" / "samples"])
    policy = resources.policies[0]
    plain = tmp_path / "t.csv"
    plain.write_text(
        "timestamp,input_tokens,output_tokens,task_type,tenant\n"
        + "".join(f"{i},10,10,,\n" for i in range(400))
        + "400,10,10,medical,bank\n"
    )
    requests = from_trace(read_trace(plain), 401.0, None, None)
    mix = Mix({"chat-summary": 1, "by-model-7b": 1}, {"shared": 1}, {"none": 1, "low": 1})
    workload = build_workload(requests, policy, mix, seed=1)
    first = {workload.classes[c].describe() for c in workload.class_of[:400]}
    assert first == {
        "task_type=chat",
        "task_type=chat, x-priority: low",
        "model=qwen25-7b",
        "model=qwen25-7b, x-priority: low",
    }
    last = workload.classes[workload.class_of[400]]
    assert last.task_type == "medical"
    assert workload.tenants[workload.tenant_of[400]] == "bank"
    assert {workload.tenants[t] for t in workload.tenant_of[:400]} == {"shared"}


def test_the_forecast_sample_is_the_samples_pool_as_the_forecast_slo_run_replays_it():
    """manifests/samples-forecast/ is what `--compare forecast-slo` (and bench/policy.py)
    measure: the samples' pool with its schedules removed and `forecast: {}` everywhere."""
    from modelfleet_testbed.sim.baselines import baseline_pool

    (samples,) = load_resources([REPO / "manifests" / "samples"]).pools
    (forecast,) = load_resources([REPO / "manifests" / "samples-forecast"]).pools
    assert forecast.spec == baseline_pool(samples, "forecast-slo").spec
    assert all(v.forecast is not None and not v.schedules for v in forecast.spec.variants)
