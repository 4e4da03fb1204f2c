"""Server-side printing: `meta.k8s.io/v1` Table answers, what `kubectl get` shows.

kubectl asks with `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`. Custom resources
get their CRD's `additionalPrinterColumns` after NAME (jsonPath evaluated like
client-go's JSONPath, dates shown as ages); the built-in kinds get kube-apiserver's
columns (Deployment: NAME READY UP-TO-DATE AVAILABLE AGE; Pod; Event; ...). Every row
carries the object's metadata (PartialObjectMetadata) or the object (`includeObject=Object`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Row = list[Any]
_NAME_DOC = "Name must be unique within a namespace."
_AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created."
)


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def definition(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


def wants_table(accept: str) -> str | None:
    """The Table version asked for in an Accept header (v1 or v1beta1), or None."""
    for part in accept.split(","):
        params = dict(item.strip().split("=", 1) for item in part.split(";")[1:] if "=" in item)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return params.get("v", "v1")
    return None


# -- ages and small helpers -------------------------------------------------------------------


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def age(text: Any, now: datetime) -> str:
    when = parse_time(text)
    return "<unknown>" if when is None else human_duration((now - when).total_seconds())


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _selector_text(selector: Mapping[str, Any] | None) -> str:
    labels = (selector or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


# -- client-go's JSONPath, the part printer columns use ------------------------------------

_STEP = re.compile(
    r"""\.([A-Za-z0-9_\-]+)|\[(\*|-?\d+)\]|\[\?\(@\.([\w.\-]+)\s*(==|!=)\s*["']([^"']*)["']\)\]|\['([^']+)'\]"""
)


def json_path(obj: Any, path: str) -> list[Any]:
    """The results of a printer column's jsonPath (`.status.conditions[?(@.type=="Ready")]
    .status`, `.spec.items[*].name`, `.metadata.labels['app']`)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    results = [obj]
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            return []
        position = match.end()
        name, index, filter_field, operator, literal, quoted = match.groups()
        results = list(_step(results, name or quoted, index, filter_field, operator, literal))
    return results


def _step(values, name, index, filter_field, operator, literal):
    for value in values:
        if name is not None:
            if isinstance(value, Mapping) and name in value:
                yield value[name]
        elif index is not None:
            if isinstance(value, list):
                if index == "*":
                    yield from value
                elif -len(value) <= int(index) < len(value):
                    yield value[int(index)]
        elif isinstance(value, list):
            for item in value:
                found = item
                for part in filter_field.split("."):
                    found = found.get(part) if isinstance(found, Mapping) else None
                if found is None:
                    continue
                if (str(found) == literal) == (operator == "=="):
                    yield item


def _column_cell(column: Mapping[str, Any], obj: Mapping[str, Any], now: datetime) -> Any:
    results = json_path(obj, column.get("jsonPath", ""))
    if not results or results[0] is None:
        return None
    value = results[0]
    kind = column.get("type", "string")
    if kind == "integer":
        return (
            int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        )
    if kind == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if kind == "boolean":
        return value if isinstance(value, bool) else None
    if kind == "date":
        return age(value, now) if isinstance(value, str) else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return (
        json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)
    )


# -- the built-in kinds' printers (kubernetes/pkg/printers/internalversion) -------------------

Printer = tuple[Sequence[Column], Callable[[Mapping[str, Any], datetime], Row]]


def _name_age(obj, now) -> Row:
    return [_meta(obj).get("name"), age(_meta(obj).get("creationTimestamp"), now)]


NAME = Column("Name", format="name", description=_NAME_DOC)
AGE = Column("Age", description=_AGE_DOC)


def _deployment(obj, now) -> Row:
    spec, status = _spec(obj), _status(obj)
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        _meta(obj).get("name"),
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        int(status.get("updatedReplicas", 0)),
        int(status.get("availableReplicas", 0)),
        age(_meta(obj).get("creationTimestamp"), now),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        _selector_text(spec.get("selector")),
    ]


def _pod(obj, now) -> Row:
    spec, status = _spec(obj), _status(obj)
    statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    if _meta(obj).get("deletionTimestamp"):
        reason = "Terminating"
    return [
        _meta(obj).get("name"),
        f"{ready}/{total}",
        reason,
        str(restarts),
        age(_meta(obj).get("creationTimestamp"), now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _event(obj, now) -> Row:
    first = obj.get("firstTimestamp") or obj.get("eventTime")
    last = obj.get("lastTimestamp") or first
    count = obj.get("count") or 1
    series = obj.get("series")
    if series:
        last = series.get("lastObservedTime") or last
        count = series.get("count") or count
    involved = obj.get("involvedObject") or {}
    kind = str(involved.get("kind", "")).lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = obj.get("source") or {}
    reporter = source.get("component") or obj.get("reportingComponent") or ""
    if source.get("host"):
        reporter = f"{reporter}, {source['host']}"
    return [
        age(last, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        target,
        involved.get("fieldPath", ""),
        reporter,
        str(obj.get("message", "")).strip(),
        age(first, now),
        int(count),
        _meta(obj).get("name"),
    ]


def _service(obj, now) -> Row:
    spec = _spec(obj)
    ports = ",".join(
        f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol', 'TCP')}"
        for p in spec.get("ports") or []
    )
    selector = spec.get("selector") or {}
    return [
        _meta(obj).get("name"),
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP") or "<none>",
        "<none>",
        ports or "<none>",
        age(_meta(obj).get("creationTimestamp"), now),
        ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>",
    ]


def _namespace(obj, now) -> Row:
    return [
        _meta(obj).get("name"),
        _status(obj).get("phase", "Active"),
        age(_meta(obj).get("creationTimestamp"), now),
    ]


def _data_count(obj, now) -> Row:
    count = len(obj.get("data") or {}) + len(obj.get("binaryData") or {})
    return [_meta(obj).get("name"), count, age(_meta(obj).get("creationTimestamp"), now)]


def _secret(obj, now) -> Row:
    return [
        _meta(obj).get("name"),
        obj.get("type", "Opaque"),
        len(obj.get("data") or {}),
        age(_meta(obj).get("creationTimestamp"), now),
    ]


def _lease(obj, now) -> Row:
    holder = _spec(obj).get("holderIdentity") or "<none>"
    return [_meta(obj).get("name"), holder, age(_meta(obj).get("creationTimestamp"), now)]


def _role_binding(obj, now) -> Row:
    ref = obj.get("roleRef") or {}
    subjects = obj.get("subjects") or []

    def names(kind: str) -> str:
        return ",".join(
            (f"{s.get('namespace')}/{s['name']}" if kind == "ServiceAccount" else s["name"])
            for s in subjects
            if s.get("kind") == kind
        )

    return [
        _meta(obj).get("name"),
        f"{ref.get('kind')}/{ref.get('name')}",
        age(_meta(obj).get("creationTimestamp"), now),
        names("User"),
        names("Group"),
        names("ServiceAccount"),
    ]


def _pdb(obj, now) -> Row:
    spec = _spec(obj)
    return [
        _meta(obj).get("name"),
        str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
        str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A",
        int(_status(obj).get("disruptionsAllowed", 0)),
        age(_meta(obj).get("creationTimestamp"), now),
    ]


def _network_policy(obj, now) -> Row:
    selector = (_spec(obj).get("podSelector") or {}).get("matchLabels") or {}
    text = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"
    return [_meta(obj).get("name"), text, age(_meta(obj).get("creationTimestamp"), now)]


def _crd(obj, now) -> Row:
    return [_meta(obj).get("name"), _meta(obj).get("creationTimestamp")]


def _p1(name: str, description: str = "") -> Column:
    return Column(name, priority=1, description=description)


BUILTIN_PRINTERS: dict[str, Printer] = {
    "Deployment": (
        [
            NAME,
            Column("Ready", description="Number of the pod with ready state"),
            Column("Up-to-date", type="integer", description="Pods of the current template."),
            Column("Available", type="integer", description="Pods available to serve."),
            AGE,
            _p1("Containers", "Names of each container in the template."),
            _p1("Images", "Images referenced by each container in the template."),
            _p1("Selector", "Label selector for pods."),
        ],
        _deployment,
    ),
    "Pod": (
        [
            NAME,
            Column(
                "Ready",
                description="The aggregate readiness state of this pod for accepting traffic.",
            ),
            Column("Status", description="The aggregate status of the containers in this pod."),
            Column(
                "Restarts",
                description="The number of times the containers in this pod have been restarted.",
            ),
            AGE,
            _p1("IP", "IP address allocated to the pod."),
            _p1("Node", "Name of the node the pod is scheduled on."),
            _p1("Nominated Node", "Node the scheduler nominated for preemption."),
            _p1("Readiness Gates", "Pod readiness gates."),
        ],
        _pod,
    ),
    "Event": (
        [
            Column(
                "Last Seen",
                description="The time at which the most recent occurrence of this event was recorded.",
            ),
            Column("Type", description="Type of this event (Normal, Warning)."),
            Column(
                "Reason",
                description="A short, machine understandable string for why the event happened.",
            ),
            Column("Object", description="The object that this event is about."),
            _p1("Subobject", "The part of the object the event is about."),
            _p1("Source", "The component reporting this event."),
            Column(
                "Message",
                description="A human-readable description of the status of this operation.",
            ),
            _p1("First Seen", "The time at which the event was first recorded."),
            Column(
                "Count",
                type="integer",
                priority=1,
                description="The number of times this event has occurred.",
            ),
            Column("Name", priority=1, format="name", description=_NAME_DOC),
        ],
        _event,
    ),
    "Service": (
        [
            NAME,
            Column("Type", description="How the Service is exposed."),
            Column("Cluster-IP", description="The virtual IP of the Service."),
            Column("External-IP", description="External addresses of the Service."),
            Column("Port(s)", description="Ports the Service exposes."),
            AGE,
            _p1("Selector", "Pods the Service routes to."),
        ],
        _service,
    ),
    "Namespace": ([NAME, Column("Status", description="The namespace's phase."), AGE], _namespace),
    "ConfigMap": ([NAME, Column("Data", type="integer", description="Entries."), AGE], _data_count),
    "Secret": (
        [
            NAME,
            Column("Type", description="The secret type."),
            Column("Data", type="integer", description="Entries."),
            AGE,
        ],
        _secret,
    ),
    "Lease": ([NAME, Column("Holder", description="Who holds the lease."), AGE], _lease),
    "RoleBinding": (
        [
            NAME,
            Column("Role", description="The role granted."),
            AGE,
            _p1("Users", "Users granted the role."),
            _p1("Groups", "Groups granted the role."),
            _p1("ServiceAccounts", "Service accounts granted the role."),
        ],
        _role_binding,
    ),
    "PodDisruptionBudget": (
        [
            NAME,
            Column("Min Available", description="Pods that must stay available."),
            Column("Max Unavailable", description="Pods that may be unavailable."),
            Column("Allowed Disruptions", type="integer", description="Disruptions allowed now."),
            AGE,
        ],
        _pdb,
    ),
    "NetworkPolicy": (
        [NAME, Column("Pod-Selector", description="Pods the policy applies to."), AGE],
        _network_policy,
    ),
    "CustomResourceDefinition": (
        [NAME, Column("Created At", type="date", description=_AGE_DOC)],
        _crd,
    ),
}
BUILTIN_PRINTERS["ClusterRoleBinding"] = BUILTIN_PRINTERS["RoleBinding"]


# -- tables -----------------------------------------------------------------------------------


def printer_for(kind: str, custom: bool, columns: Iterable[Mapping[str, Any]]) -> Printer:
    if custom:
        defined = list(columns) or [
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
        ]
        headers = [NAME] + [
            Column(
                c["name"],
                type=c.get("type", "string"),
                description=c.get("description", ""),
                priority=int(c.get("priority", 0)),
                format=c.get("format", ""),
            )
            for c in defined
        ]

        def row(obj, now):
            return [_meta(obj).get("name")] + [_column_cell(c, obj, now) for c in defined]

        return headers, row
    return BUILTIN_PRINTERS.get(kind, ([NAME, AGE], _name_age))


def partial_metadata(obj: Mapping[str, Any], table_version: str) -> dict[str, Any]:
    metadata = {k: v for k, v in _meta(obj).items() if k != "managedFields"}
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": metadata,
    }


def table(
    printer: Printer,
    objects: Iterable[Mapping[str, Any]],
    *,
    table_version: str = "v1",
    include_object: str = "Metadata",
    headers: bool = True,
    list_metadata: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    columns, row = printer
    moment = now or datetime.now(UTC)
    rows = []
    for obj in objects:
        entry: dict[str, Any] = {"cells": row(obj, moment)}
        if include_object == "Object":
            entry["object"] = obj
        elif include_object != "None":
            entry["object"] = partial_metadata(obj, table_version)
        rows.append(entry)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{table_version}",
        "metadata": dict(list_metadata or {}),
        "columnDefinitions": [c.definition() for c in columns] if headers else [],
        "rows": rows,
    }
