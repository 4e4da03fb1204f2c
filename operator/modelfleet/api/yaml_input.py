"""YAML from people (and from anyone who can write a Secret), read with bounds.

PyYAML's safe loader still builds whatever a document describes: an alias bomb expands to
gigabytes once validated and printed, 100k nested sequences exhaust the recursion limit, and
a repeated key silently keeps the last value. This loader refuses all three, and documents
larger than a Kubernetes object can be, with the line of the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelfleet.api.errors import InputError, InvalidInput

# etcd holds objects of about 1.5 MiB; a file of several objects may be larger.
MAX_BYTES = 8 * 1024 * 1024
MAX_ALIASES = 100
MAX_DEPTH = 64
# Nodes a document may expand to once its aliases are followed (a few aliases nested a few
# levels deep multiply: nine levels of nine make 387 million).
MAX_EXPANDED_NODES = 200_000


class _Refused(yaml.YAMLError):
    def __init__(self, message: str, mark: yaml.Mark | None):
        super().__init__(message)
        self.problem = message
        self.problem_mark = mark


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader with a cap on aliases and nesting, and duplicate keys refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(
                    f"more than {MAX_ALIASES} aliases (*refs): write the values out",
                    self.peek_event().start_mark,
                )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(
                    f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        expanded = _expanded_nodes(node, {})
        if expanded > MAX_EXPANDED_NODES:
            raise _Refused(
                f"expands to more than {MAX_EXPANDED_NODES} values once its aliases are "
                "followed: write the values out",
                node.start_mark,
            )
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; the base class explains it
                break
            if first is not None:
                raise _Refused(
                    f"key {shown(key)} appears twice in one mapping (first on line "
                    f"{first.line + 1}): keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes `node` stands for with every alias expanded (the graph is shared, so
    each distinct node is counted once and its total reused)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    if isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_nodes(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total = 1 + sum(
            _expanded_nodes(key, memo) + _expanded_nodes(value, memo) for key, value in node.value
        )
    else:
        total = 1
    memo[id(node)] = total
    return total


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to a short prefix: error messages never echo a whole input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def read_bounded(path: Path) -> str:
    """A file's text, or InvalidInput when it cannot be read or is too large to be input."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            message = f"is {size} bytes; inputs are limited to {MAX_BYTES} bytes"
            raise InvalidInput([InputError(str(path), "", "", message)])
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        message = f"cannot read: {type(err).__name__}"
        raise InvalidInput([InputError(str(path), "", "", message)]) from None


def load_all(text: str, source: str) -> list[Any]:
    """Every document of `text`, or InvalidInput naming `source` and the line."""
    if len(text) > MAX_BYTES:
        message = f"is {len(text)} bytes; inputs are limited to {MAX_BYTES} bytes"
        raise InvalidInput([InputError(source, "", "", message)])
    loader = BoundedLoader(text)
    try:
        documents = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    except yaml.YAMLError as err:
        raise InvalidInput([InputError(source, "", "", _problem(err))]) from None
    except RecursionError:
        message = f"not valid YAML: nested too deeply (limit {MAX_DEPTH} levels)"
        raise InvalidInput([InputError(source, "", "", message)]) from None
    finally:
        loader.dispose()


def load_one(text: str, source: str) -> Any:
    documents = load_all(text, source)
    return documents[0] if documents else None


def _problem(err: yaml.YAMLError) -> str:
    # str(err) quotes the offending line, which may be huge or hold a secret: only the
    # problem and the place are reported.
    problem = getattr(err, "problem", None) or "syntax error"
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}"
