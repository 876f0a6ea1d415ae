"""``Cache.add`` (only when missing) and ``Cache.incr`` (on the server, ints stored as digits
with ``raw_ints``), on every backend: standalone, cluster and REST, sync and async."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from redkit.cache import MISSING, AsyncCache, Cache
from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import command
from support.backends import BackendCase, Blocking


def make_cache(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    options.setdefault("namespace", "t")
    return Blocking(facade(backend.conn, **options), backend)


def test_add_stores_only_when_the_key_holds_nothing(backend: BackendCase) -> None:
    cache = make_cache(backend)
    assert cache.add("k", {"first": 1}, ttl=60) is True
    assert cache.add("k", {"second": 2}, ttl=60) is False
    assert cache.get("k") == {"first": 1}
    assert 50 < cache.ttl("k") <= 60
    assert cache.add("forever", "v", ttl=None) is True  # the default_ttl (300 s) applies
    assert 290 < cache.ttl("forever") <= 300


def test_one_add_of_many_at_once_wins(backend: BackendCase) -> None:
    cache = make_cache(backend)
    if backend.is_async:
        inner = cache.target  # the AsyncCache under the Blocking wrapper

        async def many() -> list[bool]:
            return list(await asyncio.gather(*(inner.add("k", i) for i in range(20))))

        won = backend.loop.run(many())
    else:
        won = []

        def add(value: int) -> None:
            won.append(cache.add("k", value))

        threads = [threading.Thread(target=add, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert won.count(True) == 1


def test_raw_ints_are_digits_in_redis_and_incr_adds_on_the_server(backend: BackendCase) -> None:
    cache = make_cache(backend, raw_ints=True)
    cache.set("n", 41)
    raw = backend.execute(command("GET", "t:g0:n"))
    assert bytes(raw) == b"41"
    assert cache.incr("n") == 42
    assert cache.incr("n", -50) == -8
    assert cache.get("n") == -8
    assert cache.incr("missing") is None
    assert cache.get("missing", MISSING) is MISSING  # incr made nothing
    cache.set("flag", True)  # a bool keeps its envelope
    assert cache.get("flag") is True
    cache.set("tagged", 5, tags=["t"])  # a tagged int too: it is no counter
    assert cache.get("tagged") == 5
    with pytest.raises(InvalidArgumentError, match="no integer"):
        cache.incr("tagged")
    with pytest.raises(InvalidArgumentError, match="delta must be an int"):
        cache.incr("n", 1.5)


def test_without_raw_ints_an_int_is_an_envelope_and_incr_refuses_it(backend: BackendCase) -> None:
    cache = make_cache(backend)
    cache.set("n", 1)
    assert bytes(backend.execute(command("GET", "t:g0:n")))[:1] in (b"\xff", b"r")
    with pytest.raises(InvalidArgumentError, match="no integer"):
        cache.incr("n")


def test_digits_another_client_wrote_are_read_as_an_int(backend: BackendCase) -> None:
    cache = make_cache(backend, raw_ints=True)
    backend.execute(command("SET", "t:g0:counter", "17"))
    assert cache.get("counter") == 17
    backend.execute(command("SET", "t:g0:odd", "12abc"))  # starts as a number, is none
    assert cache.get("odd", MISSING) is MISSING
    assert cache.stats.corrupt == 1
