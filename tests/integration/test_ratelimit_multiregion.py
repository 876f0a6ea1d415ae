"""Multi-region rate limiting on three embedded Redis servers, blocking and asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import multiprocessing
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from redkit import Connection
from redkit.core.clock import VirtualClock
from redkit.drivers.embedded import EmbeddedRedis
from redkit.errors import InvalidArgumentError
from redkit.ratelimit import (
    GCRA,
    AsyncMultiRegionRatelimit,
    CachedFixedWindow,
    FixedWindow,
    MultiRegionRatelimit,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from redkit.ratelimit.multiregion import _WORKERS
from redkit.ratelimit.result import COMPLETED
from support.multiregion_worker import hammer

NOW_MS = 1_700_000_040_000  # a window boundary of every window used below
MINUTE = 60_000


@pytest.fixture(scope="module")
def regions() -> Iterator[list[EmbeddedRedis]]:
    """Three regions of the test module's own (a test may restart one)."""
    servers = [EmbeddedRedis().start() for _ in range(3)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def conns(regions: list[EmbeddedRedis]) -> Iterator[list[Connection]]:
    connections = [server.connect() for server in regions]
    yield connections
    for connection in connections:
        connection.close()


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in an event loop of its own (its connections are closed in it)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _prefix() -> str:
    return f"mr{uuid.uuid4().hex[:8]}"


def _window_hashes(regions: list[EmbeddedRedis], key: str) -> list[dict[bytes, bytes]]:
    hashes = []
    for server in regions:
        with server.client() as client:
            hashes.append(client.hgetall(key))
    return hashes


@pytest.mark.parametrize(
    "limiter",
    [
        TokenBucket(1, "1 s", 5),
        GCRA(5, "1 s", 5),
        SlidingLog(5, "1 s"),
        CachedFixedWindow(5, "1 s"),
    ],
    ids=lambda limiter: type(limiter).__name__,
)
def test_only_fixed_and_sliding_windows_are_taken(conns: list[Connection], limiter: object) -> None:
    with pytest.raises(InvalidArgumentError, match="FixedWindow or SlidingWindow"):
        MultiRegionRatelimit(conns, limiter)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="FixedWindow or SlidingWindow"):
        AsyncMultiRegionRatelimit(conns, limiter)  # type: ignore[arg-type]


def test_the_regions_must_be_a_list(conns: list[Connection]) -> None:
    for bad in ([], conns[0].url if hasattr(conns[0], "url") else "redis://x", None):
        with pytest.raises(InvalidArgumentError, match="list of the regions"):
            MultiRegionRatelimit(bad, FixedWindow(5, "1 s"))  # type: ignore[arg-type]


def test_fixed_window_decides_and_every_region_holds_the_js_sdks_hash(
    regions: list[EmbeddedRedis], conns: list[Connection]
) -> None:
    prefix = _prefix()
    clock = VirtualClock(NOW_MS)
    with MultiRegionRatelimit(
        conns, FixedWindow(5, "1 m"), prefix=prefix, ephemeral_cache=False, clock=clock
    ) as limiter:
        results = []
        for _ in range(7):  # each decision settled in every region before the next
            results.append(limiter.limit("alice"))
            assert limiter.flush(10)
        assert [r.success for r in results] == [True] * 5 + [False] * 2
        assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
        assert results[0].reset == NOW_MS + MINUTE
        assert results[5].retry_after == pytest.approx(60.0)
        assert limiter.flush(10)
        assert limiter.get_remaining("alice").remaining == 0
    # The JS SDK's layout: <prefix>:<identifier>:<window number>, a hash of request id -> cost.
    key = f"{prefix}:alice:{NOW_MS // MINUTE}"
    hashes = _window_hashes(regions, key)
    assert len(hashes[0]) == 5
    assert all(h == hashes[0] for h in hashes), "every region holds the same request ids"
    for field, cost in hashes[0].items():
        assert re.fullmatch(rb"[0-9a-f]{16}", field)
        assert cost == b"1"
    for server in regions:
        with server.client() as client:
            assert client.type(key) == b"hash"
            assert 0 < client.pttl(key) <= MINUTE


def test_refunds_peeks_reset_and_the_ephemeral_cache(
    regions: list[EmbeddedRedis], conns: list[Connection]
) -> None:
    prefix = _prefix()
    clock = VirtualClock(NOW_MS)
    with MultiRegionRatelimit(conns, FixedWindow(3, "1 m"), prefix=prefix, clock=clock) as limiter:
        assert limiter.limit("bob", 3).remaining == 0
        limiter.flush(10)  # settled everywhere: the next answer sees it, whoever answers
        refused = limiter.limit("bob")
        assert not refused.success
        assert refused.reason is None
        cached = limiter.limit("bob")
        assert not cached.success
        assert cached.reason == "cacheBlock"
        assert cached.pending is COMPLETED  # answered from memory: nothing to write
        assert limiter.limit("bob", -2).success  # a refund: a field of negative cost
        limiter.flush(10)
        assert limiter.limit("bob", 0).remaining == 2  # a peek writes nothing
        assert limiter.limit("bob").success
        limiter.flush(10)
        key = f"{prefix}:bob:{NOW_MS // MINUTE}"
        assert [sorted(h.values()) for h in _window_hashes(regions, key)] == [
            [b"-2", b"1", b"3"]
        ] * 3
        assert limiter.reset("bob") == 3  # one key in each region
        assert limiter.get_remaining("bob").remaining == 3


def test_close_twice_and_flush_after_close_leave_nothing_counted(
    conns: list[Connection], regions: list[EmbeddedRedis]
) -> None:
    prefix = _prefix()
    limiter = MultiRegionRatelimit(conns, FixedWindow(5, "1 m"), prefix=prefix, analytics=True)
    assert limiter.limit("closer").success
    limiter.close()
    limiter.close()  # a second close (a with block around an explicit close) is harmless
    assert limiter.flush(1)  # nothing left to send: no new work on the stopped threads
    assert len(limiter.pending) == 0
    with regions[0].client() as client:  # the one decision's analytics were written
        assert client.keys(f"{prefix}*:events:*")


def test_block_until_ready_waits_for_the_next_window(conns: list[Connection]) -> None:
    with MultiRegionRatelimit(conns, FixedWindow(1, "1 s"), prefix=_prefix()) as limiter:
        assert limiter.limit("carol").success
        started = time.monotonic()
        result = limiter.block_until_ready("carol", "3 s")
        assert result.success
        assert time.monotonic() - started < 1.5
        refused = limiter.block_until_ready("carol", 0.05)
        assert not refused.success  # the next window is further off than the budget


@in_loop
async def test_async_sliding_window_decides_and_converges(regions: list[EmbeddedRedis]) -> None:
    conns = [server.connect() for server in regions]
    prefix = _prefix()
    clock = VirtualClock(NOW_MS + MINUTE // 2)  # halfway: the previous window weighs 1/2
    limiter = AsyncMultiRegionRatelimit(
        conns, SlidingWindow(6, "1 m"), prefix=prefix, ephemeral_cache=False, clock=clock
    )
    bucket = (NOW_MS + MINUTE // 2) // MINUTE
    with regions[0].client() as client:  # 4 requests in the previous window: they weigh 2
        client.hset(f"{prefix}:dave:{bucket - 1}", mapping={f"old{i}": 1 for i in range(4)})
    results = [await limiter.limit("dave") for _ in range(6)]
    # Region 0 (usually first) counts the previous window; the others do not know it: the
    # first answer decides, so 4 or 6 are admitted depending on who answered.
    admitted = sum(r.success for r in results)
    assert admitted in (4, 5, 6)
    await limiter.close()
    assert not limiter.pending
    for conn in conns:
        await conn.aclose()
    hashes = _window_hashes(regions, f"{prefix}:dave:{bucket}")
    assert all(h == hashes[0] for h in hashes)
    # The union: regions 1 and 2, blind to the previous window, admitted all 6; region 0
    # holds them too once caught up, whatever the first answers decided.
    assert len(hashes[0]) == 6
    for server in regions:
        with server.client() as client:
            ttl = client.pttl(f"{prefix}:dave:{bucket}")
            assert 2 * MINUTE < ttl <= 2 * MINUTE + 1000  # the JS SDK's: two windows + 1 s


@in_loop
async def test_async_fixed_window_keys_and_convergence(regions: list[EmbeddedRedis]) -> None:
    conns = [server.connect() for server in regions]
    prefix = _prefix()
    limiter = AsyncMultiRegionRatelimit(
        conns, FixedWindow(10, "1 m"), prefix=prefix, clock=VirtualClock(NOW_MS)
    )
    results = await asyncio.gather(*(limiter.limit("erin") for _ in range(8)))
    assert all(r.success for r in results)
    assert (await limiter.get_remaining("erin")).remaining <= 2 + 8  # before the catch-up
    await limiter.flush()
    assert (await limiter.get_remaining("erin")).remaining == 2
    hashes = _window_hashes(regions, f"{prefix}:erin:{NOW_MS // MINUTE}")
    assert len(hashes[0]) == 8
    assert all(h == hashes[0] for h in hashes)
    assert await limiter.reset("erin") == 3
    await limiter.close()
    for conn in conns:
        await conn.aclose()


def _frozen(server: EmbeddedRedis) -> None:
    os.kill(server.pid, signal.SIGSTOP)


def _thawed(server: EmbeddedRedis) -> None:
    os.kill(server.pid, signal.SIGCONT)


def test_a_silent_region_costs_nothing_and_a_restarted_one_is_caught_up(
    regions: list[EmbeddedRedis],
) -> None:
    prefix = _prefix()
    conns = [server.connect() for server in regions]
    clock = VirtualClock(NOW_MS)
    limiter = MultiRegionRatelimit(
        conns, FixedWindow(20, "1 m"), prefix=prefix, timeout=0.5, ephemeral_cache=False,
        clock=clock,
    )  # fmt: skip
    key = f"{prefix}:frank:{NOW_MS // MINUTE}"
    try:
        assert limiter.limit("frank").success
        _frozen(regions[2])  # the region hangs: it accepts, never answers
        try:
            for _ in range(5):
                result = limiter.limit("frank")
                assert result.success
                assert result.reason is None  # a region's answer, not the timeout policy's
            assert limiter.flush(10)  # the hung region's calls time out meanwhile
        finally:
            _thawed(regions[2])
        regions[2].restart()  # it comes back empty, as after a crash
        assert _window_hashes(regions, key)[2] == {}
        # The next decision reaching it brings it up to date (the SDK's sync: the union).
        assert limiter.limit("frank").success
        assert limiter.flush(10)
        hashes = _window_hashes(regions, key)
        assert len(hashes[0]) == 7
        assert all(h == hashes[0] for h in hashes)
    finally:
        limiter.close()
        for conn in conns:
            conn.close()


@in_loop
async def test_async_no_region_answering_is_the_timeout_policy(
    regions: list[EmbeddedRedis],
) -> None:
    conns = [server.connect() for server in regions]
    limiter = AsyncMultiRegionRatelimit(
        conns, FixedWindow(5, "1 m"), prefix=_prefix(), timeout=0.3, on_timeout="deny"
    )
    for server in regions:
        _frozen(server)
    try:
        started = time.monotonic()
        result = await limiter.limit("gina")
        assert not result.success
        assert result.reason == "timeout"
        assert time.monotonic() - started < 1.0
        # The writes still under way: they end by the connections' timeout.
        assert result.pending is not COMPLETED
        await asyncio.wait_for(result.pending, 10)
    finally:
        for server in regions:
            _thawed(server)
        await limiter.close()
        for conn in conns:
            await conn.aclose()


def _fields_in(regions: list[EmbeddedRedis], key: str) -> list[int]:
    counts = []
    for server in regions:
        with server.client() as client:
            counts.append(client.hlen(key))
    return counts


def test_with_a_silent_region_a_decisions_pending_still_completes(
    regions: list[EmbeddedRedis], conns: list[Connection]
) -> None:
    prefix = _prefix()
    with MultiRegionRatelimit(
        conns, FixedWindow(5, "1 m"), prefix=prefix, timeout=0.5, clock=VirtualClock(NOW_MS)
    ) as limiter:
        assert limiter.limit("nia").pending.wait(10)  # connections made before the freeze
        _frozen(regions[1])
        try:
            result = limiter.limit("nia")
            assert result.success
            assert result.reason is None  # the others decided
            returned = time.monotonic()
            assert result.pending.wait(10)  # the silent region's call failed by its timeout
            assert time.monotonic() - returned < 5.0
            key = f"{prefix}:nia:{NOW_MS // MINUTE}"
            assert _fields_in([regions[0], regions[2]], key) == [2, 2]
        finally:
            _thawed(regions[1])


def test_no_region_answering_the_timeouts_pending_is_the_writes_under_way(
    regions: list[EmbeddedRedis], conns: list[Connection]
) -> None:
    with MultiRegionRatelimit(conns, FixedWindow(5, "1 m"), prefix=_prefix(), timeout=0.3) as rl:
        assert rl.limit("olga").pending.wait(10)
        for server in regions:
            _frozen(server)
        try:
            result = rl.limit("olga")
            assert result.reason == "timeout"
            assert result.success  # on_timeout="allow"
            assert result.pending is not COMPLETED
            assert result.pending.wait(10)
        finally:
            for server in regions:
                _thawed(server)


@in_loop
async def test_async_with_a_silent_region_a_decisions_pending_still_completes(
    regions: list[EmbeddedRedis],
) -> None:
    conns = [server.connect() for server in regions]
    prefix = _prefix()
    limiter = AsyncMultiRegionRatelimit(
        conns, SlidingWindow(5, "1 m"), prefix=prefix, timeout=0.5, clock=VirtualClock(NOW_MS)
    )
    try:
        await (await limiter.limit("pat")).pending
        _frozen(regions[0])
        try:
            result = await limiter.limit("pat")
            assert result.success
            assert result.reason is None
            returned = time.monotonic()
            await asyncio.wait_for(result.pending, 10)
            assert time.monotonic() - returned < 5.0
            key = f"{prefix}:pat:{NOW_MS // MINUTE}"
            assert _fields_in(regions[1:], key) == [2, 2]
        finally:
            _thawed(regions[0])
    finally:
        await limiter.close()
        for conn in conns:
            await conn.aclose()


@in_loop
async def test_async_one_silent_region_still_decides_at_once(
    regions: list[EmbeddedRedis],
) -> None:
    conns = [server.connect() for server in regions]
    limiter = AsyncMultiRegionRatelimit(
        conns, SlidingWindow(50, "1 m"), prefix=_prefix(), timeout=0.5
    )
    assert (await limiter.limit("hal")).success  # connections made before the freeze
    _frozen(regions[0])
    try:
        started = time.monotonic()
        results = [await limiter.limit("hal") for _ in range(5)]
        assert all(r.success and r.reason is None for r in results)
        assert time.monotonic() - started < 1.0
        # The silent region's last call waits for its 0.5 s timeout: not done yet.
        assert not await limiter.flush(0)
        assert await limiter.flush(10)  # waiting stopped, the work went on
    finally:
        _thawed(regions[0])
        await limiter.close()
        for conn in conns:
            await conn.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("sliding", [False, True], ids=["fixed", "sliding"])
def test_over_admission_with_processes_hammering_one_identifier(
    regions: list[EmbeddedRedis], sliding: bool
) -> None:
    prefix, limit, processes, calls = _prefix(), 100, 4, 80
    urls = [server.url for server in regions]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        jobs = [
            pool.submit(hammer, urls, prefix, "ivy", limit, calls, sliding)
            for _ in range(processes)
        ]
        admitted = sum(job.result(timeout=120) for job in jobs)
    print(
        f"\nmulti-region over-admission ({'sliding' if sliding else 'fixed'}): "
        f"{admitted} admitted for a limit of {limit}, {processes} processes x {calls} calls"
    )
    # Every decision is sent to every region, so a region lags only by the writes not yet
    # applied there. A process has at most one decision waiting, but a region's writes from
    # earlier decisions may still queue in its pool (_WORKERS threads), more so on a loaded
    # machine: the excess stays within that many per process, far below the hard bound
    # (every region admitting the limit: regions x limit).
    lag = processes * _WORKERS
    assert admitted <= limit + lag
    # The other way, as in the JS SDK: a request that the first region to answer refused is
    # still written by a region that admitted it (the regions disagree near the limit), and
    # takes a place in the window that no caller was told was theirs. So the decisions told
    # "admitted" can fall short of the limit, by such places only: the window is full.
    held = []  # per region: request id -> cost, over the identifier's windows
    for server in regions:
        with server.client() as client:
            fields: dict[bytes, int] = {}
            for key in client.keys(f"{prefix}:ivy:*"):
                fields.update({k: int(v) for k, v in client.hgetall(key).items()})
            held.append(fields)
    union = {rid: cost for fields in held for rid, cost in fields.items()}
    written = sum(union.values())
    for fields in held:  # caught up, or full (a full region is not caught up: it refuses all)
        assert fields == union or sum(fields.values()) >= limit, (len(fields), len(union))
    assert limit <= written <= limit + lag, (written, admitted)
    assert limit - lag <= admitted <= written  # each admitted request holds a place
