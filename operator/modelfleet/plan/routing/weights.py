"""Integer shares that add up to a total, in proportion to configured weights."""

from __future__ import annotations

from collections.abc import Sequence


def apportion(weights: Sequence[int], total: int = 100) -> list[int]:
    """Largest-remainder rounding of `weights` scaled to `total`.

    Integer arithmetic only, so the result never depends on float rounding; on equal
    remainders the earlier weight gets the extra unit, so the same input always gives the
    same shares.
    """
    configured = sum(weights)
    if configured <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0 with a positive sum (got {list(weights)})")
    shares = [w * total // configured for w in weights]
    remainders = [w * total % configured for w in weights]
    leftover = total - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for index in by_remainder[:leftover]:
        shares[index] += 1
    return shares
