"""redkit: caching, rate limiting and sessions on Redis, Redis Cluster and Upstash.

Sync and asyncio, one library. Start with :func:`connect` or :func:`from_env`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redkit import errors
from redkit.cache import MISSING, AsyncCache, Cache, hash_query
from redkit.drivers.connect import Connection, connect, from_env
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.ratelimit import (
    GCRA,
    AsyncConcurrency,
    AsyncRatelimit,
    AsyncTieredRatelimit,
    CachedFixedWindow,
    Concurrency,
    ConcurrencyLimit,
    EphemeralCache,
    FixedWindow,
    Ratelimit,
    RatelimitResult,
    Remaining,
    SlidingLog,
    SlidingWindow,
    TieredRatelimit,
    TokenBucket,
    limits_from,
)
from redkit.sessions import AsyncSessionStore, Session, SessionInfo, SessionStore

if TYPE_CHECKING:
    from redkit.drivers.rest import RestConnection

__version__ = "0.1.0"

__all__ = [
    "GCRA",
    "MISSING",
    "AsyncCache",
    "AsyncConcurrency",
    "AsyncRatelimit",
    "AsyncSessionStore",
    "AsyncTieredRatelimit",
    "Cache",
    "CachedFixedWindow",
    "Concurrency",
    "ConcurrencyLimit",
    "Connection",
    "EmbeddedCluster",
    "EmbeddedRedis",
    "EphemeralCache",
    "FixedWindow",
    "Ratelimit",
    "RatelimitResult",
    "Remaining",
    "RestConnection",
    "Session",
    "SessionInfo",
    "SessionStore",
    "SlidingLog",
    "SlidingWindow",
    "TieredRatelimit",
    "TokenBucket",
    "__version__",
    "connect",
    "errors",
    "from_env",
    "hash_query",
    "limits_from",
]


def __getattr__(name: str) -> Any:
    # RestConnection needs httpx, an optional dependency: import it only when asked for.
    if name == "RestConnection":
        from redkit.drivers.rest import RestConnection

        return RestConnection
    raise AttributeError(f"module 'redkit' has no attribute {name!r}")
