"""Golden renders: tests/golden/envoy/<case>.in.yaml through `modelfleet render envoy` must
give the reviewed files in tests/golden/envoy/<case>/ byte for byte (Envoy validates each
render on the way)."""

from __future__ import annotations

import pytest

from tests.golden.envoy.regenerate import case_inputs, expected_dir, run_case

pytestmark = pytest.mark.envoy


@pytest.mark.parametrize("case", case_inputs(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_render_matches_golden(case):
    expected = expected_dir(case)
    assert expected.is_dir(), f"no {expected.name}/: run `make golden` and review the diff"
    rendered = run_case(case)
    assert sorted(rendered) == sorted(p.name for p in expected.iterdir())
    for name, text in rendered.items():
        assert text == (expected / name).read_text(), (
            f"{case.name}: {name} changed; if intended, run `make golden` and review the diff"
        )


def test_same_input_renders_the_same_bytes():
    case = case_inputs()[0]
    assert run_case(case) == run_case(case)
