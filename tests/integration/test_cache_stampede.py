"""A cold key read by many threads in several processes at once is loaded exactly once."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from support.backends import BackendCase, Blocking
from support.workers.cache import stampede

PROCESSES, THREADS = 4, 10


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_a_cold_key_is_loaded_once_across_processes(
    topology: str, request: pytest.FixtureRequest
) -> None:
    if topology == "cluster":
        server = request.getfixturevalue("redis_cluster")
        server.flushall()
        admin: Any = server.connect().sync_driver().client
    else:
        server = request.getfixturevalue("redis_server")
        with server.client() as client:
            client.flushall()
        admin = server.client()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results: Any = context.Queue()
    processes = [
        context.Process(target=stampede, args=(server.url, "cold", THREADS, barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    values = [value for _ in processes for value in results.get(timeout=60)]
    for process in processes:
        process.join(30)
    assert [process.exitcode for process in processes] == [0] * PROCESSES
    assert values == ["loaded"] * PROCESSES * THREADS
    assert int(admin.get("stampede-loads")) == 1
    admin.close()


def test_waiters_load_themselves_when_the_lease_holder_never_delivers(backend: BackendCase) -> None:
    from redkit.cache import AsyncCache, Cache

    facade = AsyncCache if backend.is_async else Cache
    cache = Blocking(facade(backend.conn, namespace="t", lease="300 ms"), backend)
    # Another process took the lease, then died without loading.
    backend.admin.set("{t:g0:k}#lease", "someone-else", px=300)
    assert cache.get_or_set("k", lambda: "mine") == "mine"
    assert (cache.stats.leases_lost, cache.stats.loads) == (1, 1)
    assert cache.get("k") == "mine"
    no_lease = Blocking(facade(backend.conn, namespace="u", lease=None), backend)
    assert no_lease.get_or_set("k", lambda: 1) == 1
    assert no_lease.stats.leases_won == 0


def test_a_load_that_began_before_a_write_never_covers_it(backend: BackendCase) -> None:
    from redkit.cache import AsyncCache, Cache

    facade = AsyncCache if backend.is_async else Cache
    cache = Blocking(facade(backend.conn, namespace="w"), backend)
    other = Blocking(facade(backend.conn, namespace="w"), backend)  # another process

    def slow_old_read() -> str:
        # While this load reads the old row, another process writes the new one through.
        other.write_through("row", lambda: "new")
        return "old"

    async def slow_old_read_async() -> str:  # the same, on the event loop
        await other.target.write_through("row", lambda: "new")
        return "old"

    loader: Any = slow_old_read_async if backend.is_async else slow_old_read
    assert cache.get_or_set("row", loader) == "old"  # the caller gets what it loaded
    assert cache.get("row") == "new"  # but the cache keeps the newer write


def test_waiters_take_over_at_once_when_the_loader_fails(backend: BackendCase) -> None:
    from redkit.cache import AsyncCache, Cache

    facade = AsyncCache if backend.is_async else Cache
    cache = Blocking(facade(backend.conn, namespace="f", lease="10 s"), backend)
    # Another process holds the lease, then gives up without a value (its load failed).
    lease = "{f:g0:k}#lease"
    backend.admin.set(lease, "theirs", px=10_000)

    def give_up_soon() -> None:
        time.sleep(0.2)
        backend.admin.delete(lease)

    import threading

    threading.Thread(target=give_up_soon).start()
    started = time.monotonic()
    assert cache.get_or_set("k", lambda: "mine") == "mine"
    assert time.monotonic() - started < 2  # not the 10 s lease
    assert cache.stats.leases_won == 1


def test_a_load_after_a_write_takes_the_lease_the_write_left(backend: BackendCase) -> None:
    """A write fences the loads that began before it; a load after it never waits on that."""
    from redkit.cache import AsyncCache, Cache

    facade = AsyncCache if backend.is_async else Cache
    cache = Blocking(facade(backend.conn, namespace="d", lease="30 s"), backend)
    assert cache.get_or_set("k", lambda: 1) == 1
    assert cache.delete("k") == 1  # leaves the fence on the lease key
    assert cache.get_or_set("k", lambda: 2) == 2
    cache.set("k", 3)
    cache.delete("k")
    assert cache.get_or_set("k", lambda: 4) == 4
    assert (cache.stats.leases_won, cache.stats.leases_lost) == (3, 0)
    assert cache.get("k") == 4


def test_a_caller_that_wins_the_lease_after_another_process_loaded_does_not_load_again(
    backend: BackendCase,
) -> None:
    """The race of two processes: A reads a miss; B takes the lease, loads, stores, releases;
    only then does A ask for the lease. A must take B's value, not load a second time."""
    from redkit.cache import Cache
    from redkit.cache.leases import TAKE_LEASE
    from redkit.core.flow import Flow
    from redkit.core.ops import ScriptCall

    a, b = Cache(backend.conn, namespace="race"), Cache(backend.conn, namespace="race")
    loads: list[str] = []

    def loader(who: str) -> Any:
        return lambda: loads.append(who) or f"from {who}"

    def b_in_the_gap(inner: Flow[Any]) -> Flow[Any]:
        # A's own flow, with B's whole load run just before A's first lease request.
        interleaved = False
        op = next(inner)
        while True:
            if not interleaved and isinstance(op, ScriptCall) and op.script is TAKE_LEASE:
                interleaved = True
                yield from b._flows.get_or_set("k", loader("b"))
            try:
                reply = yield op
            except Exception as exc:
                op = inner.throw(exc)
                continue
            try:
                op = inner.send(reply)
            except StopIteration as stop:
                return stop.value

    lookup = backend.run(b_in_the_gap(a._flows.get_or_set("k", loader("a"))))
    assert loads == ["b"]
    assert lookup.value == "from b"
