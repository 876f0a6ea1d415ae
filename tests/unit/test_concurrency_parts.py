"""Concurrency-limiter configuration, leases and facade parity (no server)."""

from __future__ import annotations

import pickle
from datetime import timedelta
from typing import Any

import pytest

from redkit.core.errors import InvalidArgumentError, InvalidKeyError
from redkit.ratelimit.concurrency import (
    AcquireContext,
    AsyncConcurrency,
    Concurrency,
    ConcurrencyLimit,
    Lease,
)
from redkit.ratelimit.limiters import MAX_TOKENS

URL = "redis://127.0.0.1:1"  # never contacted: configuration errors come first


def test_a_limit_takes_upstash_durations_and_is_a_value() -> None:
    assert ConcurrencyLimit(5).lease_ms == 30_000
    assert ConcurrencyLimit(5, "500 ms").lease_ms == 500
    assert ConcurrencyLimit(5, timedelta(minutes=2)).lease_ms == 120_000
    assert ConcurrencyLimit(5, 1.5).lease_ms == 1500
    assert ConcurrencyLimit(5, "10 s") == ConcurrencyLimit(5, "10 s")
    assert repr(ConcurrencyLimit(5)) == "ConcurrencyLimit(max_in_flight=5, lease='30 s')"
    with pytest.raises(AttributeError):
        ConcurrencyLimit(5).max_in_flight = 6  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0,), "max_in_flight must be between 1"),
        ((-1,), "max_in_flight must be between 1"),
        ((MAX_TOKENS + 1,), "max_in_flight must be between 1"),
        ((1.5,), "max_in_flight must be an int"),
        (("3",), "max_in_flight must be an int"),
        ((True,), "max_in_flight must be an int"),
        ((None,), "max_in_flight must be an int"),
        ((3, "0 s"), "lease must be at least 1 ms"),
        ((3, -1), "lease must be at least 1 ms"),
        ((3, "30 seconds"), "lease must look like"),
        ((3, 10**10), "lease must be at most 10 years"),
        ((3, float("nan")), "lease must be a finite number"),
        ((3, None), "lease must be a string"),
    ],
)
def test_bad_limits_say_what_is_wrong(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message) as raised:
        ConcurrencyLimit(*args)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, TypeError)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"prefix": ""}, InvalidKeyError, "must not be empty"),
        ({"prefix": "jobs:*"}, InvalidKeyError, "must not contain"),
        ({"prefix": "jobs{x}"}, InvalidKeyError, "must not contain"),
        ({"on_timeout": "maybe"}, ValueError, "on_timeout must be"),
        ({"timeout": -1}, ValueError, "timeout must be"),
        ({"timeout": "5"}, ValueError, "timeout must be"),
        ({"clock": "sundial"}, ValueError, "clock must be"),
    ],
)
def test_bad_facade_options_say_what_is_wrong(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    for facade in (Concurrency, AsyncConcurrency):
        with pytest.raises(error, match=message):
            facade(URL, ConcurrencyLimit(1), **options)


def test_a_limit_must_be_a_concurrency_limit() -> None:
    for facade in (Concurrency, AsyncConcurrency):
        with pytest.raises(TypeError, match="limit must be a ConcurrencyLimit"):
            facade(URL, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a redkit Connection"):
        Concurrency(42, ConcurrencyLimit(1))


def test_a_lease_is_truthy_when_acquired_frozen_and_compared_as_a_value() -> None:
    acquired = Lease(True, 3, 2, "job", "ab" * 16, 1_700_000_030_000)
    refused = Lease(False, 3, 0, "job", retry_after=1.5)
    assert acquired
    assert not refused
    assert (acquired.retry_after, acquired.reason) == (0.0, None)
    assert (refused.token, refused.expires_at) == ("", 0)
    with pytest.raises(AttributeError):
        acquired.success = False  # type: ignore[misc]
    # The facade's release is attached for the context manager, but is not part of the value.
    bound = Lease(True, 3, 2, "job", "ab" * 16, 1_700_000_030_000, _release=lambda _: True)
    assert bound == acquired
    assert hash(bound) == hash(acquired)
    assert "_release" not in repr(bound)
    # It travels to another process as its value, without the facade it was bound to.
    assert pickle.loads(pickle.dumps(bound)) == acquired
    assert pickle.loads(pickle.dumps(bound))._release is None
    # A lease not bound to a blocking facade (an async one) refuses a plain `with`.
    with pytest.raises(TypeError, match="async with"), acquired:
        pass


def test_the_context_manager_releases_only_a_slot_it_holds() -> None:
    released: list[Lease] = []

    def release(lease: Lease) -> bool:
        released.append(lease)
        return True

    held = Lease(True, 3, 2, "job", "ab" * 16, 1, _release=release)
    refused = Lease(False, 3, 0, "job", _release=release)
    allowed_on_timeout = Lease(True, 3, 0, "job", reason="timeout", _release=release)
    for lease in (held, refused, allowed_on_timeout):
        with lease as entered:
            assert entered is lease
    assert released == [held]


def test_public_names_are_documented() -> None:
    for obj in (ConcurrencyLimit, Lease, Concurrency, AsyncConcurrency, AcquireContext):
        assert obj.__doc__
        for name, member in vars(obj).items():
            if not name.startswith("_") and callable(member):
                assert member.__doc__, f"{obj.__name__}.{name}"
