"""Rate limiting: ``@upstash/ratelimit``'s algorithms and keys, sync and asyncio.

See :class:`Ratelimit` and :class:`AsyncRatelimit`.
"""

from __future__ import annotations

from redkit.ratelimit.concurrency import (
    AcquireContext,
    AsyncConcurrency,
    Concurrency,
    ConcurrencyLimit,
    Lease,
)
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.facade import AsyncRatelimit, Ratelimit
from redkit.ratelimit.limiters import (
    GCRA,
    CachedFixedWindow,
    FixedWindow,
    Limiter,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from redkit.ratelimit.multi import MultiLimit
from redkit.ratelimit.multiregion import AsyncMultiRegionRatelimit, MultiRegionRatelimit
from redkit.ratelimit.rates import limits_from, parse_rate, parse_rates
from redkit.ratelimit.result import Pending, RatelimitResult, Remaining
from redkit.ratelimit.tiers import AsyncTieredRatelimit, TieredRatelimit

__all__ = [
    "GCRA",
    "AcquireContext",
    "AsyncConcurrency",
    "AsyncMultiRegionRatelimit",
    "AsyncRatelimit",
    "AsyncTieredRatelimit",
    "CachedFixedWindow",
    "Concurrency",
    "ConcurrencyLimit",
    "EphemeralCache",
    "FixedWindow",
    "Lease",
    "Limiter",
    "MultiLimit",
    "MultiRegionRatelimit",
    "Pending",
    "Ratelimit",
    "RatelimitResult",
    "Remaining",
    "SlidingLog",
    "SlidingWindow",
    "TieredRatelimit",
    "TokenBucket",
    "limits_from",
    "parse_rate",
    "parse_rates",
]
