"""What the tenants used, as the gateways count it: answered requests, prompt and completion
tokens per (tenant, API key, variant) over an interval."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple


# A tuple for the same reason as UsageKey's below, and as cheap to make (the ledger and each
# budget make a share of every key's use every refresh). `+` adds the counts.
class Usage(NamedTuple):
    requests: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0

    def __add__(self, other: Usage) -> Usage:  # type: ignore[override]
        return Usage(
            self.requests + other.requests,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def scaled(self, share: float) -> Usage:
        return Usage(
            self.requests * share, self.prompt_tokens * share, self.completion_tokens * share
        )

    @property
    def tokens(self) -> float:
        return self.prompt_tokens + self.completion_tokens


# A tuple (it orders and hashes as one): the ledger and the budgets sort and look up these
# keys for every pool every refresh, and a dataclass builds a tuple for each comparison.
class UsageKey(NamedTuple):
    tenant: str
    key_id: str
    variant: str


UsageTable = Mapping[UsageKey, Usage]


def total(usage: Iterable[Usage]) -> Usage:
    result = Usage()
    for entry in usage:
        result = result + entry
    return result


def by_tenant_and_variant(usage: UsageTable) -> dict[tuple[str, str], Usage]:
    """The keys of each tenant added up."""
    out: dict[tuple[str, str], Usage] = {}
    for key, entry in usage.items():
        pair = (key.tenant, key.variant)
        out[pair] = out.get(pair, Usage()) + entry
    return out
