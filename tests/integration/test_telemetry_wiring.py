"""Every feature reports its events through core/telemetry: counted on real servers.

A recording observer, registered process-wide, collects what each facade reports; each test
uses names of its own, so only its events are looked at. Sync and async, standalone, cluster
and REST (the ``backend`` fixture); a Redis that is down, on a closed port.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from redkit import (
    AsyncCache,
    AsyncConcurrency,
    AsyncSessionStore,
    AsyncTieredRatelimit,
    Cache,
    Concurrency,
    ConcurrencyLimit,
    FixedWindow,
    SessionStore,
    TieredRatelimit,
    connect,
)
from redkit.core.telemetry import add_observer, remove_observer
from redkit.errors import BackendError
from redkit.sessions import SessionConflictError
from support.backends import BackendCase, Blocking
from support.loop import LoopThread
from support.probes import closed_port


class Recording:
    """An observer that keeps every count and timing it is given."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.timings: dict[tuple[str, str, str], list[float]] = {}
        self._lock = threading.Lock()

    def count(self, feature: str, name: str, counter: str, n: int) -> None:
        with self._lock:
            self.counts[feature, name, counter] += n

    def timing(self, feature: str, name: str, what: str, seconds: float) -> None:
        with self._lock:
            self.timings.setdefault((feature, name, what), []).append(seconds)

    def of(self, feature: str, name: str) -> dict[str, int]:
        """The counts of one instance, by counter."""
        return {c: n for (f, m, c), n in self.counts.items() if (f, m) == (feature, name) and n}


@pytest.fixture
def recording() -> Iterator[Recording]:
    observer = Recording()
    add_observer(observer)
    try:
        yield observer
    finally:
        remove_observer(observer)


def unique(word: str) -> str:
    return f"{word}-{uuid.uuid4().hex[:8]}"


def made(backend: BackendCase, sync: type, asyncio_: type, *args: Any, **options: Any) -> Any:
    facade = asyncio_ if backend.is_async else sync
    return Blocking(facade(backend.conn, *args, **options), backend)


def test_a_cache_reports_hits_misses_loads_and_their_time(
    backend: BackendCase, recording: Recording
) -> None:
    name = unique("c")
    cache = made(backend, Cache, AsyncCache, namespace=name)
    try:
        assert cache.get("a") is None
        assert cache.get_or_set("a", lambda: 1) == 1
        assert cache.get_or_set("a", lambda: 2) == 1
        assert cache.get("a") == 1
        assert cache.get_many(["a", "b"]) == {"a": 1}
    finally:
        cache.close()
    expected = {"misses": 3, "hits": 3, "loads": 1, "leases_won": 1}
    assert recording.of("cache", name) == expected
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.loads, stats.leases_won) == (3, 3, 1, 1)
    (took,) = recording.timings["cache", name, "load"]
    assert 0 <= took < 5


def test_a_cache_reports_local_hits(backend: BackendCase, recording: Recording) -> None:
    name = unique("c")
    cache = made(backend, Cache, AsyncCache, namespace=name, local_ttl="1 m")
    try:
        cache.set("k", "v")
        assert cache.get("k") == "v"
    finally:
        cache.close()
    assert recording.of("cache", name) == {"hits": 1, "local_hits": 1}


def test_a_limiter_reports_each_decision_by_outcome(
    backend: BackendCase, recording: Recording
) -> None:
    prefix = unique("rl")
    rl = backend.ratelimit(
        FixedWindow(2, "1 h"), prefix=prefix, ephemeral_cache=True, enable_protection=True
    )
    assert [rl.limit("u").success for _ in range(4)] == [True, True, False, False]
    rl.deny("bad")
    assert rl.limit("bad").reason == "denyList"
    assert [r.success for r in rl.limit_many(["x", "y"])] == [True, True]
    assert not rl.block_until_ready("u", 0.01).success  # one decision, however many tries
    counts = recording.of("ratelimit", prefix)
    # The third decision is Redis's refusal; the ones after it, the ephemeral cache's.
    assert counts == {"allowed": 4, "blocked": 1, "cache_block": 2, "denied": 1}
    timings = recording.timings["ratelimit", prefix, "decision"]
    # limit_many's round trip is timed once; block_until_ready not at all (it waits on purpose).
    assert len(timings) == 6


def test_tiers_report_through_their_limiters(backend: BackendCase, recording: Recording) -> None:
    prefix = unique("tier")
    tiered = made(
        backend, TieredRatelimit, AsyncTieredRatelimit,
        {"free": FixedWindow(1, "1 h"), "pro": FixedWindow(5, "1 h")}, prefix=prefix,
        ephemeral_cache=False,
    )  # fmt: skip
    assert [tiered.limit("u", tier="free").success for _ in range(2)] == [True, False]
    assert tiered.limit("u", tier="pro").success
    assert recording.of("ratelimit", f"{prefix}:free") == {"allowed": 1, "blocked": 1}
    assert recording.of("ratelimit", f"{prefix}:pro") == {"allowed": 1}


def test_concurrency_reports_acquired_refused_released(
    backend: BackendCase, recording: Recording
) -> None:
    prefix = unique("cc")
    limit = ConcurrencyLimit(1, "1 m")
    limiter = made(backend, Concurrency, AsyncConcurrency, limit, prefix=prefix)
    first = limiter.acquire("u")
    assert first
    assert not limiter.acquire("u")
    assert limiter.release(first)
    assert not limiter.release(first)  # not held any more: not a release
    assert recording.of("concurrency", prefix) == {"acquired": 1, "refused": 1, "released": 1}


def test_sessions_report_their_life(backend: BackendCase, recording: Recording) -> None:
    prefix = unique("s")
    store = made(backend, SessionStore, AsyncSessionStore, prefix=prefix)
    sid = store.create({"n": 1}, user_id="ada")
    first, second = store.get(sid), store.get(sid)
    first["n"], second["n"] = 2, 3
    assert store.save(sid, first)
    with pytest.raises(SessionConflictError):
        store.save(sid, second)
    assert store.get("no.such-session") is None  # malformed: not even asked
    new = store.rotate(sid)
    assert new is not None
    assert store.get(sid) is None
    other = store.create(user_id="ada")
    assert store.delete(other)
    store.create(user_id="ada")
    assert store.revoke_user_sessions("ada") == 2
    assert recording.of("sessions", prefix) == {
        "created": 3, "loaded": 2, "missing": 1, "conflicts": 1, "rotated": 1, "deleted": 1,
        "revoked": 2,
    }  # fmt: skip


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_is_down_is_reported(
    mode: str, recording: Recording, loop_thread: LoopThread
) -> None:
    conn = connect(f"redis://127.0.0.1:{closed_port()}")
    backend = BackendCase(conn, topology="standalone", mode=mode, loop=loop_thread)
    name = unique("down")
    try:
        rl = backend.ratelimit(FixedWindow(1, "1 s"), prefix=name, timeout=0.5)
        assert rl.limit("u").reason == "timeout"
        limiter = made(backend, Concurrency, AsyncConcurrency, ConcurrencyLimit(1), prefix=name)
        assert limiter.acquire("u").reason == "timeout"
        store = made(backend, SessionStore, AsyncSessionStore, prefix=name, timeout=0.5)
        with pytest.raises(BackendError):
            store.create()
        cache = made(backend, Cache, AsyncCache, namespace=name, timeout=0.5)
        assert cache.get_or_set("k", lambda: "v") == "v"
        cache.close()
    finally:
        if backend.is_async:
            loop_thread.run(conn.aclose())
        conn.close()
    assert recording.of("ratelimit", name) == {"timeout": 1}
    assert recording.of("concurrency", name) == {"timeout": 1}
    assert recording.of("sessions", name) == {"unavailable": 1}
    assert recording.of("cache", name) == {"errors": 1, "misses": 1, "loads": 1}
