"""A worker process for the cache stampede test: threads read one cold key at once.

It lives in its own module so that ``multiprocessing`` (spawn) can import it in a child.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from redkit import Cache, connect
from redkit.core.ops import command


def stampede(url: str, key: str, threads: int, barrier: Any, results: Any) -> None:
    """After all processes meet at ``barrier``, ``threads`` threads read ``key`` at once; the
    loader counts its calls in Redis. Puts the values read."""
    conn = connect(url)
    cache = Cache(conn, namespace="stampede", lease="10 s")
    counter = conn.sync_driver()

    def loader() -> str:
        counter.execute(command("INCR", "stampede-loads"))
        time.sleep(0.3)  # a slow database query
        return "loaded"

    values: list[Any] = []
    workers = [
        threading.Thread(target=lambda: values.append(cache.get_or_set(key, loader)))
        for _ in range(threads)
    ]
    barrier.wait(30)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    results.put(values)


def write_once(url: str, key: str, value: Any) -> None:
    """Another process: write ``key`` through a cache that has a local tier too."""
    cache = Cache(connect(url), namespace="tier", local_ttl="60 s")
    cache.set(key, value)
    cache.close()
