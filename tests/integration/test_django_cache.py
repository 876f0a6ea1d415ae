"""redkit.web.django.RedisCache on real servers: standalone, cluster and REST (the gateway),
each through the blocking methods and the ``a...`` ones.

Django's own ``BaseCacheTests`` run against this backend too (tests/django_suite); these tests
hold what those do not: the keys in Redis, ``clear()`` leaving other keys alone, atomic
``incr`` under load, the stampede, tags, serializers, bad settings, and Redis down.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redkit.core.errors import BackendError, ConfigurationError
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from support import django_setup
from support.backends import REST_TOKEN
from support.loop import LoopThread

django_setup.configure()

from django.core.cache.backends.base import CacheKeyWarning  # noqa: E402  (Django configured)

from redkit.web.django import RedisCache  # noqa: E402
from redkit.web.django.cache import aclose_connections  # noqa: E402

TOPOLOGIES = ("standalone", "cluster", "rest")
MODES = [f"{topology}-{mode}" for topology in TOPOLOGIES for mode in ("sync", "async")]


class Case:
    """One server and one mode: ``call`` runs a method, or its ``a...`` twin on the loop."""

    def __init__(self, location: str, topology: str, mode: str, loop: LoopThread, raw: Any):
        self.location = location
        self.topology = topology
        self.mode = mode
        self.loop = loop
        self.raw = raw  # redis-py client of the server behind, to look at what is stored
        self.made: list[RedisCache] = []

    def options(self, **extra: Any) -> dict[str, Any]:
        options = dict(extra)
        if self.topology == "rest":
            options["TOKEN"] = REST_TOKEN
        return options

    def cache(self, **params: Any) -> RedisCache:
        params["OPTIONS"] = self.options(**params.get("OPTIONS", {}))
        made = RedisCache(self.location, params)
        self.made.append(made)
        return made

    def call(self, cache: RedisCache, name: str, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "sync":
            return getattr(cache, name)(*args, **kwargs)

        async def run() -> Any:
            return await getattr(cache, "a" + name)(*args, **kwargs)

        return self.loop.run(run())

    @property
    def nodes(self) -> list[Any]:
        return self.raw if isinstance(self.raw, list) else [self.raw]

    def stored(self, name: str) -> tuple[bytes, Any]:
        """The Redis key of the cache key ``name`` and the node (client) that holds it."""
        found = [
            (key, node) for node in self.nodes for key in node.keys("*")
            if key.endswith(b":" + name.encode())
        ]  # fmt: skip
        assert len(found) == 1, found
        return found[0]

    def foreign_key(self, key: str, value: str) -> Any:
        """Set a key that is not the cache's, on the node that owns it; return that node."""
        for node in self.nodes:
            try:
                node.set(key, value)
            except redis.ResponseError:  # MOVED: another node's slot
                continue
            return node
        raise AssertionError("no node took the key")


@pytest.fixture(params=MODES)
def case(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Case]:
    topology, mode = request.param.split("-")
    raw: Any
    if topology == "cluster":
        cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        location = cluster.url
        raw = cluster.node_clients()
    else:
        server: EmbeddedRedis = request.getfixturevalue("redis_server")
        raw = server.client()
        raw.flushall()
        location = request.getfixturevalue("rest_gateway") if topology == "rest" else server.url
    yield Case(location, topology, mode, loop_thread, raw)
    loop_thread.run(aclose_connections())
    for client in raw if isinstance(raw, list) else [raw]:
        client.close()


# -- the contract ------------------------------------------------------------------------------


def test_set_get_add_delete_and_has_key(case: Case) -> None:
    cache = case.cache()
    assert case.call(cache, "get", "k") is None
    assert case.call(cache, "get", "k", "fallback") == "fallback"
    case.call(cache, "set", "k", {"a": [1, 2]})
    assert case.call(cache, "get", "k") == {"a": [1, 2]}
    assert case.call(cache, "add", "k", "other") is False
    assert case.call(cache, "get", "k") == {"a": [1, 2]}
    assert case.call(cache, "add", "new", "v") is True
    assert case.call(cache, "has_key", "new") is True
    case.call(cache, "set", "none", None)
    assert case.call(cache, "get", "none", "fallback") is None  # a cached None is a hit
    assert case.call(cache, "delete", "k") is True
    assert case.call(cache, "delete", "k") is False
    assert case.call(cache, "has_key", "k") is False


def test_many_at_once(case: Case) -> None:
    cache = case.cache()
    assert case.call(cache, "set_many", {"a": 1, "b": "two", "c": None}) == []
    assert case.call(cache, "get_many", ["a", "b", "c", "missing"]) == {
        "a": 1,
        "b": "two",
        "c": None,
    }
    case.call(cache, "delete_many", ["a", "b"])
    assert case.call(cache, "get_many", ["a", "b", "c"]) == {"c": None}


def test_ints_are_stored_as_digits_and_incr_runs_on_the_server(case: Case) -> None:
    cache = case.cache()
    case.call(cache, "set", "n", 41)
    key, node = case.stored("n")
    assert node.get(key) == b"41"  # no envelope: INCRBY works on it
    assert case.call(cache, "incr", "n") == 42
    assert case.call(cache, "get", "n") == 42
    assert isinstance(case.call(cache, "get", "n"), int)
    assert case.call(cache, "decr", "n", 10) == 32
    with pytest.raises(ValueError, match="not found"):
        case.call(cache, "incr", "missing")
    assert case.call(cache, "has_key", "missing") is False  # incr created nothing
    case.call(cache, "set", "text", "abc")
    with pytest.raises(TypeError):
        case.call(cache, "incr", "text")
    case.call(cache, "set", "flag", True)  # a bool is pickled, not stored as 1
    assert case.call(cache, "get", "flag") is True


def test_incr_keeps_the_timeout(case: Case) -> None:
    cache = case.cache()
    case.call(cache, "set", "n", 1, 100)
    case.call(cache, "incr", "n")
    key, node = case.stored("n")
    assert 90_000 < node.pttl(key) <= 100_000


def test_get_or_set_with_a_value_and_a_loader(case: Case) -> None:
    cache = case.cache()
    assert case.call(cache, "get_or_set", "k", "first") == "first"
    assert case.call(cache, "get_or_set", "k", "second") == "first"
    calls: list[int] = []

    def load() -> str:
        calls.append(1)
        return "loaded"

    assert case.call(cache, "get_or_set", "l", load) == "loaded"
    assert case.call(cache, "get_or_set", "l", load) == "loaded"
    assert calls == [1]
    assert case.call(cache, "get_or_set", "z", load, 0) == "loaded"  # timeout 0: not kept
    assert case.call(cache, "has_key", "z") is False


def test_versions_and_key_prefix(case: Case) -> None:
    cache = case.cache(VERSION=2)
    prefixed = case.cache(KEY_PREFIX="site-b")
    case.call(cache, "set", "k", "v2")
    assert case.call(cache, "get", "k", version=1) is None
    assert case.call(cache, "get", "k") == "v2"
    assert case.call(prefixed, "get", "k", version=2) is None
    assert case.call(cache, "incr_version", "k") == 3
    assert case.call(cache, "get", "k") is None
    assert case.call(cache, "get", "k", version=3) == "v2"
    assert case.call(cache, "decr_version", "k", version=3) == 2
    assert case.call(cache, "get", "k") == "v2"
    with pytest.raises(ValueError, match="not found"):
        case.call(cache, "incr_version", "missing")


def test_key_function_setting() -> None:
    def shout(key: str, prefix: str, version: int) -> str:
        return f"{prefix}|{version}|{key}".upper()

    cache = RedisCache("redis://127.0.0.1:1/0", {"KEY_FUNCTION": shout, "KEY_PREFIX": "p"})
    assert cache.make_key("k") == "P|1|K"
    assert cache.make_key("k", version=7) == "P|7|K"


def test_clear_removes_this_caches_keys_only(case: Case) -> None:
    cache = case.cache()
    prefixed = case.cache(KEY_PREFIX="other-site")
    for i in range(30):
        case.call(cache, "set", f"k{i}", i)
    case.call(prefixed, "set", "kept", "yes")
    node = case.foreign_key("not-djangos", "mine")  # another application's key
    case.call(cache, "clear")
    assert case.call(cache, "get_many", [f"k{i}" for i in range(30)]) == {}
    assert case.call(prefixed, "get", "kept") == "yes"
    assert node.get("not-djangos") == b"mine"


# -- timeouts ----------------------------------------------------------------------------------


def _pttl(case: Case, name: str) -> int:
    key, node = case.stored(name)
    return int(node.pttl(key))


def test_timeouts_none_zero_negative_default_and_fractions(case: Case) -> None:
    cache = case.cache(TIMEOUT=60)
    case.call(cache, "set", "default", "v")
    assert 55_000 < _pttl(case, "default") <= 60_000
    case.call(cache, "set", "forever", "v", None)
    assert _pttl(case, "forever") == -1
    case.call(cache, "set", "zero", "v")
    case.call(cache, "set", "zero", "v", 0)
    assert case.call(cache, "get", "zero") is None
    case.call(cache, "set", "negative", "v")
    case.call(cache, "set", "negative", "v", -5)
    assert case.call(cache, "get", "negative") is None
    assert case.call(cache, "add", "added-zero", "v", 0) is True  # added, and gone at once
    assert case.call(cache, "get", "added-zero") is None
    case.call(cache, "set", "brief", "v", 0.3)
    assert case.call(cache, "get", "brief") == "v"
    time.sleep(0.45)
    assert case.call(cache, "get", "brief") is None


def test_touch(case: Case) -> None:
    cache = case.cache(TIMEOUT=60)
    assert case.call(cache, "touch", "missing") is False
    case.call(cache, "set", "k", "v", 10)
    assert case.call(cache, "touch", "k", 100) is True
    assert 95_000 < _pttl(case, "k") <= 100_000
    assert case.call(cache, "touch", "k", None) is True
    assert _pttl(case, "k") == -1
    assert case.call(cache, "touch", "k", 0) is True  # expire now
    assert case.call(cache, "get", "k") is None


# -- concurrency -------------------------------------------------------------------------------


def test_incr_is_atomic_under_concurrency(case: Case) -> None:
    cache = case.cache()
    case.call(cache, "set", "counter", 0)
    if case.mode == "sync":
        threads = [
            threading.Thread(target=lambda: [cache.incr("counter") for _ in range(25)])
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:

        async def many() -> None:
            await asyncio.gather(*(cache.aincr("counter") for _ in range(200)))

        case.loop.run(many())
    assert case.call(cache, "get", "counter") == 200


def test_get_or_set_loads_once_for_many_callers(case: Case) -> None:
    cache = case.cache()
    calls: list[int] = []

    def slow_load() -> str:
        calls.append(1)
        time.sleep(0.2)
        return "value"

    if case.mode == "sync":
        results: list[Any] = []
        threads = [
            threading.Thread(target=lambda: results.append(cache.get_or_set("hot", slow_load)))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:

        async def aload() -> str:
            calls.append(1)
            await asyncio.sleep(0.2)
            return "value"

        async def many() -> list[Any]:
            return list(await asyncio.gather(*(cache.aget_or_set("hot", aload) for _ in range(8))))

        results = case.loop.run(many())
    assert results == ["value"] * 8
    assert calls == [1]


# -- extras, serializers -----------------------------------------------------------------------


def test_tags_invalidate_every_entry_stamped_with_them(case: Case) -> None:
    cache = case.cache()
    case.call(cache, "set", "a", "1", tags=["user:7"])
    case.call(cache, "set", "b", "2", tags=["user:8"])
    assert case.call(cache, "get_or_set", "c", lambda: "3", tags=["user:7"]) == "3"
    assert case.call(cache, "invalidate_tags", "user:7") == 1
    assert case.call(cache, "get", "a") is None
    assert case.call(cache, "get", "c") is None
    assert case.call(cache, "get", "b") == "2"


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_json_and_msgpack_serializers(case: Case, serializer: str) -> None:
    if serializer == "msgpack":
        pytest.importorskip("msgpack")
    cache = case.cache(OPTIONS={"SERIALIZER": serializer})
    case.call(cache, "set", "k", {"a": [1, "two"]})
    assert case.call(cache, "get", "k") == {"a": [1, "two"]}
    case.call(cache, "set", "n", 5)
    assert case.call(cache, "incr", "n") == 6


def test_pickled_entries_are_signed_and_forgeries_are_misses(case: Case) -> None:
    cache = case.cache()
    case.call(cache, "set", "k", ["a", "b"])
    key, node = case.stored("k")
    stored = node.get(key)
    text = stored.startswith(b"rk64:")  # over REST, entries are stored as text
    entry = bytearray(base64.b64decode(stored[5:]) if text else stored)
    assert pickle.dumps(["a", "b"], protocol=pickle.HIGHEST_PROTOCOL) in entry
    entry[-3] ^= 1  # one bit of the pickle changed: the signature no longer matches
    node.set(key, b"rk64:" + base64.b64encode(entry) if text else bytes(entry))
    assert case.call(cache, "get", "k", "miss") == "miss"


# -- bad input, Redis down ---------------------------------------------------------------------


def test_keys_django_warns_about_still_work(case: Case) -> None:
    cache = case.cache()
    with pytest.warns(CacheKeyWarning):
        case.call(cache, "set", "key with spaces", "v")
    with pytest.warns(CacheKeyWarning):
        assert case.call(cache, "get", "key with spaces") == "v"
    long_key = "x" * 300  # over memcached's 250: a warning, and a digest in Redis
    with pytest.warns(CacheKeyWarning):
        case.call(cache, "set", long_key, "long")
    with pytest.warns(CacheKeyWarning):
        assert case.call(cache, "get", long_key) == "long"


@pytest.mark.parametrize(
    ("location", "options", "message"),
    [
        ("", {}, "LOCATION must be one URL"),
        ("redis://a:6379,redis://b:6379", {}, "LOCATION must be one URL"),
        (["redis://a:6379", "redis://b:6379"], {}, "one LOCATION URL"),
        ("ftp://example.com", {}, "redis://"),
        ("redis://127.0.0.1:1/0", {"MAX_ENTRIES": 10}, "maxmemory-policy"),
        ("redis://127.0.0.1:1/0", {"SERIALISER": "json"}, "unknown OPTIONS SERIALISER"),
        ("redis://127.0.0.1:1/0", {"SERIALIZER": "yaml"}, "serializer must be"),
        ("redis://127.0.0.1:1/0", {"SECRET": "short"}, "SECRET_KEY"),
        ("https://example.upstash.io", {}, "token"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    location: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisCache(location, {"OPTIONS": options})


@pytest.fixture
def dead_location() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_redis_down_reads_miss_writes_drop_deletes_raise(
    dead_location: str, mode: str, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    case = Case(dead_location, "standalone", mode, loop_thread, None)
    cache = case.cache(OPTIONS={"REDIS_TIMEOUT": 0.2})
    try:
        assert case.call(cache, "get", "k", "fallback") == "fallback"
        assert case.call(cache, "set", "k", "v") is None  # dropped, logged
        assert case.call(cache, "add", "k", "v") is False
        assert case.call(cache, "get_many", ["a", "b"]) == {}
        assert case.call(cache, "get_or_set", "k", lambda: "loaded") == "loaded"
        with pytest.raises(BackendError):
            case.call(cache, "delete", "k")
        with pytest.raises(BackendError):
            case.call(cache, "incr", "k")
        assert any("failed" in r.getMessage() for r in caplog.records)
    finally:
        loop_thread.run(aclose_connections())


def test_one_connection_per_configuration(case: Case) -> None:
    first, second = case.cache(), case.cache()
    assert first.redkit is second.redkit
    assert case.cache(KEY_PREFIX="p").redkit is not first.redkit


def test_close_keeps_the_cache_usable(case: Case) -> None:
    """Django calls close() after every request: the connections stay, the next call works."""
    cache = case.cache()
    case.call(cache, "set", "k", "v")
    case.call(cache, "close")
    assert case.call(cache, "get", "k") == "v"


def _sync_or_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn)


def test_async_methods_are_native_coroutines() -> None:
    """Every a... method runs on the AsyncCache, not through sync_to_async."""
    names = ["get", "set", "add", "touch", "delete", "get_many", "set_many", "delete_many"]
    names += ["incr", "get_or_set", "clear", "close", "invalidate_tags"]
    for name in names:
        method = getattr(RedisCache, "a" + name)
        assert _sync_or_async(method), name
        assert method.__qualname__ == f"RedisCache.a{name}", name  # not BaseCache's


def test_a_new_secret_key_makes_old_entries_misses(case: Case) -> None:
    from django.test import override_settings

    case.call(case.cache(), "set", "k", ["pickled"])
    with override_settings(SECRET_KEY="another-secret-key-" + "z" * 30):
        rotated = case.cache()
        assert case.call(rotated, "get", "k", "miss") == "miss"  # signed with the old key
        case.call(rotated, "set", "k", ["new"])
        assert case.call(rotated, "get", "k") == ["new"]
    assert case.call(case.cache(), "get", "k", "miss") == "miss"


@pytest.mark.slow
def test_a_unix_socket_location(loop_thread: LoopThread) -> None:
    with EmbeddedRedis(unix_socket=True) as server:
        assert server.url.startswith("unix://")
        for mode in ("sync", "async"):
            case = Case(server.url, "standalone", mode, loop_thread, None)
            cache = case.cache()
            case.call(cache, "set", "k", {"over": "a socket"})
            assert case.call(cache, "get", "k") == {"over": "a socket"}
        loop_thread.run(aclose_connections())


def test_the_lease_makes_one_load_across_processes(case: Case) -> None:
    """Two backends that share nothing but Redis stand for two processes."""
    if case.mode == "async":
        pytest.skip("the lease is one flow for both facades: the sync case holds it")
    first = case.cache(OPTIONS={"LEASE": "5 s"})
    second = case.cache(OPTIONS={"LEASE": "5 s", "LOCAL_SIZE": 9_999})  # another configuration
    assert first.redkit is not second.redkit
    calls: list[str] = []

    def load(who: str) -> Callable[[], str]:
        def run() -> str:
            calls.append(who)
            time.sleep(0.3)
            return "value"

        return run

    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda c=c, w=w: results.append(c.get_or_set("hot", load(w))))
        for c, w in ((first, "first"), (second, "second"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["value", "value"]
    assert len(calls) == 1  # the other waited for the lease holder's value


def test_a_stale_value_is_served_while_it_is_reloaded(case: Case) -> None:
    cache = case.cache(OPTIONS={"STALE_TTL": "10 s", "EARLY_REFRESH": None})
    loads: list[int] = []

    def load() -> str:
        loads.append(1)
        return f"v{len(loads)}"

    assert case.call(cache, "get_or_set", "k", load, 0.2) == "v1"
    time.sleep(0.3)
    assert case.call(cache, "get_or_set", "k", load, 0.2) == "v1"  # stale, served at once
    deadline = time.monotonic() + 5
    while case.call(cache, "get", "k") != "v2" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert case.call(cache, "get", "k") == "v2"  # reloaded behind the stale answer


def test_an_int_has_no_stale_window(case: Case) -> None:
    """Stored as digits, an int cannot say it is stale: it lives its timeout, then is gone."""
    cache = case.cache(OPTIONS={"STALE_TTL": "10 s"})
    assert case.call(cache, "get_or_set", "n", lambda: 7, 0.2) == 7
    assert 0 < _pttl(case, "n") <= 200
    assert case.call(cache, "incr", "n") == 8  # a loaded int is a counter too
