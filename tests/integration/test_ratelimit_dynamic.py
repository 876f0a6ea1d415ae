"""Dynamic limits on real servers (standalone and cluster, sync and async)."""

from __future__ import annotations

from typing import Any

import pytest

from redkit import GCRA, FixedWindow, SlidingLog, SlidingWindow, TokenBucket
from redkit.core import keys
from redkit.core.clock import VirtualClock
from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit import CachedFixedWindow, Limiter
from support.backends import BackendCase

T0 = 1_700_000_000_000


def dynamic(backend: BackendCase, limiter: Limiter, **options: Any) -> Any:
    return backend.ratelimit(
        limiter, dynamic_limits=True, clock=VirtualClock(T0), ephemeral_cache=False, **options
    )


def fresh_global(rl: Any) -> None:
    # On a cluster a process re-reads the global override at most once a second: look now.
    rl.target._flows._global = None


@pytest.mark.parametrize(
    "limiter",
    [FixedWindow(10, "1 m"), SlidingWindow(10, "1 m"), TokenBucket(1, "1 h", 10),
     GCRA(10, "1 h", 10), SlidingLog(10, "1 m")],
    ids=["fixed", "sliding", "token", "gcra", "log"],
)  # fmt: skip
def test_overrides_replace_the_limit_in_the_next_decision(
    backend: BackendCase, limiter: Limiter
) -> None:
    rl = dynamic(backend, limiter)
    assert rl.limit("a").limit == 10
    rl.set_dynamic_limit(3)
    fresh_global(rl)
    assert rl.get_dynamic_limit() == 3
    assert [rl.limit("b").success for _ in range(4)] == [True, True, True, False]
    assert rl.limit("b").limit == 3
    rl.set_identifier_limit("c", 5)  # c's own plan beats the global override
    assert rl.get_identifier_limit("c") == 5
    assert [rl.limit("c").success for _ in range(6)] == [True] * 5 + [False]
    assert rl.get_remaining("c").limit == 5
    rl.set_identifier_limit("c", None)
    rl.set_dynamic_limit(None)
    fresh_global(rl)
    assert (rl.get_dynamic_limit(), rl.get_identifier_limit("c")) == (None, None)
    assert rl.limit("a").limit == 10


def test_the_global_override_is_where_upstash_keeps_it(backend: BackendCase) -> None:
    rl = dynamic(backend, FixedWindow(10, "1 m"), prefix="shared")
    backend.admin.set("shared:dynamic:global", 2)  # set by @upstash/ratelimit, say
    fresh_global(rl)
    assert [rl.limit("u").success for _ in range(3)] == [True, True, False]
    rl.set_identifier_limit("u", 4)
    part = "{" + keys.escape("u") + "}" if backend.is_cluster else "u"
    assert backend.admin.get(f"shared:{part}:dynamic") == b"4"


def test_dynamic_limits_must_be_turned_on_and_be_valid(backend: BackendCase) -> None:
    plain = backend.ratelimit(FixedWindow(10, "1 m"))
    with pytest.raises(InvalidArgumentError, match="dynamic_limits=True"):
        plain.set_dynamic_limit(5)
    with pytest.raises(InvalidArgumentError, match="dynamic_limits=True"):
        plain.get_identifier_limit("u")
    rl = dynamic(backend, FixedWindow(10, "1 m"))
    for bad in (0, -1, 1.5, "5", True):
        with pytest.raises(InvalidArgumentError, match="a dynamic limit"):
            rl.set_dynamic_limit(bad)
    log = dynamic(backend, SlidingLog(10, "1 m"))
    with pytest.raises(InvalidArgumentError, match="at most"):
        log.set_identifier_limit("u", 10**9)
    for unsupported in (CachedFixedWindow(1, "1 s"), [FixedWindow(1, 1), FixedWindow(2, 2)]):
        with pytest.raises(InvalidArgumentError, match="dynamic limits apply"):
            backend.ratelimit(unsupported, dynamic_limits=True)


def test_limit_many_honours_overrides(backend: BackendCase) -> None:
    rl = dynamic(backend, FixedWindow(10, "1 m"))
    rl.set_identifier_limit("vip", 1)
    results = rl.limit_many(["vip", "vip", "other"])
    assert [r.success for r in results] == [True, False, True]
    assert [r.limit for r in results] == [1, 1, 10]


def test_a_new_limit_lifts_blocks_made_under_the_old_one(backend: BackendCase) -> None:
    rl = backend.ratelimit(FixedWindow(1, "1 m"), dynamic_limits=True, clock=VirtualClock(T0))
    rl.limit("u")
    assert not rl.limit("u").success
    assert rl.limit("u").reason == "cacheBlock"
    rl.set_identifier_limit("u", 3)
    assert rl.limit("u").success  # asked Redis again, under the new limit


def test_overrides_written_as_other_numbers_are_read(backend: BackendCase) -> None:
    rl = backend.ratelimit(FixedWindow(10, "1 m"), dynamic_limits=True, prefix="n")
    backend.admin.set("n:dynamic:global", "2.5")  # Upstash's SDK takes any number
    assert rl.get_dynamic_limit() == 2
    backend.admin.set("n:dynamic:global", "many")
    assert rl.get_dynamic_limit() is None
    slow = backend.ratelimit(GCRA(1, "1 d", 1), dynamic_limits=True)
    with pytest.raises(InvalidArgumentError, match="10 years"):
        slow.set_dynamic_limit(10_000)
