"""The response cache's lookup, call by call, with scripted replies and no server.

:meth:`ResponseCachePolicy.lookup` asks the cache's facade for ``get_or_set`` or ``set`` and the
view for its entry, as the request's ``Cache-Control`` says; each test is that exchange (see
``flowdrive``). What the cache does with the calls is tested on real servers, through FastAPI,
Starlette and Flask, in tests/integration/test_response_cache.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from redkit import AsyncCache, Cache, Connection
from redkit.web.response_cache import CachedResponse, ResponseCachePolicy, Uncacheable
from support.flowdrive import call, drive

KEY = "response:/items?x"
ENTRY = CachedResponse(200, (("content-type", "text/plain"),), b"hi", '"e"', 1.0)

# Neither facade reaches Redis before its first call, and the lookup makes none itself: this
# connection never opens.
NEVER_OPENED = Connection("redis://127.0.0.1:6379")


def load() -> dict[str, Any]:
    return ENTRY.to_json()


@pytest.fixture(params=["sync", "async"])
def cache(request: pytest.FixtureRequest) -> Cache | AsyncCache:
    return Cache(NEVER_OPENED) if request.param == "sync" else AsyncCache(NEVER_OPENED)


def policy() -> ResponseCachePolicy:
    return ResponseCachePolicy(60, tags=["items"])


def test_a_request_reads_through_get_or_set_with_the_policys_ttl_and_tags(
    cache: Cache | AsyncCache,
) -> None:
    steps = [(call(cache.get_or_set, (KEY, load, 60.0), {"tags": ["items"]}), ENTRY.to_json())]
    assert drive(policy().lookup(cache, KEY, None, load), steps).result == ENTRY


def test_no_cache_skips_the_cached_copy_and_stores_the_fresh_one(
    cache: Cache | AsyncCache,
) -> None:
    steps = [
        (call(load, ()), ENTRY.to_json()),
        (call(cache.set, (KEY, ENTRY.to_json(), 60.0), {"tags": ["items"]}), True),
    ]
    assert drive(policy().lookup(cache, KEY, "no-cache", load), steps).result == ENTRY


def test_no_store_neither_reads_nor_writes(cache: Cache | AsyncCache) -> None:
    steps = [(call(load, ()), ENTRY.to_json())]
    assert drive(policy().lookup(cache, KEY, "max-age=0, no-store", load), steps).result == ENTRY


@pytest.mark.parametrize("cache_control", [None, "no-cache"])
def test_an_uncacheable_response_is_handed_back_as_it_is(
    cache: Cache | AsyncCache, cache_control: str | None
) -> None:
    passed = Uncacheable("the view's response")
    first = cache.get_or_set if cache_control is None else load
    driven = drive(policy().lookup(cache, KEY, cache_control, load), [(call(first), passed)])
    assert driven.result is passed  # and nothing stored after it


def test_a_value_this_policy_did_not_write_answers_without_the_cache(
    cache: Cache | AsyncCache,
) -> None:
    steps = [(call(cache.get_or_set), {"some": "other value"})]
    assert drive(policy().lookup(cache, KEY, None, load), steps).result is None
