"""Manifests kept with their equal sub-documents shared: equal to what was rendered, with
types kept apart."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.render.shared_documents import SharedDocuments

atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from(["", "1", "true", "a", "null"]),
)
documents = st.recursive(
    atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["a", "b", "1"]), inner, max_size=3),
    ),
    max_leaves=20,
)


def exact(document):
    """JSON with the Python types kept (True and 1, 1.0 and 1 differ)."""
    return json.dumps(document, default=repr, sort_keys=False) + repr(_types(document))


def _types(value):
    if isinstance(value, dict):
        return [(key, _types(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


@given(st.lists(documents, min_size=1, max_size=6))
@settings(max_examples=300, deadline=None)
def test_shared_documents_are_the_documents(batch):
    shared = SharedDocuments()
    for document in batch:
        assert exact(shared.share(document)) == exact(document)


def test_equal_sub_documents_are_one_object_and_types_stay_apart():
    shared = SharedDocuments()
    probe = {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 5}
    first = shared.share({"name": "a", "probe": dict(probe), "flags": [1, True, 1.0, "1"]})
    second = shared.share({"name": "b", "probe": dict(probe), "flags": [True, 1, 1.0, "1"]})
    assert first["probe"] is second["probe"]
    assert first["flags"] is not second["flags"]
    assert [type(v) for v in second["flags"]] == [bool, int, float, str]
    # Key order is content: a mapping written in another order is not shared.
    turned = shared.share({"periodSeconds": 5, "httpGet": {"path": "/health", "port": 8000}})
    assert turned is not first["probe"]
    assert list(turned) == ["periodSeconds", "httpGet"]


def test_a_full_table_starts_again_and_keeps_what_it_gave():
    shared = SharedDocuments(limit=2)
    kept = [shared.share({"n": n}) for n in range(5)]
    assert kept == [{"n": n} for n in range(5)]
    assert len(shared) <= 2
