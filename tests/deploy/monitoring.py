"""What the chart asks of Prometheus: the alert rules, the dashboard's queries, and the
metric names both use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.deploy.chart import CHART, Render

DASHBOARD = CHART / "dashboards" / "modelfleet.json"
# Grafana's own variables, as Grafana would fill them in for a query.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$namespace": ".*",
    "$pool": ".*",
}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])[A-Za-z_:][\w:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "by", "without", "on"}
    | {"ignoring", "group_left", "group_right"}
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and labels excluded)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        after = text[match.end() :].lstrip()
        if not after.startswith("(") and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries(board: dict[str, Any] | None = None) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    board = board or dashboard()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            yield f"variable {variable['name']}", inner.group(1) if inner else query


def as_prometheus_query(expr: str) -> str:
    for variable, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(variable, value)
    return expr


def rule_groups(result: Render) -> list[dict[str, Any]]:
    return result.one("PrometheusRule")["spec"]["groups"]


def alert_queries(result: Render) -> Iterator[tuple[str, str]]:
    for group in rule_groups(result):
        for rule in group["rules"]:
            yield f"alert {rule.get('alert') or rule.get('record')}", rule["expr"]


def named_metrics(result: Render) -> dict[str, set[str]]:
    """Metric name -> where the dashboard or the alerts use it."""
    used: dict[str, set[str]] = {}
    for where, expr in [*dashboard_queries(), *alert_queries(result)]:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used
