"""Multi-region rate limiting with far regions: two of three behind a proxy adding latency."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redkit import Connection
from redkit.core.clock import VirtualClock
from redkit.drivers.embedded import EmbeddedRedis
from redkit.ratelimit import AsyncMultiRegionRatelimit, FixedWindow, MultiRegionRatelimit
from support.latency_proxy import LatencyProxy
from support.multiregion_worker import hammer_timed

LAG_MS = 300  # each way: a far region's round trip is 600 ms longer
NOW_MS = 1_700_000_040_000
MINUTE = 60_000


def _port(server: EmbeddedRedis) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def servers() -> Iterator[list[EmbeddedRedis]]:
    started = [EmbeddedRedis().start() for _ in range(3)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="module")
def urls(servers: list[EmbeddedRedis]) -> Iterator[list[str]]:
    """Region 0 near, regions 1 and 2 far (behind the proxy)."""
    with (
        LatencyProxy(_port(servers[1]), LAG_MS) as far1,
        LatencyProxy(_port(servers[2]), LAG_MS) as far2,
    ):
        yield [servers[0].url, far1.url, far2.url]


def _hashes(servers: list[EmbeddedRedis], key: str) -> list[dict[bytes, bytes]]:
    found = []
    for server in servers:
        with server.client() as client:
            found.append(client.hgetall(key))
    return found


def _limiter(kind: type[Any], conns: list[Connection], prefix: str) -> Any:
    return kind(
        conns, FixedWindow(25, "1 m"), prefix=prefix, ephemeral_cache=False,
        clock=VirtualClock(NOW_MS),
    )  # fmt: skip


def _check(servers: list[EmbeddedRedis], key: str, results: list[Any], slowest: float) -> None:
    # The near region answers every decision; the far ones' backlog is not waited for. A
    # decision that waited for a far region takes 2 * LAG at least; the margin below that is
    # for a loaded machine's pauses.
    assert slowest < 1.3 * LAG_MS / 1000
    assert [r.success for r in results] == [True] * 25 + [False] * 5
    hashes = _hashes(servers, key)
    assert len(hashes[0]) == 25
    assert all(h == hashes[0] for h in hashes), "every region caught up"


def test_the_proxy_adds_its_lag_to_each_round_trip(
    servers: list[EmbeddedRedis], urls: list[str]
) -> None:
    with redis.Redis.from_url(urls[1]) as client:
        client.ping()
        started = time.monotonic()
        client.ping()
        assert 2 * LAG_MS / 1000 <= time.monotonic() - started < 2 * LAG_MS / 1000 + 0.5


def test_far_regions_cost_a_decision_nothing_and_converge(
    servers: list[EmbeddedRedis], urls: list[str]
) -> None:
    prefix = f"lag{uuid.uuid4().hex[:8]}"
    conns = [Connection(url) for url in urls]
    limiter = _limiter(MultiRegionRatelimit, conns, prefix)
    try:
        limiter.get_remaining("kim")  # every connection made
        slowest, results = 0.0, []
        for _ in range(30):  # faster than the far regions can take: their calls queue up
            asked = time.monotonic()
            results.append(limiter.limit("kim"))
            slowest = max(slowest, time.monotonic() - asked)
        assert len(limiter.pending) > 0
        assert limiter.flush(30)
        _check(servers, f"{prefix}:kim:{NOW_MS // MINUTE}", results, slowest)
    finally:
        limiter.close()
        for conn in conns:
            conn.close()


def test_async_far_regions_cost_a_decision_nothing_and_converge(
    servers: list[EmbeddedRedis], urls: list[str]
) -> None:
    async def scenario() -> None:
        prefix = f"lag{uuid.uuid4().hex[:8]}"
        conns = [Connection(url) for url in urls]
        limiter = _limiter(AsyncMultiRegionRatelimit, conns, prefix)
        try:
            await limiter.get_remaining("lea")
            slowest, results = 0.0, []
            for _ in range(30):
                asked = time.monotonic()
                results.append(await limiter.limit("lea"))
                slowest = max(slowest, time.monotonic() - asked)
            assert limiter.pending
            await limiter.close()
            _check(servers, f"{prefix}:lea:{NOW_MS // MINUTE}", results, slowest)
        finally:
            for conn in conns:
                await conn.aclose()

    asyncio.run(scenario())


HOUR_MS = 3_600_000


def _seed_near_region(servers: list[EmbeddedRedis], key: str) -> None:
    """A request id the far regions lack: the decision's catch-up must copy it there."""
    with servers[0].client() as client:
        client.hset(key, "near-only-000000", 1)


def _check_written(servers: list[EmbeddedRedis], prefix: str, key: str, result: Any) -> None:
    """Right after the handle: every region holds the request and the catch-up; the count."""
    assert result.success
    hashes = _hashes(servers, key)
    assert len(hashes[0]) == 2
    assert b"near-only-000000" in hashes[0]
    assert all(h == hashes[0] for h in hashes), "written and caught up in every region"
    with servers[0].client() as client:  # the analytics, in the first region
        assert client.zcard(f"{prefix}:events:{NOW_MS // HOUR_MS * HOUR_MS}") == 1


def _analytic_limiter(kind: type[Any], conns: list[Connection], prefix: str) -> Any:
    return kind(
        conns, FixedWindow(25, "1 m"), prefix=prefix, clock=VirtualClock(NOW_MS), analytics=True
    )


def test_a_decisions_pending_completes_once_every_far_region_holds_it(
    servers: list[EmbeddedRedis], urls: list[str]
) -> None:
    prefix = f"lag{uuid.uuid4().hex[:8]}"
    key = f"{prefix}:pia:{NOW_MS // MINUTE}"
    conns = [Connection(url) for url in urls]
    limiter = _analytic_limiter(MultiRegionRatelimit, conns, prefix)
    try:
        limiter.get_remaining("pia")  # every connection made
        _seed_near_region(servers, key)
        result = limiter.limit("pia")  # the near region answers: the far ones are 600 ms away
        assert not result.pending.done()
        assert result.pending.wait(30)
        _check_written(servers, prefix, key, result)
        # The handle completes just before its parts leave the limiter's count: wait for it.
        assert limiter.pending.wait(5)
        assert len(limiter.pending) == 0
    finally:
        limiter.close()
        for conn in conns:
            conn.close()


def test_async_a_decisions_pending_completes_once_every_far_region_holds_it(
    servers: list[EmbeddedRedis], urls: list[str]
) -> None:
    async def scenario() -> None:
        prefix = f"lag{uuid.uuid4().hex[:8]}"
        key = f"{prefix}:quin:{NOW_MS // MINUTE}"
        conns = [Connection(url) for url in urls]
        limiter = _analytic_limiter(AsyncMultiRegionRatelimit, conns, prefix)
        try:
            await limiter.get_remaining("quin")
            _seed_near_region(servers, key)
            result = await limiter.limit("quin")
            assert not result.pending.done()
            await asyncio.wait_for(result.pending, 30)
            _check_written(servers, prefix, key, result)
            await limiter.close()
        finally:
            for conn in conns:
                await conn.aclose()

    asyncio.run(scenario())


@pytest.mark.slow
def test_processes_hammering_with_far_regions_stay_within_the_bound(
    servers: list[EmbeddedRedis], urls: list[str]
) -> None:
    prefix, limit, processes, calls = f"lag{uuid.uuid4().hex[:8]}", 100, 3, 80
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context) as pool:
        start_at = time.time() + 3.0  # past the workers' start-up
        jobs = [
            pool.submit(hammer_timed, urls, prefix, "max", limit, calls, False, start_at)
            for _ in range(processes)
        ]
        seen = [job.result(timeout=120) for job in jobs]
    admitted = sum(s.admitted for s in seen)
    print(f"\nfar regions ({LAG_MS} ms each way): {admitted} admitted for a limit of {limit}")
    # Every process's near region is the same one: it decides every request, as a single
    # Redis would, so the far regions' lag adds nothing but the requests in flight.
    assert limit <= admitted <= limit + processes
    assert max(s.slowest for s in seen) < 2 * LAG_MS / 1000
