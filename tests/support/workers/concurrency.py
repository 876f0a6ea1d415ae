"""Worker processes for the concurrency-limiter tests (importable by ``multiprocessing`` spawn)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from redkit import connect
from redkit.ratelimit.concurrency import AsyncConcurrency, Concurrency, ConcurrencyLimit


def hold_and_release(
    url: str,
    limit: ConcurrencyLimit,
    identifier: str,
    counter: str,
    mode: str,
    workers: int,
    attempts: int,
    barrier: Any,
    results: Any,
    autopipeline: bool = False,
) -> None:
    """``workers`` threads (or asyncio tasks) each try ``attempts`` times: acquire, hold briefly,
    release. While holding, a holder INCRs ``counter`` and DECRs it before releasing, so each
    INCR's result is at most the number of holders at that moment. Puts (INCR results, refusals).
    ``autopipeline`` is the connection's (it changes the asyncio tasks' driver only).
    """
    conn = connect(url, autopipeline=autopipeline)
    barrier.wait(30)
    if mode == "threads":
        seen, refused = _threads(conn, limit, identifier, counter, workers, attempts)
    else:
        seen, refused = asyncio.run(_tasks(conn, limit, identifier, counter, workers, attempts))
    results.put((seen, refused))


def _threads(
    conn: Any, limit: ConcurrencyLimit, identifier: str, counter: str, workers: int, attempts: int
) -> tuple[list[int], int]:
    limiter = Concurrency(conn, limit)
    client = conn.sync_driver().client
    seen: list[int] = []
    refused = [0]
    lock = threading.Lock()

    def work() -> None:
        for _ in range(attempts):
            with limiter.acquire(identifier) as lease:
                if not lease:
                    with lock:
                        refused[0] += 1
                    time.sleep(0.001)
                    continue
                holders = client.incr(counter)
                time.sleep(0.002)
                client.decr(counter)
            with lock:
                seen.append(holders)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return seen, refused[0]


async def _tasks(
    conn: Any, limit: ConcurrencyLimit, identifier: str, counter: str, workers: int, attempts: int
) -> tuple[list[int], int]:
    limiter = AsyncConcurrency(conn, limit)
    client = conn.async_driver().client

    async def work() -> tuple[list[int], int]:
        seen: list[int] = []
        refused = 0
        for _ in range(attempts):
            async with limiter.acquire(identifier) as lease:
                if not lease:
                    refused += 1
                    await asyncio.sleep(0.001)
                    continue
                seen.append(await client.incr(counter))
                await asyncio.sleep(0.002)
                await client.decr(counter)
        return seen, refused

    outcomes = await asyncio.gather(*(work() for _ in range(workers)))
    await conn.aclose()
    return [n for seen, _ in outcomes for n in seen], sum(refused for _, refused in outcomes)


def acquire_and_die(url: str, limit: ConcurrencyLimit, identifier: str, results: Any) -> None:
    """Take a slot, report the lease, and die at once without releasing it."""
    lease = Concurrency(connect(url), limit).acquire(identifier)
    results.put((lease.success, lease.token, lease.expires_at))
    results.close()
    results.join_thread()  # the report must reach the pipe before the process vanishes
    os._exit(0)
