"""Events as a cluster keeps them: one object per distinct event, repeated occurrences
counted on it (`count`, `lastTimestamp`, `series`), named `<involved object>.<hex time>`.

In a real cluster client-go's event recorder does this before it writes (its
EventCorrelator): an identical event patches the existing object instead of creating a new
one. Clients that post every occurrence (kopf does) get that behaviour from this server,
so `kubectl get events` reads the same here as against a cluster with client-go
recorders; a product that must behave on any cluster still has to count its own repeats.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modelfleet_testbed.local.admission import Admission
from modelfleet_testbed.local.store import ObjectStore, now_rfc3339

CORE_EVENTS = "v1/events"


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_key(event: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two events the same one (client-go's aggregation key for exact repeats)."""
    involved = event.get("involvedObject") or {}
    source = event.get("source") or {}
    return (
        involved.get("kind"),
        involved.get("namespace"),
        involved.get("name"),
        involved.get("uid"),
        involved.get("apiVersion"),
        involved.get("fieldPath"),
        event.get("type"),
        event.get("reason"),
        event.get("message"),
        source.get("component") or event.get("reportingComponent"),
        source.get("host"),
    )


def record_event(
    store: ObjectStore,
    namespace: str | None,
    body: Mapping[str, Any],
    *,
    manager: str,
    admission: Admission | None = None,
    dry_run: bool = False,
) -> tuple[dict[str, Any], bool]:
    """Create a core v1 Event or count it on its identical predecessor; (event, created)."""
    metadata = dict(body.get("metadata") or {})
    ns = namespace or metadata.get("namespace")
    key = event_key(body)
    existing = next(
        (event for event in store.list_raw(CORE_EVENTS, ns) if event_key(event) == key), None
    )
    if existing is not None:
        count = int(existing.get("count") or 1) + 1
        repeat = {
            "count": count,
            "lastTimestamp": body.get("lastTimestamp") or now_rfc3339(),
            "series": {"count": count, "lastObservedTime": micro_time()},
        }
        updated = store.patch(
            CORE_EVENTS,
            ns,
            existing["metadata"]["name"],
            repeat,
            patch_type="merge",
            manager=manager,
            dry_run=dry_run,
            admission=admission,
        )
        return updated, False
    involved = (body.get("involvedObject") or {}).get("name")
    if not metadata.get("name") and involved:
        # client-go's name: the involved object's name and the time in hex nanoseconds.
        metadata["name"] = f"{involved}.{time.time_ns():x}"
        metadata.pop("generateName", None)
    event = {**body, "metadata": metadata}
    event.setdefault("count", 1)
    event.setdefault("firstTimestamp", now_rfc3339())
    event.setdefault("lastTimestamp", event["firstTimestamp"])
    created = store.create(
        CORE_EVENTS, event, namespace=ns, manager=manager, dry_run=dry_run, admission=admission
    )
    return created, True
