"""What tests need from an API server besides answers: a log of calls, and injected faults.

The call log is what the RBAC test compares with the chart's rules: each distinct
(user agent, verb, group, version, resource, namespace, subresource) the server saw.
A fault makes the next N calls that match (verb, resource) answer an error status
without touching any object, the way a real server's 409/429/5xx leaves state alone.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import kmock

from modelfleet_testbed.local.errors import ApiError

VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True, order=True)
class ApiCall:
    verb: str
    group: str
    version: str
    resource: str  # plural
    namespace: str  # "" for cluster-wide calls
    subresource: str  # "" for the resource itself
    user_agent: str = ""

    @property
    def api_group(self) -> str:
        """The RBAC apiGroup ("" for the core group)."""
        return self.group

    @property
    def rbac_resource(self) -> str:
        """The resource as RBAC rules name it (`deployments/scale`)."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def call_verb(method: str, name: str | None, watch: bool) -> str:
    if method == "GET":
        return "watch" if watch else ("get" if name else "list")
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method, method.lower())


class CallLog:
    """Distinct API calls, counted; bounded by the number of distinct calls, not requests."""

    def __init__(self) -> None:
        self.counts: collections.Counter[ApiCall] = collections.Counter()

    def record(self, call: ApiCall) -> None:
        self.counts[call] += 1

    def calls(self, user_agent: str | None = None) -> set[ApiCall]:
        """Calls made by clients whose User-Agent starts with `user_agent` (all if None)."""
        return {
            call
            for call in self.counts
            if user_agent is None or call.user_agent.startswith(user_agent)
        }

    def clear(self) -> None:
        self.counts.clear()


_FAULT_MESSAGES = {
    409: "Operation cannot be fulfilled: the object has been modified; "
    "please apply your changes to the latest version and try again (injected)",
    429: "Too many requests, please try again later (injected)",
    500: "Internal error occurred (injected)",
    503: "The server is currently unable to handle the request (injected)",
}


@dataclass(eq=False)
class Fault:
    verb: str  # one of VERBS, or "*"
    resource: kmock.resource  # may be partial: just a plural matches any group/version
    status: int
    remaining: int
    namespace: str | None = None
    subresource: str | None = None  # None: the resource and its subresources; "": only itself
    retry_after: int = 1
    hits: int = 0

    def matches(self, call: ApiCall) -> bool:
        target = kmock.resource(call.group, call.version, call.resource)
        return (
            self.remaining > 0
            and self.verb in ("*", call.verb)
            and self.resource.check(target)
            and self.namespace in (None, call.namespace)
            and self.subresource in (None, call.subresource)
        )

    def error(self) -> ApiError:
        headers = {"Retry-After": str(self.retry_after)} if self.status == 429 else {}
        message = _FAULT_MESSAGES.get(self.status, f"injected fault {self.status}")
        return ApiError(self.status, message, headers=headers)


class FaultInjector:
    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(
        self,
        verb: str,
        resource: str,
        status: int,
        count: int = 1,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        retry_after: int = 1,
    ) -> Fault:
        """Answer the next `count` calls matching (verb, resource) with `status`.

        `resource` is "apps/v1/deployments", "deployments.apps" or just "deployments"."""
        if verb != "*" and verb not in VERBS:
            raise ValueError(f"verb {verb!r} is not one of {', '.join(VERBS)} or '*'")
        if not 400 <= status <= 599:
            raise ValueError(f"status {status} is not an error status (400-599)")
        fault = Fault(
            verb=verb,
            resource=kmock.resource(resource),
            status=status,
            remaining=count,
            namespace=namespace,
            subresource=subresource,
            retry_after=retry_after,
        )
        self.faults.append(fault)
        return fault

    def take(self, call: ApiCall) -> ApiError | None:
        for fault in self.faults:
            if fault.matches(call):
                fault.remaining -= 1
                fault.hits += 1
                if fault.remaining == 0:
                    self.faults.remove(fault)
                return fault.error()
        return None

    def clear(self) -> None:
        self.faults.clear()
