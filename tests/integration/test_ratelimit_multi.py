"""Several limits in one atomic call, on real servers (standalone and cluster, sync and async)."""

from __future__ import annotations

import pytest

from redkit import GCRA, FixedWindow, SlidingLog, SlidingWindow, TokenBucket, limits_from
from redkit.core import keys
from redkit.core.clock import VirtualClock
from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit import CachedFixedWindow, MultiLimit
from support.backends import BackendCase

T0 = 1_700_000_000_000  # a 10 s window starts here


def base(backend: BackendCase, identifier: str) -> str:
    part = "{" + keys.escape(identifier) + "}" if backend.is_cluster else identifier
    return f"@upstash/ratelimit:{part}"


def test_the_first_limit_refuses_and_nothing_is_charged(backend: BackendCase) -> None:
    rl = backend.ratelimit(
        [FixedWindow(3, "10 s"), FixedWindow(5, "1 h")],
        clock=VirtualClock(T0),
        ephemeral_cache=False,
    )
    results = [rl.limit("u") for _ in range(5)]
    assert [r.success for r in results] == [True, True, True, False, False]
    assert [r.refused_by for r in results] == [None, None, None, 0, 0]
    assert (results[3].limit, results[3].remaining) == (3, 0)
    b = base(backend, "u")
    assert backend.admin.get(f"{b}:limit0:{T0 // 10_000}") == b"3"
    assert backend.admin.get(f"{b}:limit1:{T0 // 3_600_000}") == b"3"  # refusals left no charge


def test_a_later_limit_refuses_and_the_earlier_ones_are_refunded(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(
        [FixedWindow(10, "10 s"), TokenBucket(1, "1 h", 2)], clock=clock, ephemeral_cache=False
    )
    assert [rl.limit("u").success for _ in range(4)] == [True, True, False, False]
    refused = rl.limit("u")
    assert (refused.refused_by, refused.limit, refused.remaining) == (1, 2, 0)
    assert refused.retry_after == 3600.0
    b = base(backend, "u")
    assert backend.admin.get(f"{b}:limit0:{T0 // 10_000}") == b"2"  # only the admitted two
    assert rl.get_remaining("u") == (0, T0 + 3_600_000, 2)  # the tightest limit


def test_every_algorithm_can_join_and_reset_clears_them_all(backend: BackendCase) -> None:
    limiters = [
        FixedWindow(100, "1 m"),
        SlidingWindow(100, "1 m"),
        TokenBucket(1, "1 m", 100),
        GCRA(100, "1 m", 100),
        SlidingLog(3, "1 m"),
    ]
    for clock in (VirtualClock(T0), None):  # the caller's clock, and the server's
        rl = backend.ratelimit(limiters, clock=clock, ephemeral_cache=False, prefix="all")
        assert [rl.limit("u").success for _ in range(4)] == [True, True, True, False]
        assert rl.limit("u").refused_by == 4
        assert len(backend.all_keys()) == 5
        assert rl.reset("u") == 5
        assert backend.all_keys() == set()


def test_refunds_and_peeks_reach_every_limit(backend: BackendCase) -> None:
    rl = backend.ratelimit(
        [FixedWindow(5, "1 m"), TokenBucket(1, "1 h", 3)], clock=VirtualClock(T0)
    )
    for _ in range(3):
        rl.limit("u")
    blocked = rl.limit("u")
    assert (blocked.success, blocked.refused_by) == (False, 1)
    assert rl.limit("u", rate=0).remaining == 0
    assert rl.limit("u", rate=-2).success
    again = rl.limit("u")  # the refund lifted the block and gave tokens back to both limits
    assert (again.success, again.remaining) == (True, 1)


def test_bad_limit_lists_are_refused(backend: BackendCase) -> None:
    for bad in ([], [CachedFixedWindow(1, "1 s")], [MultiLimit.of([FixedWindow(1, 1)])], ["x"]):
        with pytest.raises(InvalidArgumentError):
            backend.ratelimit(bad)


def test_rate_strings_build_the_limits(backend: BackendCase) -> None:
    """``"2/10 seconds; 3/hour"``: the same limits as written out, in one atomic call."""
    clock = VirtualClock(T0)
    rl = backend.ratelimit(
        limits_from("2/10 seconds; 3 per hour"), clock=clock, ephemeral_cache=False
    )
    assert [rl.limit("u").success for _ in range(3)] == [True, True, False]
    clock.advance(10_000)  # a new 10 s window: the hourly limit has one left
    results = [rl.limit("u") for _ in range(2)]
    assert [r.success for r in results] == [True, False]
    assert (results[1].refused_by, results[1].limit) == (1, 3)
    # One rate, parsed into the limiter itself: @upstash/ratelimit's own keys.
    single = backend.ratelimit(FixedWindow.parse("1/minute"), clock=clock, ephemeral_cache=False)
    assert [single.limit("v").success for _ in range(2)] == [True, False]
    assert backend.admin.get(f"{base(backend, 'v')}:{int(clock.now_ms()) // 60_000}") == b"1"
