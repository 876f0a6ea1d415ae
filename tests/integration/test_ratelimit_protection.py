"""Deny lists on real servers (standalone and cluster, sync and async)."""

from __future__ import annotations

from typing import Any

import pytest

from redkit import FixedWindow, TokenBucket
from redkit.core.clock import VirtualClock
from redkit.core.errors import InvalidArgumentError
from support.backends import BackendCase

T0 = 1_700_000_000_000


def protected(backend: BackendCase, limiter: Any = None, **options: Any) -> Any:
    options.setdefault("clock", VirtualClock(T0))
    return backend.ratelimit(
        limiter or FixedWindow(5, "1 m"), enable_protection=True, prefix="p", **options
    )


def test_a_denied_value_is_refused_and_consumes_nothing(backend: BackendCase) -> None:
    rl = protected(backend)
    assert rl.deny("203.0.113.9", "BadBot/1.0") == 2
    for kwargs in ({"ip": "203.0.113.9"}, {"user_agent": "BadBot/1.0"}):
        result = rl.limit("user:1", **kwargs)
        assert (result.success, result.reason, result.remaining) == (False, "denyList", 0)
        assert result.denied_value == next(iter(kwargs.values()))
    assert backend.all_keys() == {"p:denyList:all"}  # no counter was touched
    ok = rl.limit("user:1", ip="198.51.100.1", user_agent="Mozilla/5.0", country="NZ")
    assert (ok.success, ok.remaining) == (True, 4)
    rl.deny("NZ")
    assert rl.limit("user:2", country="NZ").denied_value == "NZ"
    assert rl.denied() == {"203.0.113.9", "BadBot/1.0", "NZ"}


def test_identifiers_can_be_denied_and_allowed_again(backend: BackendCase) -> None:
    rl = protected(backend)
    rl.deny("user:evil")
    assert rl.limit("user:evil").reason == "denyList"
    results = rl.limit_many(["user:ok", "user:evil"])
    assert [(r.success, r.reason) for r in results] == [(True, None), (False, "denyList")]
    assert rl.allow("user:evil", "never-there") == 1
    assert rl.limit("user:evil").success  # the local memory of the denial went too


def test_a_denied_value_is_then_answered_from_memory(backend: BackendCase) -> None:
    rl = protected(backend)
    rl.deny("203.0.113.9")
    assert rl.limit("u", ip="203.0.113.9").reason == "denyList"
    backend.reset_command_stats()
    for _ in range(20):
        assert rl.limit("u", ip="203.0.113.9").reason == "denyList"
    assert backend.command_calls("evalsha", "eval", "smismember", "smembers") == 0


def test_the_deny_list_is_upstashs_and_shared(backend: BackendCase) -> None:
    rl = protected(backend, TokenBucket(1, "1 m", 3), dynamic_limits=True)
    backend.admin.sadd("p:denyList:all", "10.0.0.1")  # written by @upstash/ratelimit, say
    assert rl.limit("u", ip="10.0.0.1").reason == "denyList"
    rl.set_identifier_limit("u", 1)  # both guards in one decision
    assert [rl.limit("u").success for _ in range(2)] == [True, False]


def test_several_limits_are_protected_too(backend: BackendCase) -> None:
    rl = protected(backend, [FixedWindow(5, "1 m"), FixedWindow(50, "1 h")])
    rl.deny("u-bad")
    assert rl.limit("u-bad").reason == "denyList"
    assert rl.limit("u-good").success


def test_bad_deny_list_input(backend: BackendCase) -> None:
    rl = protected(backend)
    for bad in ((), ("",), (5,), (None,)):
        with pytest.raises(InvalidArgumentError):
            rl.deny(*bad)
    with pytest.raises(InvalidArgumentError, match="ip must be a str"):
        rl.limit("u", ip=12345)
