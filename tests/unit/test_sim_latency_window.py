"""The replay's latency window, kept up to date, counts what a recount does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet_testbed.sim.latency_window import LatencyWindow

BUCKETS = 5
entry = st.tuples(
    st.integers(0, 400),
    st.integers(0, BUCKETS - 1),
    st.integers(0, BUCKETS - 1),
    st.integers(0, BUCKETS - 1),
)
# Scrapes: the entries finished since the previous one, and how far the scrape moved on.
scrapes = st.lists(st.tuples(st.lists(entry, max_size=30), st.integers(0, 90)), max_size=20)


def recount(entries, oldest):
    kept = [e for e in entries if e[0] > oldest]
    columns = [[0] * BUCKETS for _ in range(3)]
    for _, *buckets in kept:
        for column, bucket in zip(columns, buckets, strict=True):
            column[bucket] += 1
    return len(kept), columns


@settings(max_examples=300, deadline=None)
@given(scrapes=scrapes, start=st.integers(-60, 300))
def test_the_window_counts_what_a_recount_of_every_entry_does(scrapes, start):
    window = LatencyWindow(BUCKETS, BUCKETS)
    seen = []
    oldest = start
    for new, step in scrapes:
        oldest += step
        seen.extend(new)
        window.update(new, oldest)
        count, (ttft, e2e, queued) = recount(seen, oldest)
        assert (window.count, window.ttft, window.e2e, window.queued) == (count, ttft, e2e, queued)
    assert all(second > oldest for second in window.by_second)
