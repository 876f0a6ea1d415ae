"""A Redis killed or frozen mid-run: every call is still answered, and soon without waiting."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from redkit.cache import AsyncCache, Cache
from redkit.core.breaker import Breaker
from redkit.core.errors import BackendUnavailable
from redkit.drivers.embedded import EmbeddedRedis
from support import Blocking, LoopThread, owned_backend


@contextlib.contextmanager
def cache_on(server: EmbeddedRedis, mode: str, loop: LoopThread) -> Iterator[Any]:
    with owned_backend(server.url, mode, loop) as backend:
        facade = AsyncCache if backend.is_async else Cache
        yield Blocking(facade(backend.conn, namespace="b", timeout=0.3), backend)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_killed_mid_run_leaves_every_call_answered(
    mode: str, loop_thread: LoopThread
) -> None:
    server = EmbeddedRedis().start()
    with cache_on(server, mode, loop_thread) as cache:
        answers = [cache.get_or_set(f"k{n}", lambda n=n: n) for n in range(5)]
        server.stop()  # killed, mid-run
        took = []
        for n in range(5, 30):
            started = time.monotonic()
            answers.append(cache.get_or_set(f"k{n}", lambda n=n: n))
            took.append(time.monotonic() - started)
        assert answers == list(range(30))  # every call answered, by the loader
        assert cache.breaker.is_open
        assert max(took[10:]) < 0.05  # once open, nobody waits on the dead server
        with pytest.raises(BackendUnavailable, match="circuit open"):
            cache.delete("k1")  # an invalidation still says it did not happen


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_breaker_closes_when_redis_answers_again(mode: str, loop_thread: LoopThread) -> None:
    with EmbeddedRedis() as server, cache_on(server, mode, loop_thread) as cache:
        cache.breaker.cooldown = 0.3
        cache.set("k", "cached")
        os.kill(server.pid, signal.SIGSTOP)
        try:
            for _ in range(cache.breaker.threshold):
                assert cache.get_or_set("k", lambda: "loaded") == "loaded"
            assert cache.breaker.is_open
        finally:
            os.kill(server.pid, signal.SIGCONT)
        time.sleep(0.35)  # the cool-down: then one trial goes through
        assert cache.get("k") == "cached"
        assert not cache.breaker.is_open


def test_breaker_states() -> None:
    breaker = Breaker(threshold=2, cooldown=0.05)
    breaker.admit()
    breaker.failed()
    breaker.admit()  # one failure: still closed
    breaker.failed()
    with pytest.raises(BackendUnavailable):
        breaker.admit()
    time.sleep(0.06)
    breaker.admit()  # half-open: the trial
    with pytest.raises(BackendUnavailable):
        breaker.admit()  # only one trial at a time
    breaker.succeeded()
    breaker.admit()
    assert not breaker.is_open
