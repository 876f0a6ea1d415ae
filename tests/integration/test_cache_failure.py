"""The cache with a Redis that hangs or is down: reads miss, the loader answers, in time."""

from __future__ import annotations

import time

import pytest

from redkit import connect
from redkit.cache import MISSING, AsyncCache, Cache
from redkit.core.errors import BackendTimeout, BackendUnavailable
from support import Backend, Blocking, LoopThread, closed_port


def cache_at(url: str, mode: str, loop: LoopThread) -> Blocking:
    backend = Backend(connect(url), topology="standalone", mode=mode, loop=loop)
    facade = AsyncCache if backend.is_async else Cache
    return Blocking(facade(backend.conn, timeout=0.3), backend)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hung_redis_leaves_the_loader_to_answer_in_time(
    hung_port: int, mode: str, loop_thread: LoopThread
) -> None:
    cache = cache_at(f"redis://127.0.0.1:{hung_port}", mode, loop_thread)
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
    cache = cache_at(f"redis://127.0.0.1:{closed_port()}", mode, loop_thread)
    assert cache.get_or_set("k", lambda: 5) == 5
    assert cache.get_many(["a", "b"]) == {}
    assert cache.set_many({"a": 1}) is False
    with pytest.raises(BackendUnavailable):
        cache.delete("a")
