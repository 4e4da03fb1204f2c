"""Label and field selectors as the API server reads them from `?labelSelector=` / `?fieldSelector=`."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]

# `key in (a, b)`, `key notin (a)`, `key=v`, `key==v`, `key!=v`, `key`, `!key`
_SET_TERM = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*(?P<key>[^\s!=]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=()]+)\s*$")


class SelectorError(ValueError):
    """A selector the API server would answer with 400 Bad Request."""


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `( ... )` value sets."""
    terms, depth, current = [], 0, []
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term for term in terms if term.strip()]


def _label_term(term: str) -> Predicate:
    if match := _SET_TERM.match(term):
        key, op = match["key"], match["op"]
        values = {value.strip() for value in match["values"].split(",") if value.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if match := _EQ_TERM.match(term):
        key, op, value = match["key"], match["op"], match["value"]
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _EXISTS_TERM.match(term):
        key, negated = match["key"], bool(match["neg"])
        return lambda labels: (key in labels) != negated
    raise SelectorError(f"unable to parse label selector term {term!r}")


def label_selector(selector: str | None) -> Predicate:
    """A predicate over an object's `metadata.labels` for a label selector string."""
    if not selector:
        return lambda labels: True
    terms = [_label_term(term) for term in _split_terms(selector)]
    return lambda labels: all(term(labels) for term in terms)


def match_labels_selector(match_labels: Mapping[str, str]) -> str:
    """The string form of a `matchLabels` map (as `status.selector` of a Scale shows it)."""
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))


def _field_value(obj: Mapping[str, Any], dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_selector(selector: str | None) -> Predicate:
    """A predicate over a whole object for a field selector (`a.b=x,c!=y`)."""
    if not selector:
        return lambda obj: True
    checks: list[Predicate] = []
    for term in _split_terms(selector):
        match = _EQ_TERM.match(term)
        if match is None:
            raise SelectorError(f"unable to parse field selector term {term!r}")
        path, op, expected = match["key"], match["op"], match["value"]
        if op == "!=":
            checks.append(lambda obj, p=path, e=expected: _field_value(obj, p) != e)
        else:
            checks.append(lambda obj, p=path, e=expected: _field_value(obj, p) == e)
    return lambda obj: all(check(obj) for check in checks)


def object_selector(labels: str | None, fields: str | None) -> Predicate:
    """Both selectors of a list or watch request, as one predicate over whole objects."""
    by_labels = label_selector(labels)
    by_fields = field_selector(fields)
    return lambda obj: by_labels((obj.get("metadata") or {}).get("labels") or {}) and by_fields(obj)
