"""Tiered limits on real servers: standalone and cluster, sync and async."""

from __future__ import annotations

from typing import Any

import pytest

from redkit import FixedWindow, SlidingWindow, TokenBucket
from redkit.core import keys
from redkit.core.clock import VirtualClock
from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit.tiers import AsyncTieredRatelimit, TieredRatelimit
from support.backends import BackendCase, Blocking

T0 = 1_700_000_000_000
PLANS = {
    "free": SlidingWindow(2, "1 m"),
    "pro": FixedWindow(5, "1 m"),
    "pro:plus": TokenBucket(1, "1 m", 3),  # a name that looks like a key separator
}


def tiered(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncTieredRatelimit if backend.is_async else TieredRatelimit
    options.setdefault("clock", VirtualClock(T0))
    return Blocking(facade(backend.conn, PLANS, **options), backend)


def test_each_tier_applies_its_own_limit_to_the_same_identifier(backend: BackendCase) -> None:
    rl = tiered(backend)
    assert [rl.limit("acme", tier="free").success for _ in range(3)] == [True, True, False]
    assert [rl.limit("acme", tier="pro").success for _ in range(6)] == [True] * 5 + [False]
    assert rl.limit("acme", tier="pro:plus").limit == 3
    assert rl.get_remaining("acme", tier="pro:plus").remaining == 2
    assert rl.get_remaining("acme", tier="free").remaining == 0


def test_tiers_never_share_a_key(backend: BackendCase) -> None:
    rl = tiered(backend, prefix="plans")
    rl.limit("x", tier="pro")
    rl.limit("plus:x", tier="pro")  # would collide with tier "pro:plus" if names were raw
    rl.limit("x", tier="pro:plus")
    names = backend.all_keys()
    assert len(names) == 3
    tag = (lambda i: "{" + keys.escape(i) + "}") if backend.is_cluster else (lambda i: i)
    assert f"plans:pro%3Aplus:{tag('x')}" in names
    assert rl.get_remaining("plus:x", tier="pro").remaining == 4


def test_default_tier_and_reset_across_tiers(backend: BackendCase) -> None:
    rl = tiered(backend, default_tier="free")
    rl.limit("u")
    rl.limit("u", tier="pro")
    rl.limit("u", tier="pro:plus")
    assert rl.get_remaining("u").remaining == 1  # the default tier
    assert rl.reset("u", tier="pro") == 1
    assert rl.reset("u") == 2  # every tier: free's counter and pro:plus's bucket
    assert backend.all_keys() == set()
    assert set(rl.tiers) == set(PLANS)


def test_unknown_or_missing_tiers_say_which_exist(backend: BackendCase) -> None:
    rl = tiered(backend)
    with pytest.raises(InvalidArgumentError, match=r"unknown tier 'gold'.*'free', 'pro'"):
        rl.limit("u", tier="gold")
    with pytest.raises(InvalidArgumentError, match="give a tier"):
        rl.limit("u")
    facade = AsyncTieredRatelimit if backend.is_async else TieredRatelimit
    for bad, message in (({}, "non-empty mapping"), ({"": FixedWindow(1, 1)}, "tier name")):
        with pytest.raises(InvalidArgumentError, match=message):
            facade(backend.conn, bad)
    with pytest.raises(InvalidArgumentError, match="default_tier 'gold'"):
        facade(backend.conn, PLANS, default_tier="gold")


def test_tiers_share_one_connection_even_from_a_url(redis_server: Any) -> None:
    tiered = TieredRatelimit(redis_server.url, PLANS)
    backends = {id(limiter._backend) for limiter in tiered.tiers.values()}
    assert len(backends) == 1
