"""A Redis killed or frozen mid-run: every call is still answered, and soon without waiting."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from redkit.cache import AsyncCache, Cache
from redkit.core.breaker import AsyncBreakerDriver, Breaker, BreakerDriver
from redkit.core.errors import BackendUnavailable, CommandError
from redkit.core.ops import command
from redkit.drivers.embedded import EmbeddedRedis
from support.backends import BackendCase, Blocking, owned_backend
from support.loop import LoopThread


@contextlib.contextmanager
def cache_on(server: EmbeddedRedis, mode: str, loop: LoopThread) -> Iterator[Any]:
    with owned_backend(server.url, mode, loop) as backend:
        facade = AsyncCache if backend.is_async else Cache
        yield Blocking(facade(backend.conn, namespace="b", timeout=0.3), backend)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_killed_mid_run_leaves_every_call_answered(
    mode: str, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedRedis().start()
    with cache_on(server, mode, loop_thread) as cache:
        answers = [cache.get_or_set(f"k{n}", lambda n=n: n) for n in range(5)]
        server.stop()  # killed, mid-run
        answers += [cache.get_or_set(f"k{n}", lambda n=n: n) for n in range(5, 15)]
        assert cache.breaker.is_open
        caplog.clear()
        answers += [cache.get_or_set(f"k{n}", lambda n=n: n) for n in range(15, 30)]
        assert answers == list(range(30))  # every call answered, by the loader
        # Once open, nobody waits on the dead server: every later read is refused by the
        # circuit itself, without a connection tried (not a timing: a structural check).
        reads = [r.getMessage() for r in caplog.records if "cache read of" in r.getMessage()]
        assert len(reads) == 15
        assert all("circuit open" in message for message in reads), reads
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


# -- every way out of the half-open trial ends it ----------------------------------------------


class Interrupted(BaseException):
    """A ``KeyboardInterrupt``-like exit: not an ``Exception``."""


def half_open(breaker: Breaker) -> Breaker:
    """Open ``breaker`` with no cool-down left: the next operation is the trial."""
    breaker.threshold, breaker.cooldown = 1, 0.0
    breaker.failed()
    return breaker


def guarded(backend: BackendCase, breaker: Breaker) -> Any:
    if backend.is_async:

        async def in_the_loop() -> AsyncBreakerDriver:  # the loop's own driver
            return AsyncBreakerDriver(backend.conn.async_driver(), breaker)

        return backend.loop.run(in_the_loop())
    return BreakerDriver(backend.conn.sync_driver(), breaker)


def assert_admits_again(backend: BackendCase, driver: Any) -> None:
    backend.admin.set("other", "up")
    assert backend.call(driver.execute, command("GET", "other")) == b"up"  # not "circuit open"
    assert not driver.breaker.is_open


def test_a_trial_answered_with_an_error_reply_closes_the_breaker(backend: BackendCase) -> None:
    backend.admin.set("string", "x")
    driver = guarded(backend, half_open(Breaker()))
    with pytest.raises(CommandError):
        backend.call(driver.execute, command("LPUSH", "string", "v"))  # WRONGTYPE: an answer
    assert_admits_again(backend, driver)


def test_a_cancelled_trial_ends(server: Any, loop_thread: LoopThread) -> None:
    with owned_backend(server.url, "async", loop_thread) as backend:
        driver = guarded(backend, half_open(Breaker()))

        async def cancel_the_trial() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(driver.execute(command("BLPOP", "empty", "2")), 0.05)

        loop_thread.run(cancel_the_trial())
        assert_admits_again(backend, driver)


def test_a_trial_left_by_a_base_exception_ends(server: Any, loop_thread: LoopThread) -> None:
    def interrupt(signum: int, frame: Any) -> None:
        raise Interrupted

    with owned_backend(server.url, "sync", loop_thread) as backend:
        # Connected first (a cluster client learns the topology on first use): the signal
        # must land in the blocked read, not in setup code that may swallow it.
        assert backend.conn.sync_driver().execute(command("EXISTS", "empty")) == 0
        driver = guarded(backend, half_open(Breaker()))
        previous = signal.signal(signal.SIGALRM, interrupt)
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            with pytest.raises(Interrupted):
                driver.execute(command("BLPOP", "empty", "2"))  # interrupted mid-wait
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        assert_admits_again(backend, driver)


def test_a_cache_read_cancelled_while_redis_recovers_does_not_stick_the_breaker(
    loop_thread: LoopThread,
) -> None:
    with EmbeddedRedis() as server, cache_on(server, "async", loop_thread) as cache:
        cache.set("k", "cached")
        half_open(cache.breaker)
        os.kill(server.pid, signal.SIGSTOP)  # the trial will wait on a silent server
        try:

            async def cancelled_read() -> None:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(cache.target.get("k"), 0.05)

            loop_thread.run(cancelled_read())
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert cache.get("k") == "cached"  # a hit, not a miss behind a stuck trial
        cache.delete("k")  # not "circuit open"
        assert not cache.breaker.is_open


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("scheme", ["redis", "http"])
def test_an_open_circuit_names_the_server_and_the_last_cause(
    scheme: str, mode: str, loop_thread: LoopThread
) -> None:
    from redkit.drivers.connect import Connection
    from redkit.drivers.rest import RestConnection
    from support.backends import REST_TOKEN
    from support.probes import closed_port

    port = closed_port()
    url = f"{scheme}://127.0.0.1:{port}"
    conn = RestConnection(url, token=REST_TOKEN) if scheme == "http" else Connection(url)
    facade = AsyncCache if mode == "async" else Cache
    backend = BackendCase(conn, topology="standalone", mode=mode, loop=loop_thread)
    cache = Blocking(facade(conn, timeout=0.3), backend)
    try:
        for n in range(5):  # the threshold: five reads that got no answer
            cache.get(f"k{n}")
        with pytest.raises(BackendUnavailable, match="circuit open") as refused:
            cache.delete("k")
    finally:
        if mode == "async":
            loop_thread.run(conn.aclose())
        conn.close()
    message = str(refused.value)
    assert f"127.0.0.1:{port}" in message  # which server
    assert "the last: Backend" in message  # and why
