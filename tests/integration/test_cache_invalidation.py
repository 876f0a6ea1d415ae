"""Write-through and pattern deletes on real servers (standalone and cluster, sync and async)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from redkit.cache import MISSING, AsyncCache, Cache
from redkit.core.driver import values_are_text
from redkit.core.errors import InvalidArgumentError
from support.backends import BackendCase, Blocking


def make_cache(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    options.setdefault("namespace", "t")
    return Blocking(facade(backend.conn, **options), backend)


def fill(backend: BackendCase, names: list[str]) -> None:
    admin = backend.admin
    for start in range(0, len(names), 5_000):
        pipe = admin.pipeline(transaction=False)
        for name in names[start : start + 5_000]:
            pipe.set(name, b"x")
        pipe.execute()


def test_write_through_caches_what_the_write_returned(backend: BackendCase) -> None:
    cache = make_cache(backend)
    db: dict[int, dict[str, Any]] = {}
    cache.set("user:1", {"name": "old"})

    def save() -> dict[str, Any]:
        db[1] = {"name": "new"}
        return db[1]

    assert cache.write_through("user:1", save) == {"name": "new"}
    assert cache.get("user:1") == {"name": "new"}
    writes = cache.target.writes(key="user:{uid}")

    if backend.is_async:

        @writes
        async def rename(uid: int, name: str) -> dict[str, Any]:
            db[uid] = {"name": name}
            return db[uid]

    else:

        @writes
        def rename(uid: int, name: str) -> dict[str, Any]:
            db[uid] = {"name": name}
            return db[uid]

    assert backend.call(rename, 1, "newer") == {"name": "newer"}
    assert cache.get("user:1") == {"name": "newer"}


def test_a_result_that_cannot_be_cached_removes_the_stale_value(backend: BackendCase) -> None:
    cache = make_cache(backend)
    cache.set("user:1", {"name": "old"})
    with pytest.raises(InvalidArgumentError, match="as JSON"):
        cache.write_through("user:1", lambda: {"tags": {"a", "b"}})  # the write did happen
    assert cache.get("user:1", default=MISSING) is MISSING  # so the old value must be gone


def test_a_failed_write_caches_nothing(backend: BackendCase) -> None:
    cache = make_cache(backend)
    cache.set("user:1", "old")

    def failing() -> str:
        raise RuntimeError("the database said no")

    with pytest.raises(RuntimeError):
        cache.write_through("user:1", failing)
    assert cache.get("user:1") == "old"  # nothing was written, so the cache stays


def test_pattern_delete_removes_all_and_only_the_matching_keys(backend: BackendCase) -> None:
    cache = make_cache(backend)
    matching = [f"t:g0:user:{n}:profile" for n in range(100_000)]
    others = [
        "t:g0:user:1",
        "t:g0:users:2:profile",
        "other:g0:user:3:profile",
        "t:g1:user:4:profile",
        "t:g0:post:1",
    ]
    fill(backend, matching + others)
    seen: list[int] = []
    deleted = cache.delete_pattern("user:*:profile", batch=1_000, progress=seen.append)
    assert deleted == 100_000
    assert backend.all_keys() == set(others)
    assert seen == sorted(seen)
    assert seen[-1] == 100_000


def test_pattern_parts_are_matched_literally(backend: BackendCase) -> None:
    cache = make_cache(backend)
    for key in ("user:*:a", "user:1:a", "user:[1]:a", "user:?:a", "user:\\:a"):
        cache.set(key, 1)
    assert cache.delete_pattern("user:{}:a", "*") == 1  # only the key whose part is "*"
    assert cache.delete_pattern("user:{}:a", "[1]") == 1
    assert cache.delete_pattern("user:{}:a", "?") == 1
    assert cache.delete_pattern("user:{}:a", "\\") == 1
    assert cache.get("user:1:a") == 1
    with pytest.raises(InvalidArgumentError, match="one \\{\\} per part"):
        cache.delete_pattern("user:{}:{}", "only one")


def test_pattern_delete_never_leaves_the_namespace(backend: BackendCase) -> None:
    cache = make_cache(backend, namespace="mine", version="v1")
    fill(
        backend, ["mine:v1:g0:a", "mine:v2:g0:a", "yours:v1:g0:a", "mine:v1x:g0:a", "mine:v1:g1:a"]
    )
    assert cache.delete_pattern("*") == 1
    assert backend.all_keys() == {"mine:v2:g0:a", "yours:v1:g0:a", "mine:v1x:g0:a", "mine:v1:g1:a"}


def test_the_cluster_is_walked_node_by_node(backend: BackendCase) -> None:
    if not backend.is_cluster:
        pytest.skip("a standalone server is one node")
    cache = make_cache(backend)
    fill(backend, [f"t:g0:k:{n}" for n in range(300)])
    admin = backend.admin
    assert isinstance(admin, redis.cluster.RedisCluster)
    per_node = [admin.dbsize(target_nodes=node) for node in admin.get_primaries()]
    assert all(count > 0 for count in per_node)  # the keys really are spread
    assert cache.delete_pattern("k:*") == 300


def test_write_through_never_deletes_a_key_outside_the_cache(backend: BackendCase) -> None:
    from redkit.cache.flows import CacheFlows
    from redkit.cache.serializers import JsonSerializer
    from redkit.core.errors import BackendTimeout
    from redkit.core.flow import run_sync
    from redkit.core.ops import Command, RedisOp

    if backend.is_async:
        return  # one flow, driven step by step with the blocking runner
    flows = CacheFlows(
        namespace="wt", version=None, default_ttl_ms=60_000, negative_ttl_ms=None,
        serializer=JsonSerializer(), secret=None, text_values=values_are_text(backend.conn),
    )  # fmt: skip
    real = backend.conn.sync_driver()
    backend.admin.set("k", "someone else's")  # the bare key: not the cache's
    run_sync(flows.set("k", "old"), real)
    flows.generations.forget()
    failures = iter([True])

    class GenerationTimesOutOnce:
        def execute(self, op: RedisOp) -> Any:
            generation_read = isinstance(op, Command) and op.args[:2] == ("GET", "wt#generation")
            if generation_read and next(failures, False):
                raise BackendTimeout("no answer")
            if isinstance(op, Command) and op.args[0] == "SET" and op.args[1] == "wt:g0:k":
                raise BackendTimeout("no answer")  # and the cache write fails too
            return real.execute(op)

    assert run_sync(flows.write_through("k", lambda: "new"), GenerationTimesOutOnce()) == "new"
    assert backend.admin.get("k") == b"someone else's"
    assert run_sync(flows.get("k", MISSING), real) is MISSING  # the old value is gone
