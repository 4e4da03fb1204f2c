import pytest
import yaml

from tests.golden.kube_cases import case_inputs, expected_output, run_case


@pytest.mark.parametrize("case", case_inputs(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_workloads_match_golden(case):
    expected = expected_output(case)
    assert expected.exists(), f"no {expected.name}: run `make golden` and review the diff"
    assert list(yaml.safe_load_all(run_case(case))) == list(
        yaml.safe_load_all(expected.read_text())
    ), f"{case.name}: the manifests changed; if intended, run `make golden` and review the diff"
