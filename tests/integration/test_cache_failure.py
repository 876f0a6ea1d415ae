"""The cache with a Redis that hangs or is down: reads miss, the loader answers, in time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from redkit.cache import MISSING, AsyncCache, Cache
from redkit.core.errors import BackendTimeout, BackendUnavailable
from support.backends import Blocking, owned_backend
from support.loop import LoopThread
from support.probes import closed_port


@contextlib.contextmanager
def cache_at(url: str, mode: str, loop: LoopThread) -> Iterator[Blocking]:
    with owned_backend(url, mode, loop) as backend:
        facade = AsyncCache if backend.is_async else Cache
        yield Blocking(facade(backend.conn, timeout=0.3), backend)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hung_redis_leaves_the_loader_to_answer_in_time(
    hung_port: int, mode: str, loop_thread: LoopThread
) -> None:
    with cache_at(f"redis://127.0.0.1:{hung_port}", mode, loop_thread) as cache:
        started = time.monotonic()
        assert cache.get_or_set("k", lambda: "from the database") == "from the database"
        assert cache.get("k", default=MISSING) is MISSING
        assert cache.set("k", 1) is False
        assert time.monotonic() - started < 3 * 0.3 + 1.5
        with pytest.raises(BackendTimeout):
            cache.delete("k")  # an invalidation that did not happen must not pass in silence
        assert cache.stats.errors >= 3


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_is_down_is_a_miss(mode: str, loop_thread: LoopThread) -> None:
    with cache_at(f"redis://127.0.0.1:{closed_port()}", mode, loop_thread) as cache:
        assert cache.get_or_set("k", lambda: 5) == 5
        assert cache.get_many(["a", "b"]) == {}
        assert cache.set_many({"a": 1}) is False
        with pytest.raises(BackendUnavailable):
            cache.delete("a")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("scheme", ["redis", "redis+cluster", "http"])
def test_concurrent_callers_share_one_load_while_redis_is_down(
    scheme: str, mode: str, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging
    import threading

    from redkit.drivers.connect import Connection
    from redkit.drivers.rest import RestConnection
    from support.backends import REST_TOKEN

    url = f"{scheme}://127.0.0.1:{closed_port()}"
    conn = RestConnection(url, token=REST_TOKEN) if scheme == "http" else Connection(url)
    loads = 0
    lock = threading.Lock()

    def load() -> str:
        nonlocal loads
        with lock:
            loads += 1
        time.sleep(0.5)  # a database query: the others arrive while it runs
        return "from the database"

    caplog.set_level(logging.WARNING, logger="redkit")
    try:
        if mode == "sync":
            cache = Cache(conn, timeout=0.3)
            got: list[str] = []
            threads = [
                threading.Thread(target=lambda: got.append(cache.get_or_set("k", load)))
                for _ in range(10)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        else:
            acache = AsyncCache(conn, timeout=0.3)

            async def aload() -> str:
                nonlocal loads
                loads += 1
                await asyncio.sleep(0.5)
                return "from the database"

            async def many() -> list[str]:
                calls = (acache.get_or_set("k", aload) for _ in range(10))
                return list(await asyncio.gather(*calls))

            got = loop_thread.run(many())
            loop_thread.run(conn.aclose())
    finally:
        conn.close()
    assert got == ["from the database"] * 10
    assert loads == 1
    warned = [r for r in caplog.records if "loading without the cache" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
