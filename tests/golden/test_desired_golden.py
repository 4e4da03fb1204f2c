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


@pytest.mark.parametrize("version", ["1.29.0", "latest"])
@pytest.mark.parametrize("case", case_inputs(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_every_written_object_is_valid_kubernetes(case, version):
    """What the operator writes passes the API's own schema, strict (unknown fields are
    errors), for the oldest Kubernetes the project supports and the newest known."""
    import kubernetes_validate
    import yaml
    from kubernetes_validate.utils import latest_version

    target = latest_version() if version == "latest" else version
    written = yaml.safe_load(expected_output(case).read_text())["objects"]
    problems = {}
    for obj in written:
        if obj["kind"] == "Secret":  # shown with stringData: as applied, with data
            obj = {k: v for k, v in obj.items() if k != "stringData"}
        try:
            kubernetes_validate.validate(obj, target, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems[f"{obj['kind']} {obj['metadata']['name']}"] = (
                f"{'.'.join(map(str, err.path))}: {err.message}"
            )
    assert problems == {}
