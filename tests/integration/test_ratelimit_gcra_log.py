"""GCRA and the sliding log on real servers (docs/gcra-and-sliding-log.md): standalone and
cluster, sync and async."""

from __future__ import annotations

from typing import Any

import pytest

from redkit.core import keys
from redkit.core.clock import VirtualClock
from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit.limiters import GCRA, MAX_LOG_TOKENS, SlidingLog
from support.backends import BackendCase

T0 = 1_700_000_000_000
MINUTE = 60_000


def base(backend: BackendCase, identifier: str, prefix: str = "@upstash/ratelimit") -> str:
    """The identifier's base key (standalone verbatim, cluster tagged)."""
    if backend.is_cluster:
        return f"{prefix}:{{{keys.escape(identifier)}}}"
    return f"{prefix}:{identifier}"


def snapshot(backend: BackendCase) -> dict[str, Any]:
    """Every key with its type, value and whether it expires."""
    admin = backend.admin
    found: dict[str, Any] = {}
    for key in backend.all_keys():
        kind = admin.type(key).decode()
        if kind == "zset":
            value: Any = admin.zrange(key, 0, -1, withscores=True)
        else:
            value = admin.get(key)
        found[key] = (kind, value, admin.pttl(key) > 0)
    return found


# -- GCRA ----------------------------------------------------------------------------------


def test_gcra_admits_the_burst_then_one_per_emission_interval(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(GCRA(10, "1 m", 3), clock=clock, ephemeral_cache=False)  # T = 6 s
    burst = [rl.limit("u") for _ in range(4)]
    assert [r.success for r in burst] == [True, True, True, False]
    assert [r.remaining for r in burst] == [2, 1, 0, 0]
    assert [r.reset for r in burst] == [T0 + 6_000, T0 + 12_000, T0 + 18_000, T0 + 18_000]
    assert all(r.limit == 3 for r in burst)
    assert burst[3].retry_after == 6.0  # the next cell conforms one T after the first
    clock.advance(5_999)
    assert not rl.limit("u").success
    clock.advance(1)
    for _ in range(5):  # the steady rate: one every T, and never two
        assert rl.limit("u").success
        refused = rl.limit("u")
        assert (refused.success, refused.retry_after) == (False, 6.0)
        clock.advance(6_000)
    clock.advance(3 * 6_000)  # idle for the whole burst: full again
    assert rl.get_remaining("u") == (3, T0 + 54_000, 3)  # full: reset is now
    assert rl.limit("u", rate=3).success
    assert not rl.limit("u", rate=4).success  # more than the burst: never
    big = rl.limit("u", rate=4)
    assert big.retry_after == (big.reset - int(clock.now_ms())) / 1000


def test_gcra_retry_after_is_exact_to_the_microsecond(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(GCRA(7, "1 m", 2), clock=clock)  # T = ceil(60 s / 7) = 8_571_429 µs
    assert rl.limit("u").success
    assert rl.limit("u").success
    clock.advance(1_000)
    refused = rl.limit("u")
    assert refused.retry_after == (8_571_429 - 1_000_000) / 1_000_000
    assert refused.reset == -(-(T0 * 1000 + 2 * 8_571_429) // 1000)
    assert rl.limit("u").reason == "cacheBlock"
    clock.advance(7_571)  # 429 µs short of the wait: still blocked
    assert rl.limit("u").reason == "cacheBlock"
    clock.advance(1)
    assert rl.limit("u").success


def test_gcra_refusals_write_nothing(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(GCRA(1, "1 m", 2), clock=clock, ephemeral_cache=False)
    assert rl.limit("u", rate=2).success
    before = snapshot(backend)
    for rate in (1, 2, 3):
        assert not rl.limit("u", rate=rate).success
    assert rl.limit("u", rate=0).success  # a peek
    assert snapshot(backend) == before


def test_gcra_refunds_move_the_tat_back_but_never_before_now(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(GCRA(1, "1 m", 3), clock=clock)
    key = f"{base(backend, 'u')}:gcra"
    assert rl.limit("u", rate=3).success
    assert not rl.limit("u").success  # blocked in the ephemeral cache from now on
    refund = rl.limit("u", rate=-1)
    assert (refund.success, refund.remaining, refund.reset) == (True, 1, T0 + 120_000)
    assert backend.admin.get(key) == str((T0 + 120_000) * 1000).encode()
    assert rl.limit("u").success  # the refund lifted the block
    clock.advance(30_000)
    refund = rl.limit("u", rate=-100)  # far more than was taken: back to full, no more
    assert (refund.success, refund.remaining) == (True, 3)
    assert backend.all_keys() == set()  # a full bucket is no key at all
    assert rl.limit("u", rate=-1).remaining == 3  # a refund on a full bucket writes nothing
    assert backend.all_keys() == set()


def test_gcra_key_layout(backend: BackendCase) -> None:
    clock = VirtualClock(T0 + 2_500)
    rl = backend.ratelimit(GCRA(3, "10 s", 5), clock=clock)  # T = 3_333_334 µs
    result = rl.limit("user:42", rate=2)
    key = f"{base(backend, 'user:42')}:gcra"
    assert backend.all_keys() == {key}
    tat = (T0 + 2_500) * 1000 + 2 * 3_333_334
    assert backend.admin.type(key) == b"string"
    assert backend.admin.get(key) == str(tat).encode()
    assert 6_000 < backend.admin.pttl(key) <= 6_667  # it expires when its TAT has passed
    assert (result.remaining, result.reset) == (3, -(-tat // 1000))
    assert rl.reset("user:42") == 1
    assert backend.all_keys() == set()


def test_gcra_on_server_time_tells_microseconds_apart(backend: BackendCase) -> None:
    # One request per µs: two scripts in a row never run within the same µs, so every one
    # passes, though many fall within one ms (a ms clock would refuse all but one per ms).
    fast = backend.ratelimit(GCRA(1_000_000, "1 s", 1), prefix="fast", ephemeral_cache=False)
    results = fast.limit_many(["u"] * 20)
    assert all(r.success for r in results)
    # T = 1 s, burst 2: a third request right after two is refused, for under 1 s, to the µs.
    # (T is long so the key, which lives 2 T, is still there to read on a loaded machine.)
    rl = backend.ratelimit(GCRA(1, "1 s", 2), ephemeral_cache=False)
    key = f"{base(backend, 'u')}:gcra"
    before = backend.admin.time()
    first, second, third = rl.limit_many(["u"] * 3)
    after = backend.admin.time()
    assert (first.success, second.success, third.success) == (True, True, False)
    assert 0 < third.retry_after <= 1.0
    assert round(third.retry_after * 1_000_000, 6).is_integer()
    tat = int(backend.admin.get(key))
    # The TAT is the first request's server time in µs plus two emission intervals.
    assert before[0] * 1_000_000 + before[1] <= tat - 2_000_000 <= after[0] * 1_000_000 + after[1]
    assert third.reset == -(-tat // 1000)


# -- the sliding log -------------------------------------------------------------------------


def test_sliding_log_is_exact_over_any_window(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(SlidingLog(3, "1 m"), clock=clock, ephemeral_cache=False)
    for step in range(3):
        result = rl.limit("u")
        assert (result.success, result.remaining, result.reset) == (True, 2 - step, T0 + MINUTE)
        clock.advance(10_000)
    refused = rl.limit("u")  # at T0 + 30 s
    assert (refused.success, refused.remaining, refused.reset) == (False, 0, T0 + MINUTE)
    assert refused.retry_after == 30.0  # when the oldest entry leaves the window
    two = rl.limit("u", rate=2)
    assert two.retry_after == 40.0  # two must leave: the second oldest, at T0 + 70 s
    clock.set(T0 + MINUTE - 1)
    assert not rl.limit("u").success
    clock.advance(1)  # the first entry is out: exactly one fits
    admitted = rl.limit("u")
    assert (admitted.success, admitted.remaining, admitted.reset) == (True, 0, T0 + 70_000)
    assert not rl.limit("u").success
    assert not rl.limit("u", rate=4).success  # above the limit: never
    clock.advance(10 * MINUTE)
    assert rl.get_remaining("u") == (3, int(clock.now_ms()) + MINUTE, 3)


def test_sliding_log_memory_is_bounded_by_the_limit(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(SlidingLog(5, "1 m"), clock=clock, ephemeral_cache=False)
    key = f"{base(backend, 'u')}:log"
    admitted = []
    for step in range(200):
        rate = (1, 2, 3, 1, 6)[step % 5]
        if rl.limit("u", rate=rate).success:
            admitted.append((int(clock.now_ms()), rate))
        assert backend.admin.zcard(key) <= 5
        clock.advance(1_700 * (step % 4))
    assert len(admitted) > 30
    # Over any window-long span, never more than the limit.
    for at, _ in admitted:
        assert sum(rate for t, rate in admitted if at - MINUTE < t <= at) <= 5


def test_sliding_log_refusals_write_nothing(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(SlidingLog(3, "1 m"), clock=clock, ephemeral_cache=False)
    assert rl.limit("u", rate=3).success
    clock.advance(MINUTE + 5)  # the entries have left the window but are still stored
    assert rl.limit("v", rate=3).success
    before = snapshot(backend)
    assert not rl.limit("v", rate=1).success
    assert not rl.limit("v", rate=5).success
    assert rl.get_remaining("u").remaining == 3  # a peek: nothing trimmed either
    assert snapshot(backend) == before


def test_sliding_log_refunds_remove_the_newest_entries(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(SlidingLog(4, "1 m"), clock=clock)
    key = f"{base(backend, 'u')}:log"
    assert rl.limit("u", rate=2).success
    clock.advance(20_000)
    assert rl.limit("u", rate=2).success
    assert not rl.limit("u").success
    assert rl.limit("u").reason == "cacheBlock"
    refund = rl.limit("u", rate=-3)  # both of T0 + 20 s, and one of T0
    assert (refund.success, refund.remaining, refund.reset) == (True, 3, T0 + MINUTE)
    assert [score for _, score in backend.admin.zrange(key, 0, -1, withscores=True)] == [T0]
    assert 39_000 < backend.admin.pttl(key) <= 40_000  # re-expired with its newest entry
    assert rl.limit("u").success  # the refund lifted the block
    assert rl.limit("u", rate=-100).remaining == 4  # never more than what is held
    assert backend.all_keys() == set()


def test_sliding_log_key_layout_and_unique_members(backend: BackendCase) -> None:
    clock = VirtualClock(T0 + 2_500)
    rl = backend.ratelimit(SlidingLog(30, "10 s"), clock=clock)
    assert rl.limit("user:42", rate=12).remaining == 18
    assert rl.limit("user:42", rate=-1).success
    assert rl.limit("user:42", rate=3).success  # numbering continues where the refund left it
    key = f"{base(backend, 'user:42')}:log"
    assert backend.all_keys() == {key}
    assert backend.admin.type(key) == b"zset"
    entries = backend.admin.zrange(key, 0, -1, withscores=True)
    assert len(entries) == 14  # 12 - 1 + 3 members, all distinct in one ms
    assert {score for _, score in entries} == {T0 + 2_500}
    assert 9_000 < backend.admin.pttl(key) <= 10_000
    assert rl.reset("user:42") == 1
    assert backend.all_keys() == set()


def test_sliding_log_on_server_time(backend: BackendCase) -> None:
    rl = backend.ratelimit(SlidingLog(10, "1 h"), ephemeral_cache=False)
    results = rl.limit_many(["u"] * 12)  # most of them within one ms
    assert [r.success for r in results] == [True] * 10 + [False] * 2
    key = f"{base(backend, 'u')}:log"
    assert backend.admin.zcard(key) == 10
    seconds, _ = backend.admin.time()
    scores = [score for _, score in backend.admin.zrange(key, 0, -1, withscores=True)]
    assert all(abs(score - seconds * 1000) < 5_000 for score in scores)
    assert 0 < results[10].retry_after <= 3600
    assert rl.reset("u") == 1


# -- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: GCRA(0, "1 s", 1), "rate must be between 1"),
        (lambda: GCRA(1.5, "1 s", 1), "rate must be an int"),
        (lambda: GCRA(True, "1 s", 1), "rate must be an int"),
        (lambda: GCRA(1, "1 s", 0), "burst must be between 1"),
        (lambda: GCRA(1, "0 s", 1), "period must be at least 1 ms"),
        (lambda: GCRA(1, "1 parsec", 1), "period must look like"),
        (lambda: GCRA(1_001, "1 ms", 1), "rate must be at most one request per microsecond"),
        (lambda: GCRA(1, "1 d", 10**6), "must be at most 10 years"),
        (lambda: SlidingLog(0, "1 m"), "tokens must be between 1"),
        (lambda: SlidingLog("5", "1 m"), "tokens must be an int"),
        (lambda: SlidingLog(MAX_LOG_TOKENS + 1, "1 m"), "tokens must be at most 100_000"),
        (lambda: SlidingLog(5, -1), "window must be at least 1 ms"),
    ],
)
def test_bad_arguments_are_refused(make: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        make()


def test_limits_at_the_edges_of_the_arguments(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    one_per_us = backend.ratelimit(GCRA(1_000, "1 ms", 1), clock=clock, ephemeral_cache=False)
    # The key lives 1 ms of the server's real time: on a loaded machine the second call can
    # come after it expired (then it is allowed afresh), so the pair is tried until the
    # second call lands inside the millisecond, and that denial must say exactly 1 us.
    for _attempt in range(50):
        assert one_per_us.limit("u").success
        second = one_per_us.limit("u")
        if not second.success:
            break
        one_per_us.reset("u")
    assert not second.success
    assert second.retry_after == 0.000001
    decade = backend.ratelimit(GCRA(1, "3650 d", 1), clock=clock, prefix="decade")
    assert decade.limit("u").success
    assert decade.limit("u").retry_after == 3650 * 86_400
    big = backend.ratelimit(SlidingLog(MAX_LOG_TOKENS, "1 m"), clock=clock, prefix="big")
    assert big.limit("u", rate=2_500).remaining == MAX_LOG_TOKENS - 2_500
    assert backend.admin.zcard(f"{base(backend, 'u', 'big')}:log") == 2_500
