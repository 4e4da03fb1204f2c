"""A value computed once per set of input objects, for inputs that are handed out again as
the same objects while they do not change (the parse cache's specs and remembered
statuses, the routing cache's tables). One entry per key: memory follows the fleet."""

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
        """compute(), unless `key` last got it from these very objects (compared by `is`)."""
        entry = self._entries.get(key)
        if (
            entry is not None
            and len(entry[0]) == len(inputs)
            and all(old is new for old, new in zip(entry[0], inputs, strict=True))
        ):
            return entry[1]
        value = compute()
        self._entries[key] = (inputs, value)
        return value

    def remember(self, key: Hashable, inputs: tuple[Any, ...], value: T) -> None:
        """What `key` gives for these objects, known without computing it."""
        self._entries[key] = (inputs, value)

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)


class ValueMemo(Generic[T]):
    """`IdentityMemo` for inputs compared by `==` (each element is compared by identity
    first, so the objects handed out again cost no deeper comparison): for results that
    depend on small values made anew each cycle."""

    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[tuple[Any, ...], T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, inputs: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """compute(), unless `key` last got it from inputs equal to these."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] == inputs:
            return entry[1]
        value = compute()
        self._entries[key] = (inputs, value)
        return value

    def forget(self, key: Hashable) -> None:
        self._entries.pop(key, None)
