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
