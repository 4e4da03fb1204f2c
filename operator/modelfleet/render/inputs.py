"""What `desired()` reads: the custom resources as parsed models (or, for those that failed
validation, what their status needs), the observations and the cluster facts, and `now`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from modelfleet.api import STATUS_MODELS
from modelfleet.api.common import Condition
from modelfleet.api.keys import ApiKey
from modelfleet.api.load import InputError, parse_resource
from modelfleet.api.modelpool import ModelPool
from modelfleet.api.names import API_VERSION
from modelfleet.api.reservation import Reservation
from modelfleet.api.routingpolicy import RoutingPolicy
from modelfleet.observe.observation import Observations
from modelfleet.observe.usage import UsageTable
from modelfleet.render.envoy.xds import HostPort
from modelfleet.render.gateway import GatewaySettings
from modelfleet.render.status import BuiltPoolStatus

Key = tuple[str, str]  # (namespace, name) of one resource


@dataclass(frozen=True)
class ObjectRef:
    """The object a status or an Event is about."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None
    api_version: str = API_VERSION

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)

    def body(self) -> dict[str, Any]:
        """Enough of the object for a status patch's path and an Event's involvedObject."""
        meta = {"name": self.name, "namespace": self.namespace}
        if self.uid:
            meta["uid"] = self.uid
        return {"apiVersion": self.api_version, "kind": self.kind, "metadata": meta}

    @classmethod
    def of(cls, resource: Any) -> ObjectRef:
        return cls(resource.kind, resource.namespace, resource.name, resource.metadata.uid)


@dataclass(frozen=True)
class Rejected:
    """A custom resource that failed validation: its status says why, and nothing it would
    make changes (the last good Deployments and gateway config stay as they are)."""

    ref: ObjectRef
    generation: int | None
    conditions: tuple[Condition, ...]
    errors: tuple[InputError, ...]
    pool: str | None = None  # spec.pool of a Reservation or RoutingPolicy, when readable


@dataclass(frozen=True)
class FleetInputs:
    """Everything one cycle knows. Maps are keyed by (namespace, name) of the pool or the
    policy they belong to; observations by `variant_key`."""

    now: datetime
    pools: Sequence[ModelPool] = ()
    # Per pool: the status this process wrote, when the pool was read back with it unchanged
    # (ParseCache hands such a pool out without a parsed status): the plan continues from it.
    written_statuses: Mapping[Key, BuiltPoolStatus] = field(default_factory=dict)
    reservations: Sequence[Reservation] = ()
    policies: Sequence[RoutingPolicy] = ()
    rejected: Sequence[Rejected] = ()
    observations: Observations = field(default_factory=dict)
    # Why a pool's observations are missing (Prometheus down, ...), for its status.
    metrics_errors: Mapping[Key, str] = field(default_factory=dict)
    # Per pool: what the tenants used through its gateways since the pool's previous plan.
    usage: Mapping[Key, UsageTable] = field(default_factory=dict)
    # Per policy: what its tenants used since each budget period ("day", "month") began, or
    # why that could not be read (its budgets then keep their last known states).
    budget_usage: Mapping[Key, Mapping[str, UsageTable]] = field(default_factory=dict)
    budget_usage_errors: Mapping[Key, str] = field(default_factory=dict)
    # Per policy: its API keys, or why they could not be read.
    api_keys: Mapping[Key, Sequence[ApiKey]] = field(default_factory=dict)
    api_key_errors: Mapping[Key, Sequence[InputError]] = field(default_factory=dict)
    # Per pool: variant -> the address of its Service (default: the Service's DNS name).
    service_addresses: Mapping[Key, Mapping[str, HostPort]] = field(default_factory=dict)
    # variant_key -> spec.replicas of the live Deployment, to notice hand edits.
    deployed_replicas: Mapping[str, int] = field(default_factory=dict)
    # Per policy: ready pods of the gateway Deployment the operator runs for it.
    gateway_ready: Mapping[Key, int] = field(default_factory=dict)
    # Where gateway pods run Envoy; None: plan the routing tables, render no gateway.
    gateway: GatewaySettings | None = None
    # False: plan and write the statuses only, render no Deployment or Service and count no
    # cost (the simulator, which replays the plans on its own replicas and bills itself).
    render_workloads: bool = True


def _conditions(status: Any) -> tuple[Condition, ...]:
    found = []
    for item in (status or {}).get("conditions") or [] if isinstance(status, dict) else []:
        try:
            found.append(Condition.model_validate(item))
        except ValidationError:
            continue
    return tuple(found)


def parse_body(body: Mapping[str, Any]) -> tuple[Any | None, Rejected | None]:
    """An object as the API server returned it -> (model, None) or (None, Rejected).

    The spec decides validity; the status is the operator's own record and is read on its
    own, so that a status an older operator wrote can never make a good spec invalid."""
    raw = dict(body)
    status = raw.pop("status", None)
    model, errors = parse_resource(raw)
    meta = raw.get("metadata") or {}
    if model is not None and not errors:
        try:
            parsed = STATUS_MODELS[model.kind].model_validate(status) if status else None
        except ValidationError:
            parsed = None  # an unreadable record is no record: plan from the spec alone
        return model.model_copy(update={"status": parsed}), None
    ref = ObjectRef(
        str(raw.get("kind", "")),
        str(meta.get("namespace", "default")),
        str(meta.get("name", "")),
        meta.get("uid"),
        str(raw.get("apiVersion", API_VERSION)),
    )
    pool = (raw.get("spec") or {}).get("pool") if isinstance(raw.get("spec"), dict) else None
    return None, Rejected(
        ref,
        meta.get("generation"),
        _conditions(status),
        tuple(errors),
        pool if isinstance(pool, str) else None,
    )


class ParseCache:
    """Each resource parsed once per change, as a long-running operator should: the spec
    once per (uid, generation) — the API server moves generation on every spec change —
    and the status once per resourceVersion, or not at all when it is the status the
    operator itself just wrote (`wrote`). A pool's own status is not even made a model:
    the pool comes back without it, and `written` gives it as it was built. One entry per
    object: memory follows the fleet."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str, str], tuple[tuple, Any, Rejected | None]] = {}
        self._statuses: dict[tuple[str, str, str], tuple[str, Any]] = {}

    def __len__(self) -> int:
        return len(self._specs)

    def parse(self, body: Mapping[str, Any]) -> tuple[Any | None, Rejected | None]:
        meta = body.get("metadata") or {}
        name = _identity(body)
        version = (meta.get("uid"), meta.get("generation"))
        if version[1] is None:  # not from an API server: nothing to key on
            return parse_body(body)
        cached = self._specs.get(name)
        if cached is None or cached[0] != version:
            model, rejected = parse_body({k: v for k, v in body.items() if k != "status"})
            cached = (version, model, rejected)
            self._specs[name] = cached
        _, model, rejected = cached
        if model is None:
            # A rejected resource's conditions come from its current status.
            return parse_body(body)
        status = self._status(name, meta.get("resourceVersion"), body.get("status"), model)
        if isinstance(status, BuiltPoolStatus):
            status = None
        return model.model_copy(update={"status": status}), None

    def written(self, body: Mapping[str, Any]) -> BuiltPoolStatus | None:
        """The pool status this process wrote, if `body` is the object stored with it."""
        remembered = self._statuses.get(_identity(body))
        version = (body.get("metadata") or {}).get("resourceVersion")
        if remembered is None or version is None or remembered[0] != version:
            return None
        return remembered[1] if isinstance(remembered[1], BuiltPoolStatus) else None

    def _status(self, name: tuple[str, str, str], version: Any, raw: Any, model: Any) -> Any:
        remembered = self._statuses.get(name)
        if remembered is not None and version is not None and remembered[0] == version:
            return remembered[1]
        if not raw:
            return None
        try:
            parsed = STATUS_MODELS[model.kind].model_validate(raw)
        except ValidationError:
            return None
        if version is not None:
            self._statuses[name] = (version, parsed)
        return parsed

    def wrote(
        self,
        kind: str,
        namespace: str,
        name: str,
        version: str | None,
        status: BaseModel | BuiltPoolStatus,
    ) -> None:
        """The status the operator wrote, stored as `version`: the next read needs no parse."""
        if version is not None:
            self._statuses[(kind, namespace, name)] = (version, status)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        self._specs.pop((kind, namespace, name), None)
        self._statuses.pop((kind, namespace, name), None)


def _identity(body: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = body.get("metadata") or {}
    return (str(body.get("kind")), str(meta.get("namespace")), str(meta.get("name")))
