"""The cache on real servers: standalone and cluster, sync and async (see conftest)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from redkit.cache import MISSING, AsyncCache, Cache
from redkit.cache.envelope import pack
from redkit.cache.serializers import JsonSerializer, PickleSerializer
from redkit.core.errors import InvalidArgumentError, InvalidKeyError
from support.backends import BackendCase, Blocking

SECRET = b"0123456789abcdef-test-secret"


def make_cache(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    options.setdefault("namespace", "t")
    return Blocking(facade(backend.conn, **options), backend)


def test_set_get_delete_and_a_cached_none_is_not_a_miss(backend: BackendCase) -> None:
    cache = make_cache(backend)
    assert cache.get("user:1") is None
    assert cache.get("user:1", default=MISSING) is MISSING
    assert cache.set("user:1", {"name": "Ada", "tags": ["x"], "n": 1.5})
    assert cache.get("user:1") == {"name": "Ada", "tags": ["x"], "n": 1.5}
    assert cache.set("nothing", None)
    assert cache.get("nothing", default=MISSING) is None  # cached None, not a miss
    assert cache.delete("user:1", "nothing", "never-there") == 2
    assert cache.get("user:1", default=MISSING) is MISSING
    assert (cache.stats.hits, cache.stats.misses) == (2, 3)


def test_keys_are_namespaced_and_versioned(backend: BackendCase) -> None:
    v1 = make_cache(backend, namespace="app", version="v1")
    v2 = make_cache(backend, namespace="app", version="v2")
    v1.set("user:{42}*", "old")
    assert v2.get("user:{42}*") is None  # a new version leaves old entries behind
    entries = {key for key in backend.all_keys() if not key.endswith("#lease")}
    assert entries == {"app:v1:g0:user:{42}*"}
    assert v1.get("user:{42}*") == "old"


def test_ttls_touch_and_defaults(backend: BackendCase) -> None:
    cache = make_cache(backend, default_ttl="1 m", negative_ttl="5 s")
    cache.set("a", 1)
    assert 50 < cache.ttl("a") <= 60
    cache.set("b", 2, ttl=3600)
    assert 3500 < cache.ttl("b") <= 3600
    cache.set("none", None)
    assert 0 < cache.ttl("none") <= 5  # "not found" lives for the negative TTL
    assert cache.touch("a", "2 h")
    assert 7000 < cache.ttl("a") <= 7200
    assert not cache.touch("missing")
    assert cache.ttl("missing") is None
    forever = make_cache(backend, namespace="forever", default_ttl=None)
    forever.set("k", 1)
    assert forever.ttl("k") is None


def test_get_many_and_set_many_span_cluster_slots(backend: BackendCase) -> None:
    cache = make_cache(backend)
    values = {f"item:{n}": n for n in range(50)}
    assert cache.set_many(values)
    found = cache.get_many([*values, "missing"])
    assert found == values
    assert cache.get_many([]) == {}
    assert cache.delete(*values) == 50


def test_get_or_set_loads_once_then_hits(backend: BackendCase) -> None:
    cache = make_cache(backend)
    loads: list[int] = []

    def loader() -> dict[str, int]:
        loads.append(1)
        return {"id": 7}

    assert cache.get_or_set("user:7", loader) == {"id": 7}
    assert cache.get_or_set("user:7", loader) == {"id": 7}
    assert len(loads) == 1
    assert cache.stats.loads == 1


def test_concurrent_callers_in_one_process_share_one_load(backend: BackendCase) -> None:
    cache = make_cache(backend)
    loads: list[int] = []
    release = threading.Event()

    def slow_loader() -> str:
        loads.append(1)
        release.wait(5)
        return "value"

    if backend.is_async:
        facade = cache.target

        async def many() -> list[Any]:
            async def async_loader() -> str:
                loads.append(1)
                await asyncio.sleep(0.2)
                return "value"

            return await asyncio.gather(
                *(facade.get_or_set("hot", async_loader) for _ in range(20))
            )

        results = backend.loop.run(many())
    else:
        results = []
        threads = [
            threading.Thread(target=lambda: results.append(cache.get_or_set("hot", slow_loader)))
            for _ in range(20)
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.2)
        release.set()
        for thread in threads:
            thread.join(10)
    assert results == ["value"] * 20
    assert len(loads) == 1


def test_the_decorator_keys_by_arguments_and_can_invalidate_and_refresh(
    backend: BackendCase,
) -> None:
    cache = make_cache(backend)
    calls: list[tuple[int, str]] = []

    if backend.is_async:

        @cache.target.cached(ttl="1 m", key="user:{uid}:{fields}")
        async def get_user(uid: int, fields: str = "all") -> dict[str, Any]:
            calls.append((uid, fields))
            return {"uid": uid, "fields": fields, "n": len(calls)}

        @cache.target.cached()
        async def total(a: int, b: int = 0) -> int:
            calls.append((a, "total"))
            return a + b

    else:

        @cache.target.cached(ttl="1 m", key="user:{uid}:{fields}")
        def get_user(uid: int, fields: str = "all") -> dict[str, Any]:
            calls.append((uid, fields))
            return {"uid": uid, "fields": fields, "n": len(calls)}

        @cache.target.cached()
        def total(a: int, b: int = 0) -> int:
            calls.append((a, "total"))
            return a + b

    call = backend.call
    assert call(get_user, 1)["n"] == 1
    assert call(get_user, uid=1)["n"] == 1  # the same call, by keyword: a hit
    assert call(get_user, 1, "name")["n"] == 2
    assert "t:g0:user:1:all" in backend.all_keys()
    assert call(get_user.refresh, 1)["n"] == 3
    assert call(get_user, 1)["n"] == 3
    assert call(get_user.invalidate, 1) == 1
    assert call(get_user, 1)["n"] == 4
    assert call(total, 1, 2) == 3
    assert call(total, a=1, b=2) == 3
    assert calls.count((1, "total")) == 1  # the default key is stable across call styles
    assert any(key.startswith("t:g0:test_cache.") for key in backend.all_keys())


def test_the_decorator_refuses_a_function_of_the_other_kind_at_decoration(
    backend: BackendCase,
) -> None:
    cache = make_cache(backend)

    async def async_loader() -> int:
        return 1

    def plain_loader() -> int:
        return 1

    wrong, fix = (plain_loader, "Cache") if backend.is_async else (async_loader, "AsyncCache")
    with pytest.raises(InvalidArgumentError, match=f"use {fix}"):
        cache.target.cached(ttl="1 m")(wrong)  # refused before any call


def test_corrupt_or_foreign_bytes_are_a_logged_miss(
    backend: BackendCase, caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_cache(backend)
    admin = backend.admin
    admin.set("t:g0:plain", "written by someone else")
    admin.set("t:g0:truncated", b"\xffrk\x01")
    good = pack(JsonSerializer(), "t:g0:bad-json", 1, created_ms=0)
    admin.set("t:g0:bad-json", good[:-1] + b"{")
    for key in ("plain", "truncated", "bad-json"):
        assert cache.get(key, default=MISSING) is MISSING
    assert cache.stats.corrupt == 3
    assert "treated as a miss" in caplog.text
    assert cache.get_or_set("plain", lambda: "reloaded") == "reloaded"  # and healed
    assert cache.get("plain") == "reloaded"


def test_pickle_needs_a_secret_and_refuses_forged_entries(backend: BackendCase) -> None:
    facade = AsyncCache if backend.is_async else Cache
    with pytest.raises(InvalidArgumentError, match="give the cache a secret"):
        facade(backend.conn, serializer="pickle")
    with pytest.raises(InvalidArgumentError, match="at least 16 bytes"):
        facade(backend.conn, serializer="pickle", secret="short")
    cache = make_cache(backend, serializer="pickle", secret=SECRET)
    cache.set("obj", {1, 2, 3})
    assert cache.get("obj") == {1, 2, 3}
    # An entry signed with another secret, or moved under another key, is never unpickled.
    forged = pack(PickleSerializer(), "t:g0:obj2", ["evil"], created_ms=0, secret=b"x" * 32)
    backend.admin.set("t:g0:obj2", forged)
    assert cache.get("obj2", default=MISSING) is MISSING
    backend.admin.set("t:g0:moved", backend.admin.get("t:g0:obj"))
    assert cache.get("moved", default=MISSING) is MISSING
    json_cache = make_cache(backend)  # another serializer's entry is a miss, not a crash
    assert json_cache.get("obj", default=MISSING) is MISSING


def test_msgpack_round_trips(backend: BackendCase) -> None:
    cache = make_cache(backend, serializer="msgpack")
    value = {"bytes": b"\x00\xff", "list": [1, 2.5, None, True], "text": "ü"}
    cache.set("m", value)
    assert cache.get("m") == value


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", InvalidKeyError),
        (None, InvalidKeyError),
        (1.5, InvalidKeyError),
        (b"k", InvalidKeyError),
    ],
)
def test_bad_keys_are_refused(backend: BackendCase, key: Any, error: type[Exception]) -> None:
    cache = make_cache(backend)
    with pytest.raises(error):
        cache.get(key)
    with pytest.raises(error):
        cache.set(key, 1)


def test_huge_and_unicode_keys_work(backend: BackendCase) -> None:
    cache = make_cache(backend)
    for key in ("ключ-🙂", "k" * 100_000, 12345):
        cache.set(key, key)
        assert cache.get(key) == key
    assert all(len(k) < 600 for k in backend.all_keys())


def test_values_that_cannot_be_stored_say_why(backend: BackendCase) -> None:
    cache = make_cache(backend)
    with pytest.raises(InvalidArgumentError, match="cannot cache a value of type object as JSON"):
        cache.set("x", object())
    with pytest.raises(InvalidArgumentError, match="as JSON"):
        cache.get_or_set("y", lambda: {1, 2})
    assert backend.all_keys() == set()


def test_bump_version_leaves_the_whole_namespace_behind(backend: BackendCase) -> None:
    cache = make_cache(backend, namespace="ns")
    other = make_cache(backend, namespace="ns")  # another process, in effect
    cache.set_many({"a": 1, "b": 2})
    assert other.get("a") == 1
    assert cache.bump_version() == 1
    assert cache.get("a", default=MISSING) is MISSING  # at once in the process that bumped
    other.target._flows.generation_check_s = 0  # the other process's next check is due
    assert other.get("b", default=MISSING) is MISSING
    other.set("a", 10)
    assert cache.get("a") == 10
    entries = {key for key in backend.all_keys() if not key.endswith("#lease")}
    assert entries == {"ns:g0:a", "ns:g0:b", "ns:g1:a", "ns#generation"}


def test_a_key_that_looks_like_a_digest_is_its_own_entry(backend: BackendCase) -> None:
    from redkit.core import keys

    cache = make_cache(backend)
    long_key = "k" * 600
    cache.set(long_key, "long")
    assert cache.get("#" + keys.digest(long_key)) is None  # not the long key's entry
    cache.set("#tag", "tagged")
    assert (cache.get("#tag"), cache.get(long_key)) == ("tagged", "long")
