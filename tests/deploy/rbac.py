"""RBAC rules against the API calls a real run made: what the rules grant, what the calls
(and the admission checks behind them) need."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelfleet_testbed.local.cluster import plural_of
from modelfleet_testbed.local.faults import ApiCall

# (apiGroup, resource as RBAC names it, verb)
Permission = tuple[str, str, str]

# The operator's own client and kopf's (`kopf/<version>`).
OPERATOR_AGENTS = ("modelfleet-operator", "kopf/")
APPLY_MANAGER = "modelfleet"


def granted(rules: Iterable[Mapping[str, Any]]) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def needed_by_calls(calls: Iterable[ApiCall]) -> set[Permission]:
    return {(call.api_group, call.rbac_resource, call.verb) for call in calls}


def made_by(calls: Iterable[ApiCall], agents: tuple[str, ...]) -> set[ApiCall]:
    return {call for call in calls if call.user_agent.startswith(agents)}


def needed_by_admission(objects: Iterable[Mapping[str, Any]]) -> set[Permission]:
    """What the API server checks beyond the call's own verb, for the objects the operator
    wrote (a write that creates its object is authorized as `create` too, but the local API
    server records that call itself, so `needed_by_calls` has it):

    - an owner reference with blockOwnerDeletion needs `update` on the owner's finalizers
      (the OwnerReferencesPermissionEnforcement admission plugin);
    - a Role may grant only what its writer holds, and so may a RoleBinding of it (RBAC's
      escalation and bind checks; the writer has neither `escalate` nor `bind`).
    """
    objects = list(objects)
    roles = {
        (o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] == "Role"
    }
    needed = set()
    for obj in objects:
        meta = obj["metadata"]
        applied = [
            entry
            for entry in meta.get("managedFields") or []
            if entry.get("manager") == APPLY_MANAGER and entry.get("operation") == "Apply"
        ]
        if not applied:
            continue
        for owner in meta.get("ownerReferences") or []:
            if owner.get("blockOwnerDeletion"):
                owner_group = owner["apiVersion"].rpartition("/")[0]
                needed.add((owner_group, f"{plural_of(owner['kind'])}/finalizers", "update"))
        if obj["kind"] == "Role":
            needed |= granted(obj["rules"])
        elif obj["kind"] == "RoleBinding":
            role = roles[(meta.get("namespace"), obj["roleRef"]["name"])]
            needed |= granted(role["rules"])
    return needed
