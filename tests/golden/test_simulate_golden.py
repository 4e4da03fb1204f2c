import json

import pytest

from tests.golden.simulate_cases import case_inputs, expected_output, run_case


@pytest.mark.parametrize("case", case_inputs(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_simulate_report_matches_golden(case):
    expected = expected_output(case)
    assert expected.exists(), f"no {expected.name}: run `make golden` and review the diff"
    assert json.loads(run_case(case)) == json.loads(expected.read_text()), (
        f"{case.name}: the report changed; if intended, run `make golden` and review the diff"
    )
