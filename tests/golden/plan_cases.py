"""Golden cases of `modelfleet plan`: tests/golden/plan/<case>.in.yaml -> <case>.out.json.

An input is multi-document YAML. The first document is the case's command line:
`{at: ISO-8601, files: [paths relative to the repo] (optional), metrics: {...} (optional),
previous: {...} (optional)}`; the rest are resources. The case is run through the real CLI (`modelfleet plan -o json`).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import yaml

from modelfleet.cli import main
from tests.golden.cases import GoldenCases

CASES_DIR = Path(__file__).parent / "plan"
REPO = Path(__file__).resolve().parents[2]


def run_case(case: Path) -> str:
    header, *resources = list(yaml.safe_load_all(case.read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        argv = ["plan", "--at", header["at"], "-o", "json"]
        for included in header.get("files", []):
            argv += ["-f", str(REPO / included)]
        if resources:
            (tmp_dir / "resources.yaml").write_text(yaml.safe_dump_all(resources))
            argv += ["-f", str(tmp_dir / "resources.yaml")]
        for option in ("metrics", "previous"):
            if option in header:
                path = tmp_dir / f"{option}.json"
                path.write_text(json.dumps(header[option]))
                argv += [f"--{option}", str(path)]
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            status = main(argv)
    if status != 0:
        raise AssertionError(f"{case.name}: modelfleet plan exited {status}")
    return stdout.getvalue()


CASES = GoldenCases(CASES_DIR, ".out.json", run_case)
case_inputs = CASES.inputs
expected_output = CASES.expected
regenerate = CASES.regenerate
