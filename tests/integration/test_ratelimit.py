"""Rate limiting on real servers: standalone and cluster, sync and async (see conftest)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from redkit import CachedFixedWindow, EphemeralCache, FixedWindow, SlidingWindow, TokenBucket
from redkit.core import keys
from redkit.core.clock import VirtualClock
from redkit.core.errors import CommandError, InvalidKeyError
from redkit.ratelimit.limiters import Limiter
from support.backends import BackendCase

# 2023-11-14 22:13:20 UTC: a 10 s window starts here; an hour window is 800 s old.
T0 = 1_700_000_000_000

ALGORITHMS = [
    pytest.param(FixedWindow(5, "1 h"), id="fixed"),
    pytest.param(SlidingWindow(5, "1 h"), id="sliding"),
    pytest.param(TokenBucket(1, "1 h", 5), id="token"),
    pytest.param(CachedFixedWindow(5, "1 h"), id="cached"),
]


def base(backend: BackendCase, identifier: str, prefix: str = "@upstash/ratelimit") -> str:
    """The identifier's base key as the docs state it (standalone verbatim, cluster tagged)."""
    if backend.is_cluster:
        return f"{prefix}:{{{keys.escape(identifier)}}}"
    return f"{prefix}:{identifier}"


@pytest.mark.parametrize("limiter", ALGORITHMS)
def test_admits_the_limit_then_refuses_on_server_time(
    backend: BackendCase, limiter: Limiter
) -> None:
    rl = backend.ratelimit(limiter)
    for _ in range(3):  # windows follow the server's clock: start over if one ended meanwhile
        rl.reset("user:42")
        results = [rl.limit("user:42") for _ in range(7)]
        if len({r.reset for r in results}) == 1:
            break
    assert [r.success for r in results] == [True] * 5 + [False] * 2
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0, 0]
    assert all(r.limit == 5 for r in results)
    assert all(bool(r) is r.success for r in results)
    now = time.time() * 1000
    assert all(now - 5_000 < r.reset <= now + 3_600_000 + 5_000 for r in results)
    assert results[0].retry_after == 0.0
    assert 0 < results[5].retry_after <= 3600
    # The ephemeral cache answers the second refusal (the cached window refuses locally).
    expected = None if isinstance(limiter, CachedFixedWindow) else "cacheBlock"
    assert results[6].reason == expected


@pytest.mark.parametrize("limiter", ALGORITHMS)
def test_reset_deletes_exactly_that_identifiers_keys(
    backend: BackendCase, limiter: Limiter
) -> None:
    rl = backend.ratelimit(limiter, clock=VirtualClock(T0 + 1234))
    for identifier in ("a*", "a", "ab", "a?", "[a]"):
        for _ in range(5):
            assert rl.limit(identifier)
        assert not rl.limit(identifier)
    rl.flush()
    before = backend.all_keys()
    assert len(before) == 5
    assert rl.reset("a*") == 1
    assert backend.all_keys() == before - {k for k in before if k.startswith(base(backend, "a*"))}
    assert rl.limit("a*").success  # unblocked in the ephemeral cache too
    assert not rl.limit("a").success  # the glob-like identifier touched nobody else
    assert rl.get_remaining("a*").remaining == 4


def test_fixed_window_key_layout_is_upstashs(backend: BackendCase) -> None:
    rl = backend.ratelimit(FixedWindow(10, "10 s"), clock=VirtualClock(T0 + 2500))
    result = rl.limit("user:42", rate=3)
    key = f"{base(backend, 'user:42')}:{(T0 + 2500) // 10_000}"
    assert backend.all_keys() == {key}
    assert backend.admin.type(key) == b"string"
    assert backend.admin.get(key) == b"3"
    assert 0 < backend.admin.pttl(key) <= 10_000
    assert (result.success, result.remaining, result.reset) == (True, 7, T0 + 10_000)


def test_sliding_window_key_layout_is_upstashs(backend: BackendCase) -> None:
    rl = backend.ratelimit(SlidingWindow(10, "10 s"), clock=VirtualClock(T0 + 2500))
    rl.limit("user:42")
    key = f"{base(backend, 'user:42')}:{(T0 + 2500) // 10_000}"
    assert backend.all_keys() == {key}
    assert backend.admin.get(key) == b"1"
    assert 20_000 < backend.admin.pttl(key) <= 21_000  # two windows and a second, as Upstash


def test_token_bucket_key_layout_is_upstashs(backend: BackendCase) -> None:
    rl = backend.ratelimit(TokenBucket(2, "10 s", 10), clock=VirtualClock(T0 + 2500))
    result = rl.limit("user:42", rate=3)
    key = base(backend, "user:42")
    assert backend.all_keys() == {key}
    assert backend.admin.type(key) == b"hash"
    assert backend.admin.hgetall(key) == {b"refilledAt": str(T0 + 2500).encode(), b"tokens": b"7"}
    # It expires when it would be full again: 3 tokens back at 2 per 10 s takes two refills.
    assert 19_000 < backend.admin.pttl(key) <= 20_000
    assert (result.remaining, result.reset) == (7, T0 + 2500 + 10_000)


def test_counters_written_by_another_client_are_honoured(backend: BackendCase) -> None:
    clock = VirtualClock(T0 + 7_000)
    admin = backend.admin
    tag = base(backend, "shared")
    # What @upstash/ratelimit leaves behind: window counters, and a bucket hash.
    admin.set(f"{tag}:{T0 // 10_000}", 8)
    admin.set(f"{tag}:{T0 // 10_000 - 1}", 10)
    fixed = backend.ratelimit(FixedWindow(10, "10 s"), clock=clock, prefix="@upstash/ratelimit")
    assert fixed.get_remaining("shared").remaining == 2
    assert fixed.limit("shared", rate=2).success
    assert not fixed.limit("shared").success
    # The sliding window weighs the previous window: floor(0.3 * 10) + 10 = 13 > 10.
    sliding = backend.ratelimit(SlidingWindow(10, "10 s"), clock=clock, prefix="@upstash/ratelimit")
    assert sliding.get_remaining("shared").remaining == 0
    bucket_key = base(backend, "bucket")
    admin.hset(bucket_key, mapping={"refilledAt": T0 - 15_000, "tokens": 1})
    bucket = backend.ratelimit(TokenBucket(1, "10 s", 5), clock=clock)
    # Two refills have come since refilledAt (the phase is kept): 3 tokens, the next at T0+15 s.
    assert bucket.get_remaining("bucket") == (3, T0 + 15_000, 5)


def test_refused_requests_consume_nothing(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    sliding = backend.ratelimit(SlidingWindow(10, "1 m"), clock=clock, ephemeral_cache=False)
    assert sliding.limit("s", rate=8).remaining == 2
    refused = sliding.limit("s", rate=5)  # Upstash would consume these 5 and refuse
    assert (refused.success, refused.remaining) == (False, 2)
    assert sliding.limit("s", rate=2).remaining == 0

    bucket = backend.ratelimit(TokenBucket(1, "1 m", 10), clock=clock, ephemeral_cache=False)
    assert bucket.limit("b", rate=7).remaining == 3
    assert not bucket.limit("b", rate=4).success  # a bucket never goes negative
    assert bucket.limit("b", rate=3).success
    assert backend.admin.hget(base(backend, "b"), "tokens") == b"0"


def test_refunds_and_peeks(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    for limiter in (FixedWindow(3, "1 m"), SlidingWindow(3, "1 m"), TokenBucket(1, "1 m", 3)):
        rl = backend.ratelimit(limiter, clock=clock, prefix=f"rf-{type(limiter).__name__}")
        for _ in range(3):
            rl.limit("u")
        blocked = rl.limit("u")
        assert (blocked.success, blocked.reason) == (False, None)
        assert rl.limit("u").reason == "cacheBlock"
        peek = rl.limit("u", rate=0)
        assert (peek.success, peek.remaining) == (True, 0)
        refund = rl.limit("u", rate=-2)  # e.g. the request failed before doing any work
        assert (refund.success, refund.remaining) == (True, 2)
        assert rl.limit("u").success  # the refund also lifted the ephemeral block
        assert rl.limit("u", rate=-100).remaining == 3  # never more than the limit back


def test_a_cost_above_the_limit_never_passes_and_blocks_nobody(backend: BackendCase) -> None:
    clock = VirtualClock(T0 + 1000)
    for limiter in (FixedWindow(3, "1 m"), SlidingWindow(3, "1 m"), TokenBucket(1, "1 m", 3)):
        rl = backend.ratelimit(limiter, clock=clock, prefix=f"big-{type(limiter).__name__}")
        result = rl.limit("u", rate=4)
        assert (result.success, result.remaining, result.reason) == (False, 3, None)
        assert result.retry_after == (result.reset - (T0 + 1000)) / 1000
        assert rl.limit("u").success  # no ephemeral block: smaller requests still pass


def test_token_bucket_get_remaining_applies_refills(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(TokenBucket(2, "10 s", 10), clock=clock)
    assert rl.limit("u", rate=10).remaining == 0
    clock.advance(25_000)
    assert rl.get_remaining("u") == (4, T0 + 30_000, 10)  # two refills of 2
    assert backend.admin.hget(base(backend, "u"), "tokens") == b"0"  # a read writes nothing


def test_sliding_window_retry_after_is_when_a_retry_passes(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(SlidingWindow(10, "10 s"), clock=clock, ephemeral_cache=False)
    assert rl.limit("u", rate=10).success
    clock.advance(10_000 + 2_000)  # the next window, 20% in: 8 of the 10 still weigh
    refused = rl.limit("u", rate=5)
    assert not refused.success
    # floor(10 * (1 - e/10 s)) <= 5 first holds at e = 4.001 s: 2.001 s from now.
    assert refused.retry_after == 2.001
    clock.advance(2_000)
    assert not rl.limit("u", rate=5).success
    clock.advance(1)
    assert rl.limit("u", rate=5).success


def test_limit_many_answers_as_limit_would(backend: BackendCase) -> None:
    rl = backend.ratelimit(FixedWindow(2, "1 h"), clock=VirtualClock(T0))
    results = rl.limit_many(["a", "b", "a", "c", "a"])
    assert [r.success for r in results] == [True, True, True, True, False]
    assert [r.remaining for r in results] == [1, 1, 0, 1, 0]
    again = rl.limit_many(["a", "b"])
    assert [r.reason for r in again] == ["cacheBlock", None]
    assert rl.limit_many([]) == []


@pytest.mark.parametrize("limiter", ALGORITHMS[:3])
def test_a_blocked_identifier_costs_no_round_trip(backend: BackendCase, limiter: Limiter) -> None:
    rl = backend.ratelimit(limiter)
    while rl.limit("hammer").success:
        pass
    backend.reset_command_stats()
    results = [rl.limit("hammer") for _ in range(50)]
    assert {r.reason for r in results} == {"cacheBlock"}
    assert backend.command_calls("evalsha", "eval", "get", "mget", "hmget", "incrby") == 0
    assert rl.limit("other").success  # others still ask Redis
    assert backend.command_calls("evalsha") == 1


def test_the_ephemeral_cache_is_bounded_and_shareable(backend: BackendCase) -> None:
    shared = EphemeralCache(max_size=3)
    clock = VirtualClock(T0)
    first = backend.ratelimit(
        FixedWindow(1, "1 h"), ephemeral_cache=shared, prefix="1", clock=clock
    )
    second = backend.ratelimit(
        FixedWindow(1, "1 h"), ephemeral_cache=shared, prefix="2", clock=clock
    )
    for identifier in ("a", "b"):
        first.limit(identifier)
        first.limit(identifier)
        second.limit(identifier)
        second.limit(identifier)
    assert len(shared) == 3  # four blocks, the oldest evicted
    assert second.limit("b").reason == "cacheBlock"
    assert first.limit("a").reason is None  # evicted: Redis answers again


def test_block_until_ready_waits_for_the_retry(backend: BackendCase) -> None:
    rl = backend.ratelimit(TokenBucket(1, "300 ms", 1))
    assert rl.limit("w").success
    started = time.monotonic()
    result = rl.block_until_ready("w", 5)
    assert result.success
    assert 0.1 < time.monotonic() - started < 3  # it did wait, for about one refill
    slow = backend.ratelimit(TokenBucket(1, "1 h", 1), prefix="slow")
    assert slow.limit("w").success
    refused = slow.block_until_ready("w", 0.5)  # the next token is an hour away
    assert not refused.success
    assert time.monotonic() - started < 4


def test_block_until_ready_returns_at_once_for_a_cost_that_never_passes(
    backend: BackendCase,
) -> None:
    rl = backend.ratelimit(TokenBucket(1, "10 ms", 2))
    started = time.monotonic()
    result = rl.block_until_ready("w", "5 s", rate=3)
    assert not result.success
    assert time.monotonic() - started < 1


def test_block_until_ready_gives_up_at_once_when_the_deadline_is_too_close(
    backend: BackendCase,
) -> None:
    rl = backend.ratelimit(FixedWindow(1, "1 h"), clock=VirtualClock(T0))
    rl.limit("late")  # the window ends in 2800 s
    started = time.monotonic()
    assert not rl.block_until_ready("late", "30 s").success
    assert time.monotonic() - started < 1  # no 30 s of sleeping in vain
    with pytest.raises(ValueError, match="at least 1 ms"):
        rl.block_until_ready("late", 0)


@pytest.mark.parametrize(
    "identifier",
    ["ünïcødé-ид-🙂", "with space", "a:b:c", "{tag}", "}", "*", "[x]", "x" * 100_000, 12345],
)
def test_unusual_identifiers_work_and_stay_apart(backend: BackendCase, identifier: Any) -> None:
    rl = backend.ratelimit(FixedWindow(1, "1 h"), ephemeral_cache=False, clock=VirtualClock(T0))
    assert rl.limit(identifier).success
    assert not rl.limit(identifier).success
    assert rl.limit("plain").success
    assert all(len(key) < 1_000 for key in backend.all_keys())  # huge ones are digested
    assert rl.reset(identifier) == 1


@pytest.mark.parametrize(
    ("identifier", "error"),
    [("", InvalidKeyError), (None, InvalidKeyError), (1.5, InvalidKeyError),
     (b"bytes", InvalidKeyError), (True, InvalidKeyError), ("\ud800", InvalidKeyError)],
)  # fmt: skip
def test_bad_identifiers_are_refused_before_any_round_trip(
    backend: BackendCase, identifier: Any, error: type[Exception]
) -> None:
    rl = backend.ratelimit(FixedWindow(1, "1 h"))
    backend.reset_command_stats()
    with pytest.raises(error):
        rl.limit(identifier)
    with pytest.raises(error):
        rl.limit_many(["ok", identifier])
    assert backend.command_calls("evalsha", "eval") == 0


@pytest.mark.parametrize("rate", [1.5, "1", None, True, 10**13, -(10**13)])
def test_bad_rates_are_refused(backend: BackendCase, rate: Any) -> None:
    rl = backend.ratelimit(FixedWindow(1, "1 h"))
    with pytest.raises((TypeError, ValueError), match="rate must be"):
        rl.limit("u", rate=rate)


def test_a_key_of_the_wrong_type_is_a_command_error(backend: BackendCase) -> None:
    backend.admin.set(base(backend, "typo"), "not a hash")
    rl = backend.ratelimit(TokenBucket(1, "1 s", 1))
    with pytest.raises(CommandError, match="WRONGTYPE"):
        rl.limit("typo")


def test_cached_fixed_window_counts_locally_and_syncs(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(CachedFixedWindow(10, "1 h"), ephemeral_cache=False, clock=clock)
    assert rl.limit("c").remaining == 9  # asks Redis
    backend.reset_command_stats()
    results = [rl.limit("c") for _ in range(12)]
    assert [r.success for r in results] == [True] * 9 + [False] * 3
    rl.flush()
    # The nine local admissions reached Redis, coalesced into a few script calls.
    assert backend.command_calls("evalsha", "eval") <= 9
    key = next(iter(backend.all_keys()))
    assert backend.admin.get(key) == b"10"
    # Another process sharing the window sees the full count.
    other = backend.ratelimit(CachedFixedWindow(10, "1 h"), ephemeral_cache=False, clock=clock)
    assert not other.limit("c").success


def test_cached_fixed_window_bound_across_processes(backend: BackendCase) -> None:
    # Two limiters stand for two processes: each admits at most the limit per window, and the
    # folding of Redis's totals lets a late starter see the other's admissions.
    clock = VirtualClock(T0)
    first = backend.ratelimit(CachedFixedWindow(6, "1 h"), ephemeral_cache=False, clock=clock)
    second = backend.ratelimit(CachedFixedWindow(6, "1 h"), ephemeral_cache=False, clock=clock)
    admitted = sum(first.limit("p").success for _ in range(4))
    first.flush()
    admitted += sum(second.limit("p").success for _ in range(10))
    second.flush()
    assert admitted == 6
    admitted += sum(first.limit("p").success for _ in range(10))
    first.flush()
    assert admitted <= 2 * 6
    key = next(iter(backend.all_keys()))
    assert int(backend.admin.get(key)) == admitted  # Redis holds every admission


def test_server_time_keys_are_upstashs_too(backend: BackendCase) -> None:
    # On the default clock the script names the counters itself, from Redis's TIME.
    fixed = backend.ratelimit(FixedWindow(10, "1 h"), prefix="st")
    sliding = backend.ratelimit(SlidingWindow(10, "1 h"), prefix="ss")
    for _ in range(3):
        seconds, _micros = backend.admin.time()
        bucket = seconds * 1000 // 3_600_000
        fixed.limit("user:1")
        sliding.limit("user:1")
        expected = {f"{base(backend, 'user:1', p)}:{bucket}" for p in ("st", "ss")}
        if backend.all_keys() == expected:
            break
        fixed.reset("user:1")  # an hour ended in between: try again
        sliding.reset("user:1")
    assert backend.all_keys() == expected
    assert fixed.reset("user:1") == 1
    assert sliding.reset("user:1") == 1
    assert backend.all_keys() == set()


def test_a_block_holds_only_for_requests_as_costly_as_the_refused_one(backend: BackendCase) -> None:
    rl = backend.ratelimit(FixedWindow(5, "1 m"), clock=VirtualClock(T0))
    assert rl.limit("u", rate=3).success
    refused = rl.limit("u", rate=3)
    assert (refused.success, refused.reason, refused.remaining) == (False, None, 2)
    assert rl.limit("u", rate=4).reason == "cacheBlock"
    cheaper = rl.limit("u", rate=2)  # fits in what is left: Redis is asked, and admits it
    assert (cheaper.success, cheaper.reason) == (True, None)


def test_a_refund_counted_locally_lifts_the_block(backend: BackendCase) -> None:
    rl = backend.ratelimit(CachedFixedWindow(2, "1 m"), clock=VirtualClock(T0))
    rl.limit("u")
    rl.limit("u")
    assert not rl.limit("u").success  # refused locally: no block needed
    rl.flush()
    other = backend.ratelimit(CachedFixedWindow(2, "1 m"), clock=VirtualClock(T0))
    assert not other.limit("u").success  # refused by Redis: blocked in this process
    assert other.limit("u").reason == "cacheBlock"
    assert other.limit("u", rate=-1).success  # counted locally
    assert other.limit("u").success  # the block is gone


def test_closing_a_cached_window_sends_every_count(backend: BackendCase) -> None:
    # A prefix of its own: a late count from another test's limiter must not be summed here.
    rl = backend.ratelimit(
        CachedFixedWindow(100, "1 h"), clock=VirtualClock(T0), prefix="closing-sends-all"
    )
    admitted = sum(rl.limit(f"id-{n % 3}").success for n in range(60))
    rl.close()
    mine = [key for key in backend.all_keys() if key.startswith("closing-sends-all:")]
    counters = [int(backend.admin.get(key)) for key in mine]
    assert sum(counters) == admitted == 60


def test_a_thousand_concurrent_tasks_are_all_decided(backend: BackendCase) -> None:
    if not backend.is_async or backend.is_cluster:
        # The fix under test is the standalone asyncio pool, which makes extra tasks wait for a
        # connection. (A burst of hundreds of new connections to one cluster node overflows
        # its accept queue on this machine; that limit is the operating system's.)
        pytest.skip("concurrent tasks on one standalone server's asyncio pool")
    import asyncio

    from redkit import AsyncRatelimit

    rl = AsyncRatelimit(backend.conn, FixedWindow(10**6, "1 h"), ephemeral_cache=False)

    async def many() -> list[Any]:
        return await asyncio.gather(*(rl.limit(f"u{n}") for n in range(1_000)))

    results = backend.loop.run(many())
    # More tasks than pooled connections wait for one: none is answered by the timeout policy.
    timeouts = sum(result.reason == "timeout" for result in results)
    assert (len(results), timeouts) == (1_000, 0)
