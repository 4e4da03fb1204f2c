"""What a variant's vLLM counters and latency histograms hold over the last minute, kept
up to date as requests finish instead of recounted at every scrape.

Each finished request is one entry: the second it finished in, and the bucket of its time
to first token, end-to-end latency and queue time. A scrape at second ``s`` sees the
entries so far of the seconds after ``s - window``. Scrapes only move forward, so an entry
let go (or never taken in) is out of every later window too, and the counts are always
those of a recount of every entry so far.
"""

from __future__ import annotations

from collections.abc import Iterable


class LatencyWindow:
    __slots__ = ("by_second", "count", "e2e", "oldest", "queued", "ttft")

    def __init__(self, ttft_buckets: int, latency_buckets: int) -> None:
        self.ttft = [0] * ttft_buckets  # requests per bucket, in the window
        self.e2e = [0] * latency_buckets
        self.queued = [0] * latency_buckets
        self.count = 0
        # second -> the entries of the requests that finished in it (to let go of)
        self.by_second: dict[int, list[tuple[int, int, int, int]]] = {}
        self.oldest: int | None = None  # of the last update: no entry is this old or older

    def update(self, entries: Iterable[tuple[int, int, int, int]], oldest: int) -> None:
        """Take in new (second, ttft, e2e, queue bucket) entries and keep the seconds
        after ``oldest`` (never lower than at the previous update)."""
        ttft, e2e, queued, by_second = self.ttft, self.e2e, self.queued, self.by_second
        count = self.count
        for entry in entries:
            second, first, whole, queue = entry
            if second <= oldest:
                continue  # out of the window already: a recount would not see it
            ttft[first] += 1
            e2e[whole] += 1
            queued[queue] += 1
            count += 1
            held = by_second.get(second)
            if held is None:
                by_second[second] = [entry]
            else:
                held.append(entry)
        previous = self.oldest
        if previous is None or oldest - previous > len(by_second):
            leaving: Iterable[int] = [second for second in by_second if second <= oldest]
        else:
            # Every second held is after the previous update's oldest: only those up to
            # this one's leave, found without going through all held (a replay updates
            # four windows every planning cycle).
            leaving = range(previous + 1, oldest + 1)
        for second in leaving:
            for _, first, whole, queue in by_second.pop(second, ()):
                ttft[first] -= 1
                e2e[whole] -= 1
                queued[queue] -= 1
                count -= 1
        self.count = count
        self.oldest = oldest
