import pytest

from tests.golden.desired_cases import case_inputs, expected_output, run_case


@pytest.mark.parametrize("case", case_inputs(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_desired_matches_golden(case):
    expected = expected_output(case)
    assert expected.exists(), f"no {expected.name}: run `make golden` and review the diff"
    assert run_case(case) == expected.read_text(), (
        f"{case.name}: what the operator writes changed; if intended, run `make golden` and "
        "review the diff"
    )


def test_there_are_cases():
    assert len(case_inputs()) >= 6
