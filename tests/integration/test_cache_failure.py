"""The cache with a Redis that hangs or is down: reads miss, the loader answers, in time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from redkit.cache import MISSING, AsyncCache, Cache
from redkit.core.errors import BackendTimeout, BackendUnavailable
from support import Blocking, LoopThread, closed_port, owned_backend


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
