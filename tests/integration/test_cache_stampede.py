"""A cold key read by many threads in several processes at once is loaded exactly once."""

from __future__ import annotations

import multiprocessing
from typing import Any

import pytest

from cache_worker import stampede
from support import Backend, Blocking

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


def test_waiters_load_themselves_when_the_lease_holder_never_delivers(backend: Backend) -> None:
    from redkit.cache import AsyncCache, Cache

    facade = AsyncCache if backend.is_async else Cache
    cache = Blocking(facade(backend.conn, namespace="t", lease="300 ms"), backend)
    # Another process took the lease, then died without loading.
    backend.admin.set("t#lease:t:g0:k", "someone-else", px=300)
    assert cache.get_or_set("k", lambda: "mine") == "mine"
    assert (cache.stats.leases_lost, cache.stats.loads) == (1, 1)
    assert cache.get("k") == "mine"
    no_lease = Blocking(facade(backend.conn, namespace="u", lease=None), backend)
    assert no_lease.get_or_set("k", lambda: 1) == 1
    assert no_lease.stats.leases_won == 0
