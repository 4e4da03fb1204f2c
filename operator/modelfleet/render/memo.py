"""A value computed once per set of input objects, for inputs that are handed out again as
the same objects while they do not change (the parse cache's specs and remembered
statuses, the routing cache's tables), or, `ValueMemo`, once per set of equal inputs. One
entry per key: memory follows the fleet."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class IdentityMemo(Generic[T]):
    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[tuple[Any, ...], T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, inputs: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """compute(), unless `key` last got it from the same inputs (`_same`)."""
        entry = self._entries.get(key)
        if entry is not None and self._same(entry[0], inputs):
            return entry[1]
        value = compute()
        self._entries[key] = (inputs, value)
        return value

    @staticmethod
    def _same(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
        """These very objects (compared by `is`)."""
        return len(old) == len(new) and all(a is b for a, b in zip(old, new, strict=True))

    def remember(self, key: Hashable, inputs: tuple[Any, ...], value: T) -> None:
        """What `key` gives for these objects, known without computing it."""
        self._entries[key] = (inputs, value)

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)


class ValueMemo(IdentityMemo[T]):
    """For results that depend on small values made anew each cycle: the inputs compared by
    `==` (each element by identity first, so an object handed out again costs no deeper
    comparison)."""

    @staticmethod
    def _same(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
        return old == new
