"""A process hammering one identifier through a MultiRegionRatelimit (over-admission runs)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from redkit import Connection
from redkit.ratelimit import FixedWindow, MultiRegionRatelimit, SlidingWindow


@dataclass(frozen=True)
class Hammered:
    """What one process saw: admitted calls, the calls' time, the slowest decision (s)."""

    admitted: int
    seconds: float
    slowest: float


def hammer_timed(
    urls: Sequence[str],
    prefix: str,
    identifier: str,
    limit: int,
    calls: int,
    sliding: bool,
    start_at: float = 0.0,
) -> Hammered:
    """Make ``calls`` decisions for ``identifier`` from ``start_at`` (epoch s) on, timed."""
    conns = [Connection(url) for url in urls]
    algorithm = SlidingWindow(limit, "1 h") if sliding else FixedWindow(limit, "1 h")
    admitted, slowest = 0, 0.0
    try:
        with MultiRegionRatelimit(
            conns, algorithm, prefix=prefix, ephemeral_cache=False, timeout=2.0
        ) as limiter:
            limiter.get_remaining(identifier)  # connections made before the clock starts
            time.sleep(max(0.0, start_at - time.time()))  # every process starts together
            began = time.monotonic()
            for _ in range(calls):
                asked = time.monotonic()
                admitted += limiter.limit(identifier).success
                slowest = max(slowest, time.monotonic() - asked)
            seconds = time.monotonic() - began
    finally:
        for conn in conns:
            conn.close()
    return Hammered(admitted, seconds, slowest)


def hammer(
    urls: Sequence[str], prefix: str, identifier: str, limit: int, calls: int, sliding: bool
) -> int:
    """Make ``calls`` decisions for ``identifier``; return how many were admitted."""
    return hammer_timed(urls, prefix, identifier, limit, calls, sliding).admitted
