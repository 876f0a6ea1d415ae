"""Cache entries, serializers, single flight and the facades' shape (no server)."""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any

import pytest

from redkit.cache import AsyncCache, Cache
from redkit.cache.envelope import CorruptEntry, pack, unpack
from redkit.cache.serializers import JsonSerializer, MsgpackSerializer, PickleSerializer
from redkit.cache.singleflight import AsyncSingleFlight, SingleFlight
from redkit.core.errors import InvalidArgumentError

URL = "redis://127.0.0.1:1"  # never contacted


def test_an_entry_round_trips_with_its_metadata() -> None:
    data = pack(
        JsonSerializer(), "k", {"a": [1, None]}, created_ms=5, fresh_until_ms=6, load_ms=7,
        expires_ms=8,
    )  # fmt: skip
    entry = unpack(JsonSerializer(), "k", data)
    assert entry == ({"a": [1, None]}, 5, 6, 7, 8, {}, len(data))  # size: the bytes read
    tagged = pack(JsonSerializer(), "k", 1, created_ms=0, tags={"user:1": "ab12"})
    assert unpack(JsonSerializer(), "k", tagged).tags == {"user:1": "ab12"}
    with pytest.raises(CorruptEntry, match="cut short"):
        unpack(JsonSerializer(), "k", tagged[:-10])
    assert data.startswith(b"\xffrk")  # never valid UTF-8: no plain string passes for one


@pytest.mark.parametrize(
    "data", [b"", b"{}", b"\xffrk", b"\xffrk\x02" + bytes(40), b"plain text", bytes(range(256))]
)
def test_what_is_not_an_entry_is_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptEntry):
        unpack(JsonSerializer(), "k", data)


def test_signed_entries_check_key_and_secret() -> None:
    secret = b"s" * 16
    data = pack(PickleSerializer(), "k", {1, 2}, created_ms=0, secret=secret)
    assert unpack(PickleSerializer(), "k", data, secret=secret).value == {1, 2}
    for key, other_secret in (("other", secret), ("k", b"t" * 16), ("k", None)):
        with pytest.raises(CorruptEntry):
            unpack(PickleSerializer(), key, data, secret=other_secret)
    tampered = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(CorruptEntry, match="signature"):
        unpack(PickleSerializer(), "k", tampered, secret=secret)
    with pytest.raises(ValueError, match="needs a secret"):
        pack(PickleSerializer(), "k", 1, created_ms=0)


def test_json_without_orjson_and_msgpack() -> None:
    plain = JsonSerializer()
    plain._orjson = None  # the standard library path
    assert plain.loads(plain.dumps({"ü": [1, 2.5]})) == {"ü": [1, 2.5]}
    with pytest.raises(InvalidArgumentError, match="as JSON"):
        plain.dumps(float("nan"))
    packer = MsgpackSerializer()
    assert packer.loads(packer.dumps([b"\x00", "x"])) == [b"\x00", "x"]
    with pytest.raises(ValueError, match="malformed msgpack"):
        packer.loads(b"\xc1")
    with pytest.raises(InvalidArgumentError, match="as msgpack"):
        packer.dumps(object())


def test_single_flight_shares_one_call_among_threads() -> None:
    flight = SingleFlight()
    calls: list[int] = []
    gate = threading.Event()

    def work() -> int:
        calls.append(1)
        gate.wait(5)
        return 42

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(flight.run("k", work))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.1)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert (results, len(calls)) == ([42] * 8, 1)

    def boom() -> int:
        raise KeyError("no")

    with pytest.raises(KeyError):
        flight.run("k", boom)
    assert flight.run("k", lambda: 7) == 7  # a finished call leaves nothing behind


def test_single_flight_shares_one_call_among_tasks() -> None:
    flight = AsyncSingleFlight()
    calls: list[int] = []

    async def work() -> int:
        calls.append(1)
        await asyncio.sleep(0.05)
        return 42

    async def failing() -> int:
        await asyncio.sleep(0.01)
        raise KeyError("no")

    async def main() -> None:
        assert await asyncio.gather(*(flight.run("k", work) for _ in range(10))) == [42] * 10
        outcomes = await asyncio.gather(
            *(flight.run("e", failing) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(outcome, KeyError) for outcome in outcomes)

    asyncio.run(main())
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"serializer": "yaml"}, "serializer must be"),
        ({"serializer": "pickle"}, "give the cache a secret"),
        ({"default_ttl": "forever"}, "default_ttl must look like"),
        ({"negative_ttl": 0}, "negative_ttl must be at least"),
        ({"timeout": 0}, "timeout must be"),
        ({"namespace": "a*"}, "must not contain"),
    ],
)
def test_bad_cache_options_say_what_is_wrong(options: dict[str, Any], message: str) -> None:
    for facade in (Cache, AsyncCache):
        with pytest.raises(ValueError, match=message):
            facade(URL, **options)


def test_when_the_leader_is_cancelled_a_waiter_takes_over() -> None:
    flight = AsyncSingleFlight()
    started = asyncio.Event()

    async def slow() -> int:
        started.set()
        await asyncio.sleep(5)
        return 1

    async def quick() -> int:
        return 2

    async def main() -> None:
        leader = asyncio.create_task(flight.run("k", slow))
        await started.wait()
        follower = asyncio.create_task(flight.run("k", quick))
        await asyncio.sleep(0)
        leader.cancel()
        assert await follower == 2  # not cancelled along with the leader: it loaded itself
        assert leader.cancelled()

    asyncio.run(main())


def test_hash_query_is_stable_and_canonical() -> None:
    from redkit import hash_query

    query = {"where": {"age": {"gt": 30}, "city": "Oslo"}, "tags": {"b", "a"}, "limit": 10}
    same = {"limit": 10, "tags": {"a", "b"}, "where": {"city": "Oslo", "age": {"gt": 30}}}
    assert hash_query(query) == hash_query(same)
    assert hash_query(query) != hash_query({**query, "limit": 11})
    # The same in every process and Python version: a fixed digest of the canonical JSON.
    assert hash_query({"a": 1}) == "015abd7f5cc57a2dd94b7590f04ad808"
    with pytest.raises(TypeError, match="cannot hash"):
        hash_query({"when": object()})


def test_decorated_keys_are_the_same_by_position_by_name_and_with_defaults() -> None:
    from redkit.cache.callkeys import CallKey

    def fetch(uid: int, page: int = 1, fmt: str = "json") -> None: ...

    for template in ["user:{uid}:{page:>3}:{fmt!r}", "a{{b}}{uid}", "plain", "{fmt}.{uid}"]:
        maker = CallKey(fetch, template)
        expected = template.format(uid=7, page=1, fmt="json")
        assert maker((7, 1, "json"), {}) == expected  # by index
        assert maker((7,), {}) == expected  # defaults applied, by name
        assert maker((), {"fmt": "json", "uid": 7}) == expected
    # Fields that are more than a parameter name keep the by-name path, and fail as it does.
    assert CallKey(fetch, "{uid.real}")((7, 1, "x"), {}) == "7"
    with pytest.raises(KeyError):
        CallKey(fetch, "{nope}")((7, 1, "x"), {})
    with pytest.raises(InvalidArgumentError):
        CallKey(fetch, "{uid}")((1, 2, 3, 4), {})


def test_keyword_calls_bind_as_signature_bind_does() -> None:
    from redkit.cache.callkeys import CallKey

    def fetch(uid: int, page: int = 1, fmt: str = "json") -> None: ...

    maker = CallKey(fetch, None)  # the default key: the name and a hash of every argument
    signature = inspect.signature(fetch)
    calls: list[tuple[tuple[int, ...], dict[str, object]]] = [
        ((7,), {"fmt": "xml"}),
        ((7, 2), {"fmt": "xml"}),
        ((), {"page": 3, "uid": 7}),
        ((7,), {}),
    ]
    for args, kwargs in calls:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        assert maker._arguments(args, kwargs) == dict(bound.arguments)
    assert maker((7,), {"page": 1}) == maker((7, 1, "json"), {}) == maker((), {"uid": 7})
    # What bind refuses is refused, with bind's words.
    for args, kwargs, words in [
        ((7,), {"uid": 8}, "multiple values"),
        ((7,), {"color": "red"}, "unexpected keyword"),
        ((), {"page": 2}, "missing a required argument"),
    ]:
        with pytest.raises(InvalidArgumentError, match=words):
            maker(args, kwargs)


def test_the_text_form_of_an_entry_round_trips_and_refuses_garbage() -> None:
    from redkit.cache.envelope import entry_from_text, entry_to_text

    packed = pack(JsonSerializer(), "k", {"a": 1}, created_ms=1, fresh_until_ms=0, load_ms=0,
                  expires_ms=0, tags=None, secret=None)  # fmt: skip
    text = entry_to_text(packed)
    text.decode("ascii")  # nothing but ASCII: it survives a JSON string
    assert entry_from_text(text) == packed
    assert entry_from_text(packed) == packed  # the binary form passes through
    with pytest.raises(CorruptEntry):
        entry_from_text(b"rk64:%%%")
