"""Equal sub-documents of the manifests the operator keeps, held once.

The Deployments of a large fleet repeat most of themselves: the same probes, security
context, volumes, resources and environment in every pool that runs the same model
server. Kept as rendered, each pool held its own copy of every one (about two thirds of
the workload cache at 1,000 pools). `SharedDocuments.share` gives a document whose equal
sub-documents are one object, found by a digest of their content (types included: `1`,
`1.0`, `true` and `"1"` differ). The documents are only read (applied, hashed, compared),
never changed, so sharing them is safe; a caller that changes a document copies it first.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Distinct sub-documents remembered; past it the table starts again (what was shared
# stays shared, new documents share with each other again from then on).
LIMIT = 100_000
_DIGEST_BYTES = 16


class SharedDocuments:
    def __init__(self, limit: int = LIMIT) -> None:
        self._by_digest: dict[bytes, Any] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._by_digest)

    def share(self, document: Any) -> Any:
        """`document` with each sub-document (a dict or list) that equals one shared before
        replaced by that one; equal to `document`, key order included."""
        return self._share(document)[0]

    def _share(self, value: Any) -> tuple[Any, bytes]:
        kind = type(value)
        if kind is dict:
            digest = hashlib.blake2b(b"{", digest_size=_DIGEST_BYTES)
            shared: Any = {}
            for key, item in value.items():
                item, item_digest = self._share(item)
                shared[key] = item
                digest.update(_atom(key))
                digest.update(item_digest)
        elif kind is list:
            digest = hashlib.blake2b(b"[", digest_size=_DIGEST_BYTES)
            shared = []
            for item in value:
                item, item_digest = self._share(item)
                shared.append(item)
                digest.update(item_digest)
        else:
            return value, _atom(value)
        # Tagged: an atom's bytes start with a zero byte (its length), a document's never.
        key = b"#" + digest.digest()
        found = self._by_digest.get(key)
        if found is not None:
            return found, key
        if len(self._by_digest) >= self._limit:
            self._by_digest.clear()
        self._by_digest[key] = shared
        return shared, key


def _atom(value: Any) -> bytes:
    """A scalar as bytes that say its type and value, length first (so that no two
    sequences of them run together into the same bytes)."""
    text = f"{type(value).__name__}:{value!r}".encode()
    return len(text).to_bytes(4, "big") + text
