"""The local tier: hits without a round trip, kept coherent across processes over pub/sub."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from redkit.cache import MISSING, AsyncCache, Cache
from support.backends import BackendCase, Blocking
from support.workers.cache import write_once


def make_cache(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    options.setdefault("namespace", "tier")
    options.setdefault("local_ttl", "60 s")
    return Blocking(facade(backend.conn, **options), backend)


def eventually(check: Any, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


def test_a_local_hit_costs_no_round_trip(backend: BackendCase) -> None:
    cache = make_cache(backend)
    cache.set("k", {"v": 1})
    assert cache.get("k") == {"v": 1}
    backend.reset_command_stats()
    assert [cache.get("k") for _ in range(50)] == [{"v": 1}] * 50
    assert cache.get_or_set("k", lambda: "never loaded") == {"v": 1}
    assert cache.get_many(["k"]) == {"k": {"v": 1}}
    assert backend.command_calls("get", "mget") == 0
    assert cache.stats.local_hits == 53  # the first read too: set() keeps a copy
    cache.close()


def test_writes_in_one_cache_reach_the_local_copies_of_another(backend: BackendCase) -> None:
    first, second = make_cache(backend), make_cache(backend)
    first.set("k", 1)
    assert second.get("k") == 1  # now held locally by the second one too
    first.set("k", 2)
    assert eventually(lambda: second.get("k") == 2)
    first.delete("k")
    assert eventually(lambda: second.get("k", default=MISSING) is MISSING)
    first.set("t", "tagged", tags=["x"])
    assert second.get("t") == "tagged"
    first.invalidate_tags("x")
    assert eventually(lambda: second.get("t", default=MISSING) is MISSING)
    first.set("b", 1)
    assert second.get("b") == 1
    first.bump_version()
    second.target._flows.generation_check_s = 0
    assert eventually(lambda: second.get("b", default=MISSING) is MISSING)
    first.close()
    second.close()


def test_the_local_copy_ends_with_its_ttl(backend: BackendCase) -> None:
    cache = make_cache(backend, local_ttl="200 ms")
    cache.set("k", 1)
    for key in backend.all_keys():  # gone from Redis behind the cache's back
        backend.admin.delete(key)
    assert cache.get("k") == 1  # still held here: nobody announced the flush
    time.sleep(0.25)
    assert cache.get("k", default=MISSING) is MISSING
    cache.close()


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_a_write_in_another_process_drops_the_local_copy(
    topology: str, request: pytest.FixtureRequest
) -> None:
    server = request.getfixturevalue("redis_cluster" if topology == "cluster" else "redis_server")
    conn = server.connect()
    cache = Cache(conn, namespace="tier", local_ttl="60 s")
    cache.set("shared", "old")
    assert cache.get("shared") == "old"
    process = multiprocessing.get_context("spawn").Process(
        target=write_once, args=(server.url, "shared", "new")
    )
    process.start()
    process.join(60)
    assert process.exitcode == 0
    assert eventually(lambda: cache.get("shared") == "new")
    cache.close()
    conn.close()
