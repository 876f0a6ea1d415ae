"""Worker processes for the fleet-statistics tests (importable by ``multiprocessing`` spawn)."""

from __future__ import annotations

import asyncio
from typing import Any

from redkit import AsyncCache, AsyncRatelimit, Cache, FixedWindow, Ratelimit, connect


def hits_misses_decisions(
    url: str, mode: str, namespace: str, prefix: str, keys: int, reads: int, barrier: Any
) -> None:
    """Store nothing, then read ``keys`` keys ``reads`` times each (one miss and a load per
    key, the other reads hits); decide ``reads`` requests of an identifier limited to ``keys``.
    Everything is counted with ``stats="1 s"`` and sent when the facades close."""
    barrier.wait(30)  # every process counts at once
    with connect(url) as conn:
        if mode == "sync":
            cache = Cache(conn, namespace=namespace, stats="1 s")
            limiter = Ratelimit(conn, FixedWindow(keys, "1 h"), prefix=prefix, stats="1 s",
                                ephemeral_cache=False)  # fmt: skip
            for key in range(keys):
                for _ in range(reads):
                    cache.get_or_set(f"{key}", lambda key=key: key)
            for _ in range(reads):
                limiter.limit("shared")
            cache.close()
            limiter.close()
        else:
            asyncio.run(_async(conn, namespace, prefix, keys, reads))


async def _async(conn: Any, namespace: str, prefix: str, keys: int, reads: int) -> None:
    cache = AsyncCache(conn, namespace=namespace, stats="1 s")
    limiter = AsyncRatelimit(
        conn, FixedWindow(keys, "1 h"), prefix=prefix, stats="1 s", ephemeral_cache=False
    )
    for key in range(keys):
        for _ in range(reads):
            await cache.get_or_set(f"{key}", lambda key=key: key)
    for _ in range(reads):
        await limiter.limit("shared")
    await cache.close()
    await limiter.close()
    await conn.aclose()
