"""``redkit demo``: a short walkthrough on a real Redis that redkit starts itself.

It makes a few rate-limit decisions with :class:`redkit.Ratelimit` and a few cache reads and
writes, once blocking and once in asyncio, then stops the server.
With ``REDIS_URL`` set it uses that Redis instead (and removes only the keys it wrote).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from redkit.core import keys
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Call, command
from redkit.core.replies import as_int, as_text
from redkit.drivers.connect import Connection, from_env
from redkit.drivers.embedded import EmbeddedRedis, redis_server_version
from redkit.ratelimit import AsyncRatelimit, Ratelimit, RatelimitResult, SlidingWindow

__all__ = ["cache_key", "cached", "cleanup", "main"]

PREFIX = "redkit-demo"
#: The demo's limit: 5 requests per sliding 10 s window.
LIMITER = SlidingWindow(5, "10 s")


def cache_key(name: str) -> str:
    """The key of a cached value."""
    return keys.join(PREFIX, "cache", keys.hash_tag(name))


def cached(name: str, loader: Callable[[], Any], ttl_s: int) -> Flow[tuple[Any, bool]]:
    """Flow: cache-aside read of ``name``; returns (value, whether it was a hit)."""
    key = cache_key(name)
    raw = yield command("GET", key)
    if raw is not None:
        return json.loads(as_text(raw)), True
    value = yield Call(loader)
    yield command("SET", key, json.dumps(value), "EX", ttl_s)
    return value, False


def cleanup(written: set[str]) -> Flow[int]:
    """Flow: remove the keys the walkthrough wrote (one by one: on a cluster they spread)."""
    removed = 0
    for key in sorted(written):
        removed += as_int((yield command("UNLINK", key)))
    return removed


def _products() -> list[dict[str, Any]]:
    time.sleep(0.05)  # pretend to be a database query
    return [{"id": 1, "name": "Kettle"}, {"id": 2, "name": "Teapot"}]


def _walk(
    limit: Callable[[str], RatelimitResult],
    run: Callable[[Flow[Any]], Any],
    out: TextIO,
    who: str,
    written: set[str],
) -> None:
    out.write(f"\nRate limit: 5 requests per sliding 10 s for {who!r} (one script call each)\n")
    for n in range(1, 8):
        result = limit(who)
        verdict = "allowed" if result.success else "limited"
        why = f" ({result.reason})" if result.reason else ""
        out.write(
            f"  request {n}: {verdict:8} {result.remaining}/5 left, "
            f"retry in {result.retry_after:.2f} s{why}\n"
        )
    out.write("\nCache-aside: products, 300 s TTL\n")
    written.add(cache_key(f"products:{who}"))
    for n in range(1, 4):
        started = time.perf_counter()
        value, hit = run(cached(f"products:{who}", _products, ttl_s=300))
        took = (time.perf_counter() - started) * 1000
        state = "hit " if hit else "miss"
        out.write(f"  read {n}: {state} {len(value)} products in {took:.1f} ms\n")


def _run_walkthrough(conn: Connection, out: TextIO) -> None:
    written: set[str] = set()
    driver = conn.sync_driver()
    ratelimit = Ratelimit(conn, LIMITER, prefix=PREFIX)
    out.write("\n== blocking ==")
    _walk(ratelimit.limit, lambda flow: run_sync(flow, driver), out, "ip:203.0.113.7", written)

    async def in_asyncio() -> int:
        async_ratelimit = AsyncRatelimit(conn, LIMITER, prefix=PREFIX)
        adriver = conn.async_driver()
        loop = asyncio.get_running_loop()
        out.write("\n== asyncio (the same flows, another runner) ==")

        # The printing loop runs in a worker thread; the calls run on the event loop.
        def limit(who: str) -> RatelimitResult:
            return asyncio.run_coroutine_threadsafe(async_ratelimit.limit(who), loop).result()

        def run(flow: Flow[Any]) -> Any:
            return asyncio.run_coroutine_threadsafe(run_async(flow, adriver), loop).result()

        await loop.run_in_executor(None, _walk, limit, run, out, "ip:198.51.100.4", written)
        removed = await async_ratelimit.reset("ip:198.51.100.4")
        await conn.aclose()
        return removed

    removed = asyncio.run(in_asyncio())
    removed += ratelimit.reset("ip:203.0.113.7")
    removed += run_sync(cleanup(written), conn.sync_driver())
    out.write(f"\nRemoved the demo's {removed} keys.\n")
    conn.close()


def main(out: TextIO, environ: dict[str, str] | None = None) -> int:
    """Run the walkthrough; return the process exit status."""
    env = dict(os.environ) if environ is None else environ
    if env.get("REDIS_URL"):
        conn = from_env(env)
        out.write(f"Using the Redis at REDIS_URL: {conn!r}\n")
        _run_walkthrough(conn, out)
        return 0
    with EmbeddedRedis() as server:
        major, minor, patch = redis_server_version(server.binary)
        out.write(
            f"Started an embedded redis-server {major}.{minor}.{patch} at {server.url} "
            f"(pid {server.pid})\n"
        )
        _run_walkthrough(server.connect(), out)
    out.write("Stopped the embedded redis-server. Done.\n")
    return 0
