"""The client CPU that ``stats="10 s"`` adds to a decision and a cache hit.

``benchmarks/observe.py`` compares rates, which a shared machine's load swings by more than
the few per cent at stake; this compares the benchmark process's own CPU time per call
(``time.process_time``: waiting on Redis or on other processes costs nothing), rows
interleaved, 15 rounds, the median of the per-round ratios.

    PYTHONPATH=src .venv/bin/python benchmarks/observe_cpu.py
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redkit import AsyncCache, AsyncRatelimit, Cache, FixedWindow, Ratelimit
from redkit.drivers.embedded import EmbeddedRedis

CALLS = 2000
TASKS = 50
ROUNDS = 15


def main() -> None:
    loop = asyncio.new_event_loop()
    with EmbeddedRedis() as server, server.connect() as conn:
        made: list[Any] = []
        sync_rows: dict[tuple[str, str], Callable[[], Any]] = {}
        async_rows: dict[tuple[str, str], Callable[[], Awaitable[Any]]] = {}
        for stats in (None, "10 s"):
            label = "with stats" if stats else "without"
            cache = Cache(conn, namespace=f"cpu-{label}", stats=stats)
            cache.set("k", {"a": 1})
            limiter = Ratelimit(conn, FixedWindow(10**9, "1 h"), prefix=f"cpu-{label}",
                                stats=stats)  # fmt: skip
            acache = AsyncCache(conn, namespace=f"acpu-{label}", stats=stats)
            loop.run_until_complete(acache.set("k", {"a": 1}))
            alimiter = AsyncRatelimit(conn, FixedWindow(10**9, "1 h"), prefix=f"acpu-{label}",
                                      stats=stats)  # fmt: skip
            made += [cache, limiter, acache, alimiter]
            sync_rows["cache get (hit), sync", label] = lambda c=cache: c.get("k")
            sync_rows["FixedWindow decision, sync", label] = lambda r=limiter: r.limit("u")
            async_rows[f"cache get (hit), async {TASKS} tasks", label] = lambda c=acache: c.get("k")
            async_rows[f"FixedWindow decision, async {TASKS} tasks", label] = lambda r=alimiter: (
                r.limit("u")
            )

        async def spread(call: Callable[[], Awaitable[Any]]) -> None:
            async def worker() -> None:
                for _ in range(CALLS // TASKS):
                    await call()

            await asyncio.gather(*(worker() for _ in range(TASKS)))

        cpu: dict[tuple[str, str], list[float]] = {k: [] for k in [*sync_rows, *async_rows]}
        for _ in range(ROUNDS):
            for key, call in sync_rows.items():
                started = time.process_time()
                for _ in range(CALLS):
                    call()
                cpu[key].append((time.process_time() - started) / CALLS * 1e6)
            for key, acall in async_rows.items():
                started = time.process_time()
                loop.run_until_complete(spread(acall))
                cpu[key].append((time.process_time() - started) / CALLS * 1e6)
        print("| row | CPU µs a call, without | with stats | median per-round ratio |")
        print("|---|---:|---:|---:|")
        for name in dict.fromkeys(name for name, _ in cpu):
            without, with_ = cpu[name, "without"], cpu[name, "with stats"]
            ratios = [w / b for b, w in zip(without, with_, strict=True)]
            print(f"| {name} | {statistics.median(without):.1f} | {statistics.median(with_):.1f} "
                  f"| {statistics.median(ratios):.3f} |")  # fmt: skip
        for facade in made:
            if isinstance(facade, (AsyncCache, AsyncRatelimit)):
                loop.run_until_complete(facade.close())
            else:
                facade.close()
        loop.run_until_complete(conn.aclose())
    loop.close()


if __name__ == "__main__":
    main()
