"""Problems in the input, located as precisely as we can: file, object, field path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class InputError:
    """One problem in the input, located as precisely as we can."""

    source: str  # "file.yaml#2" (document index) or "" for objects from the API
    obj: str  # "ModelPool llm/chat" or "" when the object cannot be named
    path: str  # "spec.variants[0].replicas.min" or ""
    message: str

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.source, self.obj, self.path) if part)
        return f"{where}: {self.message}" if where else self.message


class InvalidInput(Exception):
    def __init__(self, errors: Sequence[InputError]):
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))
