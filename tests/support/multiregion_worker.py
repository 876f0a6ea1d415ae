"""A process hammering one identifier through a MultiRegionRatelimit (over-admission runs)."""

from __future__ import annotations

from collections.abc import Sequence

from redkit import Connection
from redkit.ratelimit import FixedWindow, MultiRegionRatelimit, SlidingWindow


def hammer(
    urls: Sequence[str], prefix: str, identifier: str, limit: int, calls: int, sliding: bool
) -> int:
    """Make ``calls`` decisions for ``identifier``; return how many were admitted."""
    conns = [Connection(url) for url in urls]
    algorithm = SlidingWindow(limit, "1 h") if sliding else FixedWindow(limit, "1 h")
    admitted = 0
    try:
        with MultiRegionRatelimit(
            conns, algorithm, prefix=prefix, ephemeral_cache=False, timeout=2.0
        ) as limiter:
            for _ in range(calls):
                admitted += limiter.limit(identifier).success
    finally:
        for conn in conns:
            conn.close()
    return admitted
