"""The instruction-count benchmark of the operator's cycles: its arithmetic, and one run at a
tiny scale through the same path as `make bench` (valgrind counting fresh processes)."""

import json
import shutil

import bench.operator_instructions as instructions_bench
import pytest
from bench.__main__ import discover

CACHEGRIND_SUMMARY = """\
==9788== Cachegrind, a high-precision tracing profiler
==9788== Command: python -m bench.operator_instructions --cycles base
==9788==
==9788== I   refs:      11,207,940,360
"""


def test_the_count_is_read_from_cachegrinds_summary():
    assert instructions_bench.instructions_of(CACHEGRIND_SUMMARY) == 11_207_940_360


def test_an_output_without_a_count_is_an_error_that_shows_it():
    with pytest.raises(RuntimeError, match="(?s)no instruction count.*Command: python"):
        instructions_bench.instructions_of(CACHEGRIND_SUMMARY.replace("I   refs", "I refs?"))


def test_each_cycle_is_the_difference_of_two_processes():
    counts = {"base": 1_000, "steady": 1_000 + 3 * 50, "unready": 1_000 + 90, "back": 1_090 + 70}
    cycles = instructions_bench.per_cycle(counts, pools=10)
    assert cycles["steady"] == {"instructions": 50, "per_pool": 5}
    assert cycles["worst_directions"] == {"unready": 90, "back": 70}
    # The worst is the slower direction, whichever it is.
    assert cycles["worst"] == {"instructions": 90, "per_pool": 9}
    counts["back"] = 1_090 + 120
    assert instructions_bench.per_cycle(counts, pools=10)["worst"]["instructions"] == 120


def test_make_bench_finds_it():
    found, broken = discover()
    assert broken == {}
    assert "operator_instructions" in found


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_a_tiny_fleet_counts_through_valgrind(tmp_path):
    path = tmp_path / "operator-instructions.json"
    result = instructions_bench.run(pools=2, seed=7, results=path)
    assert json.loads(path.read_text()) == result
    counts = result["process_counts"]
    assert set(counts) == set(instructions_bench.MODES)
    # Each mode runs more cycles than the one before it in the list, on the same start.
    assert counts["base"] < counts["unready"] < counts["back"]
    assert counts["base"] < counts["steady"]
    steady, worst = result["steady"], result["worst"]
    assert 0 < steady["instructions"] < worst["instructions"]
    assert steady["per_pool"] == round(steady["instructions"] / 2)
    assert result["valgrind"].startswith("valgrind-")
    assert result["scale"] == {"pools": 2, "seed": 7}
