"""Parsed models share their fields-set record; nothing one does shows in another."""

from __future__ import annotations

import pydantic
import pytest

from modelfleet.api.common import Condition


def test_models_with_the_same_fields_share_one_record_and_copies_get_their_own():
    first = Condition.model_validate({"type": "Ready", "status": "True", "reason": "Up"})
    second = Condition.model_validate({"type": "Scaled", "status": "False", "reason": "Held"})
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    copied = first.model_copy(update={"message": "changed"})
    assert copied.model_fields_set == {"type", "status", "reason", "message"}
    assert second.model_fields_set == {"type", "status", "reason"}
    # What is written of an unset field is the same as without sharing.
    assert second.model_dump(exclude_unset=True) == {
        "type": "Scaled",
        "status": "False",
        "reason": "Held",
    }


def test_a_parsed_model_cannot_be_changed_in_place():
    condition = Condition.model_validate({"type": "Ready", "status": "True", "reason": "Up"})
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        condition.message = "changed"  # type: ignore[misc]
    assert condition.model_fields_set == {"type", "status", "reason"}


def test_a_field_left_to_its_default_shares_one_default_object():
    from modelfleet.api.modelpool import QueueScaling

    first = QueueScaling.model_validate({"targetPerReplica": 8})
    second = QueueScaling.model_validate({"targetPerReplica": 4})
    assert first.scale_down is second.scale_down
    assert first.scale_down.stabilization_seconds == 300
    assert "scale_down" not in first.model_fields_set
    told = QueueScaling.model_validate({"targetPerReplica": 4, "scaleDown": {"maxStep": 2}})
    assert told.scale_down is not first.scale_down  # what a spec says is its own
    assert told.scale_down.max_step == 2
    assert first.scale_down.max_step is None
    assert first.to_wire() == {
        "targetPerReplica": 8.0,
        "scaleUp": {"stabilizationSeconds": 0},
        "scaleDown": {"stabilizationSeconds": 300},
    }
