"""Early refresh (XFetch), stale-while-revalidate and TTL jitter, on real servers."""

from __future__ import annotations

import time
from typing import Any

from redkit.cache import AsyncCache, Cache
from support.backends import BackendCase, Blocking


def make_cache(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    options.setdefault("namespace", "t")
    return Blocking(facade(backend.conn, **options), backend)


class Loader:
    """Counts its loads; each load takes ``seconds`` and returns the load's number."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.loads = 0

    def __call__(self) -> int:
        time.sleep(self.seconds)
        self.loads += 1
        return self.loads


def test_xfetch_reloads_a_value_early_when_its_end_is_near(backend: BackendCase) -> None:
    cache = make_cache(backend, default_ttl="2 s")
    flows = cache.target._flows
    load = Loader(seconds=0.2)  # a slow load: 200 ms, stored with the value
    assert cache.get_or_set("k", load) == 1
    flows._random = lambda: 0.0  # the shortest look-ahead: far from the end, no refresh
    assert cache.get_or_set("k", load) == 1
    flows._random = lambda: 0.9999999  # 200 ms x 16 > 2 s: the end is "near" for this read
    assert cache.get_or_set("k", load) == 2  # this reader reloaded, before the value expired
    assert cache.stats.early_refreshes == 1
    flows._random = lambda: 0.0
    assert cache.get_or_set("k", load) == 2


def test_early_refresh_can_be_turned_off(backend: BackendCase) -> None:
    cache = make_cache(backend, default_ttl="10 s", early_refresh=None)
    cache.target._flows._random = lambda: 0.9999999
    load = Loader(seconds=0.05)
    assert [cache.get_or_set("k", load) for _ in range(3)] == [1, 1, 1]


def test_a_stale_value_is_served_while_it_is_refreshed_in_the_background(
    backend: BackendCase,
) -> None:
    cache = make_cache(backend, default_ttl="300 ms", stale_ttl="30 s", early_refresh=None)
    load = Loader()
    assert cache.get_or_set("k", load) == 1
    assert 29 < cache.ttl("k") <= 30.3  # kept for the stale window too
    time.sleep(0.35)  # no longer fresh
    load.seconds = 0.5  # the refresh takes a while: the caller must not wait for it
    assert cache.get_or_set("k", load) == 1  # served at once, stale
    assert load.loads == 1  # the refresh is still loading: it was not waited for
    assert cache.stats.stale_served == 1
    deadline = time.monotonic() + 5
    while cache.get("k") != 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert cache.get("k") == 2  # the background refresh stored the new value
    assert load.loads == 2


def test_ttl_jitter_spreads_expiries(backend: BackendCase) -> None:
    cache = make_cache(backend, default_ttl="100 s", ttl_jitter=0.5)
    cache.target._flows._random = lambda: 1.0  # the largest cut: half
    cache.set("k", 1)
    assert 49 < cache.ttl("k") <= 50
    cache.target._flows._random = lambda: 0.0
    cache.set("k", 1)
    assert 99 < cache.ttl("k") <= 100
