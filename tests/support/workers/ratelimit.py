"""A worker process for the concurrency tests: many threads or tasks on one identifier.

It lives in its own module so that ``multiprocessing`` (spawn) can import it in a child.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from redkit import AsyncRatelimit, Ratelimit, connect
from redkit.ratelimit import Limiter


def hammer(
    url: str,
    limiters: list[Limiter],
    identifier: str,
    mode: str,
    workers: int,
    calls: int,
    barrier: Any,
    results: Any,
    autopipeline: bool = False,
) -> None:
    """For each limiter, after all processes meet at ``barrier``: ``workers`` threads (or asyncio
    tasks) each make ``calls`` decisions. Puts (limiter index, resets of the admitted ones,
    and the wall-clock times, in s, at which this process started and finished them).
    ``autopipeline`` is the connection's (it changes the asyncio tasks' driver only)."""
    conn = connect(url, autopipeline=autopipeline)
    for index, limiter in enumerate(limiters):
        barrier.wait(30)
        # One prefix per limiter: window algorithms share Upstash's counter keys otherwise.
        prefix = f"hammer-{index}"
        started = time.time()
        if mode == "threads":
            blocking = Ratelimit(conn, limiter, prefix=prefix, ephemeral_cache=False)
            admitted = _threads(blocking, identifier, workers, calls)
        else:
            rl = AsyncRatelimit(conn, limiter, prefix=prefix, ephemeral_cache=False)
            admitted = asyncio.run(_tasks(conn, rl, identifier, workers, calls))
        results.put((index, admitted, started, time.time()))


def _threads(rl: Ratelimit, identifier: str, workers: int, calls: int) -> list[int]:
    admitted: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [r.reset for r in (rl.limit(identifier) for _ in range(calls)) if r.success]
        with lock:
            admitted.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rl.flush()
    return admitted


async def _tasks(
    conn: Any, rl: AsyncRatelimit, identifier: str, workers: int, calls: int
) -> list[int]:
    async def work() -> list[int]:
        return [r.reset for r in [await rl.limit(identifier) for _ in range(calls)] if r.success]

    batches = await asyncio.gather(*(work() for _ in range(workers)))
    await rl.flush()
    await conn.aclose()
    return [reset for batch in batches for reset in batch]
