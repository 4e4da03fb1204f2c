"""The chart's renders and the kustomize manifests made from it, against their goldens."""

import difflib

import pytest

from tests.golden.chart_cases import (
    case_name,
    case_values,
    expected_manifests,
    expected_notes,
    kustomize_files,
    manifests_text,
    render_case,
)

REGENERATE = "if intended, run `make golden` and review the diff"


def _diff(expected: str, actual: str, name: str) -> str:
    lines = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), f"{name} (golden)", f"{name} (now)", lineterm=""
    )
    return "\n".join(list(lines)[:60])


@pytest.mark.parametrize("values", case_values(), ids=case_name)
def test_chart_renders_match_golden(values):
    expected = expected_manifests(values)
    assert expected.exists(), f"no {expected.name}: run `make golden` and review the diff"
    result = render_case(values)
    actual = manifests_text(result)
    assert actual == expected.read_text(), (
        f"{values.name}: the rendered chart changed; {REGENERATE}\n"
        + _diff(expected.read_text(), actual, expected.name)
    )
    assert result.notes == expected_notes(values).read_text(), f"NOTES.txt changed; {REGENERATE}"


def test_the_cases_cover_the_defaults_and_every_feature():
    assert {case_name(v) for v in case_values()} >= {"default", "all-features"}


def test_kustomize_manifests_are_the_chart_rendered():
    for path, text in kustomize_files().items():
        assert path.exists() and path.read_text() == text, (
            f"{path} is not the chart's render; {REGENERATE}\n"
            + _diff(path.read_text() if path.exists() else "", text, path.name)
        )
