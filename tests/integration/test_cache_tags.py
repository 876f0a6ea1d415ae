"""Tag invalidation on real servers (standalone and cluster, sync and async)."""

from __future__ import annotations

import threading
from typing import Any

from redkit.cache import MISSING, AsyncCache, Cache
from redkit.cache.flows import CacheFlows
from redkit.cache.serializers import JsonSerializer
from redkit.core.driver import values_are_text
from redkit.core.flow import run_sync
from redkit.core.ops import Command, Pipeline, RedisOp
from support.backends import BackendCase, Blocking


def make_cache(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    options.setdefault("namespace", "t")
    return Blocking(facade(backend.conn, **options), backend)


def test_invalidating_a_tag_makes_its_entries_stale(backend: BackendCase) -> None:
    cache = make_cache(backend)
    cache.set("post:1", "p1", tags=["user:1", "feed"])
    cache.set("post:2", "p2", tags=["user:2", "feed"])
    cache.set("post:3", "p3")
    assert cache.invalidate_tags("user:1") == 1
    assert cache.get("post:1", default=MISSING) is MISSING
    assert cache.get_many(["post:1", "post:2", "post:3"]) == {"post:2": "p2", "post:3": "p3"}
    cache.invalidate_tags("feed")
    assert cache.get_many(["post:1", "post:2", "post:3"]) == {"post:3": "p3"}
    cache.set("post:1", "p1 again", tags=["user:1"])
    assert cache.get("post:1") == "p1 again"  # written after the invalidation: fresh


def test_get_or_set_and_the_decorator_take_tags(backend: BackendCase) -> None:
    cache = make_cache(backend)
    version = {"n": 0}

    def load() -> int:
        version["n"] += 1
        return version["n"]

    assert cache.get_or_set("k", load, tags=["t"]) == 1
    assert cache.get_or_set("k", load, tags=["t"]) == 1
    cache.invalidate_tags("t")
    assert cache.get_or_set("k", load, tags=["t"]) == 2
    calls: list[int] = []
    if backend.is_async:

        @cache.target.cached(key="posts:{uid}", tags=["user:{uid}"])
        async def posts(uid: int) -> list[int]:
            calls.append(uid)
            return [uid, len(calls)]

    else:

        @cache.target.cached(key="posts:{uid}", tags=["user:{uid}"])
        def posts(uid: int) -> list[int]:
            calls.append(uid)
            return [uid, len(calls)]

    assert backend.call(posts, 7) == [7, 1]
    assert backend.call(posts, 7) == [7, 1]
    cache.invalidate_tags("user:8")
    assert backend.call(posts, 7) == [7, 1]  # another user's tag
    cache.invalidate_tags("user:7")
    assert backend.call(posts, 7) == [7, 2]


def test_an_invalidation_during_a_write_leaves_that_write_stale(backend: BackendCase) -> None:
    if backend.is_async:
        return  # the flow is the same for both runners; this drives it step by step, blocking
    flows = CacheFlows(
        namespace="race", version=None, default_ttl_ms=60_000, negative_ttl_ms=None,
        serializer=JsonSerializer(), secret=None, text_values=values_are_text(backend.conn),
    )  # fmt: skip
    real = backend.conn.sync_driver()

    class InvalidateBeforeTheWrite:
        # Plays a concurrent invalidation that lands after the stamp was read, before the SET.
        def execute(self, op: RedisOp) -> Any:
            writes = op.ops if isinstance(op, Pipeline) else (op,)
            first = writes[0] if writes else None
            if (
                isinstance(first, Command)
                and first.args[0] == "SET"
                and "#" not in str(first.args[1])
            ):
                run_sync(flows.invalidate_tags("user:1"), real)
            return real.execute(op)

    assert run_sync(flows.set("k", "written", tags=["user:1"]), InvalidateBeforeTheWrite())
    assert run_sync(flows.get("k", MISSING), real) is MISSING  # never served


def test_no_stale_value_survives_concurrent_writes_and_invalidations(backend: BackendCase) -> None:
    cache = make_cache(backend)
    database = {"version": 0}
    stop = threading.Event()

    seen: list[tuple[int, int]] = []  # (version current before the read, version read)

    def reader() -> None:
        while not stop.is_set():
            before = database["version"]
            value = cache.get_or_set("row", lambda: database["version"], tags=["row"])
            seen.append((before, value))

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for n in range(1, 41):
            database["version"] = n  # the database changes...
            cache.invalidate_tags("row")  # ...then the cache is told
            # From here on, nobody may read a version older than n.
            assert cache.get_or_set("row", lambda: database["version"], tags=["row"]) >= n
    finally:
        stop.set()
        for thread in readers:
            thread.join(10)
    assert seen  # the readers did read
    # A reader may race one invalidation, never two: what it read is at most one version old.
    assert all(value >= before - 1 for before, value in seen)
