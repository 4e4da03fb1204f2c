"""Every bad input is refused by `modelfleet plan` with exit 2 and its file, object and path."""

from pathlib import Path

import pytest

from modelfleet.cli import main

BAD = sorted((Path(__file__).parents[1] / "bad_inputs").glob("*.yaml"))


def expectation(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_input_is_refused_with_its_field_path(path, capsys):
    status = main(["plan", "-f", str(path), "--at", "2026-11-27T10:00:00+08:00", "-o", "json"])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == "", "nothing partial may be printed on stdout"
    assert str(path) in err
    assert expectation(path) in err, err


def test_every_error_is_reported_not_just_the_first(tmp_path, capsys):
    combined = tmp_path / "all.yaml"
    combined.write_text(
        "\n---\n".join(
            p.read_text() for p in BAD if p.stem in ("min-above-max", "zero-gpus")
        ).replace("name: chat", "name: chat2", 1)
    )
    assert main(["plan", "-f", str(combined)]) == 2
    err = capsys.readouterr().err
    assert "replicas.min" in err and "gpusPerReplica" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--at", "tomorrow"], "is not ISO-8601"),
        (["--at", "2026-11-27T10:00:00"], "has no UTC offset"),
    ],
)
def test_bad_time_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "-f", "manifests/samples", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_file_is_named(capsys):
    assert main(["plan", "-f", "no/such/dir"]) == 2
    assert "no/such/dir: no such file or directory" in capsys.readouterr().err


def test_bad_metrics_file(tmp_path, capsys):
    metrics = tmp_path / "m.yaml"
    metrics.write_text("variants:\n  chat/qwen25-7b: {waiting: -1}\n")
    assert main(["plan", "-f", "manifests/samples", "--metrics", str(metrics)]) == 2
    err = capsys.readouterr().err
    assert "variants.chat/qwen25-7b.waiting: must be >= 0" in err
    assert "key must be '<namespace>/<pool>/<variant>'" in err


def test_bad_previous_plan(tmp_path, capsys):
    previous = tmp_path / "prev.json"
    previous.write_text(
        '{"at": "2026-11-27T10:00:00+08:00", "pools": [{"name": "chat", '
        '"variants": [{"name": "qwen25-7b", "desiredReplicas": -3}]}]}'
    )
    assert main(["plan", "-f", "manifests/samples", "--previous", str(previous)]) == 2
    assert "pools[0].variants[0].desiredReplicas" in capsys.readouterr().err


def test_a_huge_value_is_never_echoed_whole(tmp_path, capsys):
    pool = (Path(__file__).parents[1] / "bad_inputs" / "zero-gpus.yaml").read_text()
    huge = tmp_path / "huge.yaml"
    huge.write_text(pool.replace("model: m", "model: " + "x" * 5_000_000))
    assert main(["plan", "-f", str(huge)]) == 2
    err = capsys.readouterr().err
    assert "spec.variants[0].model" in err and "(5000002 characters)" in err
    assert len(err) < 2000


def test_a_file_larger_than_an_input_can_be_is_refused_unread(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (9 * 1024 * 1024))
    assert main(["plan", "-f", str(big)]) == 2
    assert "inputs are limited to 8388608 bytes" in capsys.readouterr().err
