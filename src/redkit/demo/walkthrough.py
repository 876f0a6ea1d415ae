"""``redkit demo``: a short walkthrough on a real Redis that redkit starts itself.

It makes a few rate-limit decisions with a Lua script and a few cache reads and writes, all as
flows, once with the blocking runner and once with the asyncio runner, then stops the server.
With ``REDIS_URL`` set it uses that Redis instead (and removes only the keys it wrote).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any, NamedTuple, TextIO

from redkit.core import keys
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Call, ScriptCall, command
from redkit.core.replies import as_int, as_text
from redkit.core.scripts import load_script
from redkit.drivers.connect import Connection, from_env
from redkit.drivers.embedded import EmbeddedRedis, redis_server_version

__all__ = ["Decision", "cache_key", "cached", "cleanup", "decide", "main"]

PREFIX = "redkit-demo"


class Decision(NamedTuple):
    """One rate-limit decision."""

    allowed: bool
    used: int
    reset_in_ms: int
    key: str


def decide(identifier: str, limit: int, window_ms: int, cost: int = 1) -> Flow[Decision]:
    """Flow: one fixed-window decision for ``identifier``, in one script call.

    Windows are aligned to the epoch, so the counter lives until its window ends.
    """
    now = int(time.time() * 1000)
    bucket = now // window_ms
    reset_in = (bucket + 1) * window_ms - now
    key = keys.join(PREFIX, "rl", keys.hash_tag(identifier), str(bucket))
    script = load_script("redkit.demo", "window")
    allowed, used, pttl = yield ScriptCall(script, (key,), (limit, reset_in, cost))
    return Decision(bool(allowed), as_int(used), max(as_int(pttl), 0), key)


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


def _walk(run: Callable[[Flow[Any]], Any], out: TextIO, who: str, written: set[str]) -> None:
    out.write(f"\nRate limit: 5 requests per 10 s for {who!r} (a Lua script, one round trip)\n")
    for n in range(1, 8):
        d = run(decide(who, limit=5, window_ms=10_000))
        written.add(d.key)
        verdict = "allowed" if d.allowed else "limited"
        out.write(f"  request {n}: {verdict:8} used {d.used}/5, resets in {d.reset_in_ms} ms\n")
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
    out.write("\n== blocking runner ==")
    _walk(lambda flow: run_sync(flow, driver), out, "ip:203.0.113.7", written)

    async def in_asyncio() -> None:
        adriver = conn.async_driver()
        loop = asyncio.get_running_loop()
        out.write("\n== asyncio runner (the same flows) ==")

        def run(flow: Flow[Any]) -> Any:
            # The printing loop runs in a worker thread; each flow runs on the event loop.
            return asyncio.run_coroutine_threadsafe(run_async(flow, adriver), loop).result()

        await loop.run_in_executor(None, _walk, run, out, "ip:198.51.100.4", written)
        await conn.aclose()

    asyncio.run(in_asyncio())
    removed = run_sync(cleanup(written), conn.sync_driver())
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
