"""Conditions are built without validation from PlanConditions, so a PlanCondition must be a
valid metav1.Condition as it is made."""

from __future__ import annotations

import pytest

from modelfleet.plan.scaling.types import PlanCondition


@pytest.mark.parametrize(
    ("status", "reason"),
    [("Maybe", "Applied"), ("True", "not camel"), ("False", ""), ("True", "Ends_with,")],
)
def test_a_plan_condition_must_be_a_valid_condition(status, reason):
    with pytest.raises(ValueError, match="not a condition"):
        PlanCondition("Ready", status, reason, "message")


def test_a_valid_plan_condition_is_made():
    assert PlanCondition("Ready", "True", "AllReplicasReady", "fine").reason == "AllReplicasReady"
