"""Fleet statistics (``stats=``) on real servers: written, summed over processes, read back.

Counts written equal counts read on every backend (standalone, cluster, REST; sync, async);
several spawned processes add up exactly; a simulated day stays within the layout's bound; a
Redis that stops answering costs the request path nothing and loses no count.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from redkit import (
    AsyncCache,
    AsyncConcurrency,
    AsyncRatelimit,
    AsyncSessionStore,
    AsyncTieredRatelimit,
    Cache,
    Concurrency,
    ConcurrencyLimit,
    FixedWindow,
    Ratelimit,
    SessionStore,
    TieredRatelimit,
)
from redkit.core.clock import VirtualClock
from redkit.core.errors import BackendError, InvalidArgumentError
from redkit.core.fleet import (
    HOUR_TTL_S,
    INDEX_KEY,
    MINUTE_TTL_S,
    Recorder,
    ThreadReporter,
    bucket_key,
)
from redkit.core.flow import run_sync
from redkit.drivers.embedded import EmbeddedRedis
from redkit.stats import aread, read
from support.backends import BackendCase, Blocking
from support.loop import LoopThread
from support.workers.stats import hits_misses_decisions

T0 = 1_700_000_000_000.0


def unique(word: str) -> str:
    return f"{word}-{uuid.uuid4().hex[:8]}"


def made(backend: BackendCase, sync: type, asyncio_: type, *args: Any, **options: Any) -> Any:
    facade = asyncio_ if backend.is_async else sync
    return Blocking(facade(backend.conn, *args, **options), backend)


def read_back(backend: BackendCase, **options: Any) -> Any:
    if backend.is_async:
        return backend.loop.run(aread(backend.conn, **options))
    return read(backend.conn, **options)


def test_counts_written_are_the_counts_read(backend: BackendCase) -> None:
    ns, prefix, cc, sp = unique("c"), unique("rl"), unique("cc"), unique("s")
    cache = made(backend, Cache, AsyncCache, namespace=ns, stats="10 s")
    limiter = backend.ratelimit(FixedWindow(2, "1 h"), prefix=prefix, stats="10 s",
                                ephemeral_cache=False)  # fmt: skip
    leases = made(backend, Concurrency, AsyncConcurrency, ConcurrencyLimit(1), prefix=cc,
                  stats=timedelta(seconds=5))  # fmt: skip
    store = made(backend, SessionStore, AsyncSessionStore, prefix=sp, stats=2)
    for _ in range(3):
        cache.get_or_set("k", lambda: "v")
    assert [limiter.limit("u").success for _ in range(3)] == [True, True, False]
    lease = leases.acquire("u")
    assert not leases.acquire("u")
    leases.release(lease)
    sid = store.create()
    store.get(sid)
    for facade in (cache, limiter, leases, store):
        facade.close()  # sends what is pending
    stats = read_back(backend, since="1 h")
    assert stats.totals("cache", ns) == {
        "misses": 1, "hits": 2, "loads": 1, "leases_won": 1, "load_timed": 1,
        "load_seconds": pytest.approx(stats.totals("cache", ns)["load_seconds"]),
    }  # fmt: skip
    assert 0 <= stats.totals("cache", ns)["load_seconds"] < 5
    assert stats.hit_ratio(ns) == pytest.approx(2 / 3)
    totals = stats.totals("ratelimit", prefix)
    assert (totals["allowed"], totals["blocked"]) == (2, 1)
    assert "decision_timed" not in totals  # no clock read for it: the statistics store loads
    assert stats.totals("concurrency", cc) == {"acquired": 1, "refused": 1, "released": 1}
    assert stats.totals("sessions", sp) == {"created": 1, "loaded": 1}
    assert ns in stats.names("cache")
    assert prefix in stats.names("ratelimit")
    assert stats.processes("cache", ns) == 1
    series = stats.series("cache", ns, "hits")
    assert len(series) == 61
    assert sum(v for _, v in series) == 2
    assert all(t % 60 == 0 for t, _ in series)
    hourly = read_back(backend, feature="cache", name=ns, since="1 d", resolution="hour")
    assert hourly.names("cache") == [ns]
    assert hourly.totals("cache", ns)["hits"] == 2
    assert hourly.names("ratelimit") == []
    assert stats.to_dict()["entries"]  # JSON-able
    if not backend.is_rest:
        ttls = {key: backend.admin.ttl(key) for key in backend.all_keys() if "redkit:stats" in key}
        assert ttls
        assert all(0 < ttl <= HOUR_TTL_S for ttl in ttls.values())


def test_tiers_send_each_tier_under_its_prefix(backend: BackendCase) -> None:
    prefix = unique("tier")
    tiered = made(backend, TieredRatelimit, AsyncTieredRatelimit,
                  {"free": FixedWindow(1, "1 h"), "pro": FixedWindow(9, "1 h")}, prefix=prefix,
                  stats="1 s", ephemeral_cache=False)  # fmt: skip
    tiered.limit("u", tier="free")
    tiered.limit("u", tier="free")
    tiered.limit("u", tier="pro")
    tiered.close()
    stats = read_back(backend, feature="ratelimit")
    assert stats.totals("ratelimit", f"{prefix}:free")["blocked"] == 1
    assert stats.totals("ratelimit", f"{prefix}:pro")["allowed"] == 1


@pytest.mark.parametrize(
    "stats", ["500 ms", 0.5, 0, -3, True, "fast", [10], "10 parsecs", timedelta(0)]
)
@pytest.mark.parametrize(
    "facade",
    [
        lambda conn, stats: Cache(conn, stats=stats),
        lambda conn, stats: AsyncCache(conn, stats=stats),
        lambda conn, stats: Ratelimit(conn, FixedWindow(1, "1 s"), stats=stats),
        lambda conn, stats: AsyncRatelimit(conn, FixedWindow(1, "1 s"), stats=stats),
        lambda conn, stats: TieredRatelimit(conn, {"a": FixedWindow(1, "1 s")}, stats=stats),
        lambda conn, stats: Concurrency(conn, ConcurrencyLimit(1), stats=stats),
        lambda conn, stats: AsyncConcurrency(conn, ConcurrencyLimit(1), stats=stats),
        lambda conn, stats: SessionStore(conn, stats=stats),
        lambda conn, stats: AsyncSessionStore(conn, stats=stats),
    ],
    ids=["cache", "async-cache", "rl", "async-rl", "tiers", "cc", "async-cc", "s", "async-s"],
)
def test_bad_stats_arguments_are_refused(standalone_conn: Any, facade: Any, stats: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="stats must be None"):
        facade(standalone_conn, stats)


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        ({"name": ""}, "name must be"),
        ({"name": 5}, "name must be"),
        ({"since": "2 d"}, 'resolution="hour"'),
        ({"since": "31 d", "resolution": "hour"}, "30 days"),
    ],
)
def test_a_read_that_would_answer_something_else_is_refused(
    arguments: dict[str, Any], says: str
) -> None:
    # An empty or non-str name matched nothing, silently; a range longer than its buckets
    # are kept was cut to a day (minutes) or read empty hours beyond 30 days.
    with pytest.raises(InvalidArgumentError, match=says):
        read("redis://127.0.0.1:1", **arguments)


def test_names_are_checked_and_escaped() -> None:
    with pytest.raises(InvalidArgumentError):
        bucket_key("cache", "", "m", 1)
    assert bucket_key("cache", "a*b{c}", "m", 1) != bucket_key("cache", "a?b{c}", "m", 1)
    assert "*" not in bucket_key("cache", "a*b", "m", 1).split("}")[0]


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_processes_add_up_exactly(topology: str, request: pytest.FixtureRequest) -> None:
    server = request.getfixturevalue("redis_cluster" if topology == "cluster" else "redis_server")
    ns, prefix = unique("fleet"), unique("fleet-rl")
    layout = ["sync", "async", "sync"]
    keys, reads = 5, 8
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(layout))
    processes = [
        context.Process(
            target=hits_misses_decisions,
            args=(server.url, mode, ns, prefix, keys, reads, barrier),
        )
        for mode in layout
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(90)
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in processes] == [0] * len(layout)
    with server.connect() as conn:
        stats = read(conn, since="10 m")
    totals = stats.totals("cache", ns)
    # Every read is a hit or a miss; each key was loaded once per process at most, and once
    # in all (the others found it, or waited on the lease and then found it).
    assert totals["hits"] + totals["misses"] == len(layout) * keys * reads
    assert totals["loads"] == totals["leases_won"]
    assert keys <= totals["loads"] <= keys * len(layout)
    decisions = stats.totals("ratelimit", prefix)
    assert decisions["allowed"] == keys  # one shared limit of `keys`
    assert decisions["allowed"] + decisions["blocked"] == len(layout) * reads
    assert stats.processes("cache", ns) == stats.processes("ratelimit", prefix) == len(layout)


def test_a_day_of_minutes_stays_within_the_bound(redis_server: EmbeddedRedis) -> None:
    with redis_server.client() as admin:
        admin.flushall()
    clock = VirtualClock(T0)
    recorder = Recorder(clock, process="p1")
    names = [("cache", "a"), ("ratelimit", "b")]
    counters = ["hits", "misses", "loads", "errors", "stale_served", "early_refreshes",
                "local_hits", "corrupt", "leases_won", "leases_lost"]  # fmt: skip
    minutes = 24 * 60
    with redis_server.connect() as conn:
        driver = conn.sync_driver()
        for _ in range(minutes):
            for feature, name in names:
                for counter in counters:
                    recorder.count(feature, name, counter, 7)
                recorder.timing(feature, name, "load", 0.25)
            run_sync(recorder.flush_flow(), driver)
            clock.advance(60_000)
        stats = read(conn, since="1 d", clock=clock)
        admin = driver.client
        found = [key.decode() for key in admin.keys("redkit:stats:*")]
        memory = sum(admin.memory_usage(key) or 0 for key in found)
        ttls = {key: admin.ttl(key) for key in found}
    # A day back from the minute after the last flush: the first flush's minute is its start.
    assert stats.totals("cache", "a")["hits"] == 7 * minutes
    assert stats.totals("cache", "a")["load_seconds"] == pytest.approx(0.25 * minutes)
    first = int(T0 // 60_000)
    hours = len({minute // 60 for minute in range(first, first + minutes)})  # 25: T0 is mid-hour
    per_name = 2 * minutes + 2 * hours  # counts and process sets, per minute and per hour
    assert len(found) == len(names) * per_name + 1  # and the index
    assert INDEX_KEY in found
    for key, ttl in ttls.items():
        bound = MINUTE_TTL_S if ":m:" in key or ":pm:" in key else HOUR_TTL_S
        assert 0 < ttl <= bound, key
    # The documented bound (docs/stats.md): under 1 MB per name per day of minutes.
    assert memory < len(names) * 1_000_000, memory
    print(f"fleet layout: {memory} bytes for {len(names)} names over a day")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_stops_answering_loses_no_count(mode: str, loop_thread: LoopThread) -> None:
    name = unique("paused")
    with EmbeddedRedis() as server:
        backend = BackendCase(server.connect(), topology="standalone", mode=mode, loop=loop_thread)
        try:
            limiter = backend.ratelimit(FixedWindow(100, "1 h"), prefix=name, timeout=0.3,
                                        stats="1 s")  # fmt: skip
            assert limiter.limit("u").reason is None
            os.kill(server.pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                answers = [limiter.limit("u").reason for _ in range(3)]
                took = time.monotonic() - started
                limiter.flush()  # fails: kept, logged, not raised
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert answers == ["timeout"] * 3
            assert took < 3 * (0.3 + 1.5)  # each answer within the limiter's own budget
            limiter.close()  # Redis answers again: everything is sent
            if backend.is_async:
                stats = loop_thread.run(aread(backend.conn, name=name))
            else:
                stats = read(backend.conn, name=name)
            totals = stats.totals("ratelimit", name)
            assert (totals["allowed"], totals["timeout"]) == (1, 3)
        finally:
            if backend.is_async:
                loop_thread.run(backend.conn.aclose())
            backend.conn.close()


def test_a_failed_flush_keeps_its_counts_within_a_bound() -> None:
    clock = VirtualClock(T0)
    recorder = Recorder(clock, process="p")
    flow = None
    for _ in range(3):
        recorder.count("cache", "n", "hits", 1)
        flow = recorder.flush_flow()
        next(flow)  # the pipeline is sent; Redis does not answer
        with pytest.raises(BackendError):
            flow.throw(BackendError("down"))
        clock.advance(60_000)
    assert recorder.has_pending()
    assert flow is not None
    assert sum(c["hits"] for m in recorder._pending.values() for c in m.values()) == 3


def test_a_thread_reporter_sends_on_its_own(standalone_conn: Any) -> None:
    name = unique("tick")
    reporter = ThreadReporter(standalone_conn, 1.0, 1.0)
    try:
        reporter.count("cache", name, "hits", 4)
        deadline = time.monotonic() + 10
        sent: dict[str, Any] = {}
        while time.monotonic() < deadline and not sent:
            time.sleep(0.1)
            sent = read(standalone_conn, name=name).totals("cache", name)
        assert sent == {"hits": 4}  # sent by the thread, before any close or flush
    finally:
        reporter.close()


def test_a_url_is_read_on_a_connection_of_its_own_that_is_closed(
    redis_server: EmbeddedRedis, standalone_conn: Any, loop_thread: LoopThread
) -> None:
    ns = unique("url")
    cache = Cache(standalone_conn, namespace=ns, stats="10 s")
    cache.get("absent")
    cache.close()
    by_url = read(redis_server.url, feature="cache", name=ns)
    assert by_url.totals("cache", ns)["misses"] == 1
    assert loop_thread.run(aread(redis_server.url, name=ns)).totals("cache", ns)["misses"] == 1
    gc.collect()  # an unclosed connection would warn here, and warnings fail the tests


def test_an_async_facade_made_outside_a_loop_sends_on_its_own(
    standalone_conn: Any, loop_thread: LoopThread
) -> None:
    ns = unique("tick")
    cache = AsyncCache(standalone_conn, namespace=ns, stats=1)  # made before any loop runs
    try:
        for _ in range(3):
            loop_thread.run(cache.get("absent"))  # the first count starts the task in its loop
        deadline = time.monotonic() + 10
        sent: dict[str, Any] = {}
        while time.monotonic() < deadline and not sent:
            time.sleep(0.1)
            sent = read(standalone_conn, name=ns).totals("cache", ns)
        assert sent == {"misses": 3}  # sent by the task, before any close or flush
    finally:
        loop_thread.run(cache.close())


def test_close_during_a_flush_waits_for_it_and_loses_nothing() -> None:
    """close() while the task's flush is on the wire: the flush ends, no count is dropped."""
    import asyncio

    ns = unique("closing")
    with EmbeddedRedis() as server, server.connect() as conn:

        async def scenario() -> None:
            cache = AsyncCache(conn, namespace=ns, stats=1, timeout=5)
            await cache.get("absent")  # one miss; the reporter's task starts
            os.kill(server.pid, signal.SIGSTOP)  # its flush, due at 1 s, hangs on the server
            try:
                await asyncio.sleep(1.4)
                asyncio.get_running_loop().call_later(0.3, os.kill, server.pid, signal.SIGCONT)
                await cache.close()  # cancels the task while its flush is in flight
            finally:
                os.kill(server.pid, signal.SIGCONT)
            await conn.aclose()

        asyncio.run(scenario())
        assert read(conn, name=ns).totals("cache", ns) == {"misses": 1}


def test_an_async_reporter_starts_again_in_the_next_loop(redis_server: EmbeddedRedis) -> None:
    """A loop that ends (asyncio.run) takes the task with it; the next loop gets a new one."""
    import asyncio

    ns = unique("loops")
    standalone_conn = redis_server.connect()
    cache = AsyncCache(standalone_conn, namespace=ns, stats=1)

    async def miss() -> None:
        await cache.get("absent")
        await standalone_conn.aclose()  # this loop's sockets, before it ends

    async def miss_and_wait() -> dict[str, Any]:
        await cache.get("absent")
        deadline = time.monotonic() + 10
        sent: dict[str, Any] = {}
        while time.monotonic() < deadline and sent.get("misses") != 2:
            await asyncio.sleep(0.1)
            sent = (await aread(standalone_conn, name=ns)).totals("cache", ns)
        await cache.close()
        await standalone_conn.aclose()
        return sent

    try:
        asyncio.run(miss())  # its loop ends before the first flush is due
        assert asyncio.run(miss_and_wait()) == {"misses": 2}  # sent by the second loop's task
    finally:
        standalone_conn.close()
