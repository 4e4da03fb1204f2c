"""Golden cases of `modelfleet simulate`: tests/golden/simulate/<case>.in.yaml ->
<case>.report.json.

An input is `{args: [...]}`: the command line after `modelfleet simulate`, with file paths
relative to tests/golden/simulate/. The case runs through the real CLI (`--no-plots`) and
its report.json is the output.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import yaml

from modelfleet.cli import main
from tests.golden.cases import GoldenCases

CASES_DIR = Path(__file__).parent / "simulate"


def _resolve(arg: str) -> str:
    candidate = CASES_DIR / arg
    return str(candidate) if not arg.startswith("-") and candidate.exists() else arg


def run_case(case: Path) -> str:
    args = [_resolve(str(a)) for a in yaml.safe_load(case.read_text())["args"]]
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["simulate", *args, "--out", tmp, "--no-plots", "--quiet"]
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
        if status != 0:
            raise AssertionError(f"{case.name}: modelfleet simulate exited {status}")
        return (Path(tmp) / "report.json").read_text()


CASES = GoldenCases(CASES_DIR, ".report.json", run_case)
case_inputs = CASES.inputs
expected_output = CASES.expected
regenerate = CASES.regenerate
