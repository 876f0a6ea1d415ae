"""Multi-region rate limiting where regions are 3-master clusters, a server, or Upstash REST.

The third region is the standalone server, reached directly or through redkit's gateway with
the REST driver (as an Upstash database would be).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis.cluster

from redkit import Connection
from redkit.core.clock import VirtualClock
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.drivers.rest import RestConnection
from redkit.errors import InvalidArgumentError
from redkit.ratelimit import (
    AsyncMultiRegionRatelimit,
    FixedWindow,
    MultiRegionRatelimit,
    SlidingWindow,
)
from support.backends import REST_TOKEN

NOW_MS = 1_700_000_040_000  # a window boundary of a minute
MINUTE = 60_000

Region = EmbeddedCluster | EmbeddedRedis


@pytest.fixture(scope="module")
def second_cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(3) as cluster:
        yield cluster


@pytest.fixture
def regions(
    redis_cluster: EmbeddedCluster, second_cluster: EmbeddedCluster, redis_server: EmbeddedRedis
) -> list[Region]:
    """Two cluster regions and a standalone one: both key forms in one limiter."""
    return [redis_cluster, second_cluster, redis_server]


@pytest.fixture(params=["standalone", "rest"])
def connect(request: pytest.FixtureRequest) -> Callable[[Region], Connection | RestConnection]:
    """How a test reaches each region: the standalone one directly or over REST."""
    if request.param == "standalone":
        return lambda region: region.connect()
    gateway: str = request.getfixturevalue("rest_gateway")

    def through_gateway(region: Region) -> Connection | RestConnection:
        if isinstance(region, EmbeddedCluster):
            return region.connect()
        return RestConnection(gateway, token=REST_TOKEN, key_locking=True)

    return through_gateway


def _key(region: Region, prefix: str, identifier: str, bucket: int) -> str:
    if isinstance(region, EmbeddedCluster):
        return f"{prefix}:{{{identifier}}}:{bucket}"  # hash-tagged: one slot per identifier
    return f"{prefix}:{identifier}:{bucket}"


def _client(region: Region) -> redis.Redis | redis.cluster.RedisCluster:
    if isinstance(region, EmbeddedCluster):
        return redis.cluster.RedisCluster(host="127.0.0.1", port=region.ports[0])
    return region.client()


def _hashes(
    regions: list[Region], prefix: str, identifier: str, bucket: int
) -> list[dict[bytes, bytes]]:
    found = []
    for region in regions:
        with _client(region) as client:
            found.append(client.hgetall(_key(region, prefix, identifier, bucket)))
    return found


def test_cluster_regions_decide_converge_and_reset(
    regions: list[Region], connect: Callable[[Region], Connection | RestConnection]
) -> None:
    prefix = f"mrc{uuid.uuid4().hex[:8]}"
    conns = [connect(region) for region in regions]
    try:
        with MultiRegionRatelimit(
            conns, FixedWindow(5, "1 m"), prefix=prefix, ephemeral_cache=False,
            clock=VirtualClock(NOW_MS),
        ) as limiter:  # fmt: skip
            results = []
            for _ in range(7):  # each decision's writes waited for, as a JS handler's pending
                results.append(limiter.limit("ann"))
                assert results[-1].pending.wait(10)
                assert len(_hashes(regions, prefix, "ann", NOW_MS // MINUTE)[1]) == min(
                    len(results), 5
                ), "the handle completes once every region holds the request"
            assert [r.success for r in results] == [True] * 5 + [False] * 2
            assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
            hashes = _hashes(regions, prefix, "ann", NOW_MS // MINUTE)
            assert len(hashes[0]) == 5
            assert all(h == hashes[0] for h in hashes), "the same request ids in every region"
            assert limiter.reset("ann") == 3  # one key in each region
            assert limiter.get_remaining("ann").remaining == 5
            assert _hashes(regions, prefix, "ann", NOW_MS // MINUTE) == [{}, {}, {}]
    finally:
        for conn in conns:
            conn.close()


def test_async_sliding_window_on_cluster_regions_converges(
    regions: list[Region], connect: Callable[[Region], Connection | RestConnection]
) -> None:
    # A sliding window's script reads two windows' hashes: on a cluster region they must share
    # a slot, which the identifier's hash tag gives them.
    prefix = f"mrc{uuid.uuid4().hex[:8]}"
    now = NOW_MS + MINUTE // 2
    bucket = now // MINUTE

    async def scenario() -> None:
        conns = [connect(region) for region in regions]
        limiter = AsyncMultiRegionRatelimit(
            conns, SlidingWindow(10, "1 m"), prefix=prefix, ephemeral_cache=False,
            clock=VirtualClock(now),
        )  # fmt: skip
        try:
            for region in regions:  # 4 requests last window in every region: they weigh 2
                with _client(region) as client:
                    client.hset(
                        _key(region, prefix, "bo", bucket - 1),
                        mapping={f"old{i}": 1 for i in range(4)},
                    )
            results = []
            for _ in range(12):  # one at a time: each region admits the same 8
                results.append(await limiter.limit("bo"))
                await results[-1].pending
                counts = [len(h) for h in _hashes(regions, prefix, "bo", bucket)]
                assert counts == [sum(r.success for r in results)] * 3
            assert sum(r.success for r in results) == 8  # 10 - 2 for the previous window
            await limiter.close()
            hashes = _hashes(regions, prefix, "bo", bucket)
            assert len(hashes[0]) == 8
            assert all(h == hashes[0] for h in hashes)
            assert (await limiter.get_remaining("bo")).remaining == 0
        finally:
            for conn in conns:
                await conn.aclose()

    asyncio.run(scenario())


HOUR_MS = 3_600_000


def _events(regions: list[Region], prefix: str) -> list[dict[str, float]]:
    """Each region's analytics of the hour: Upstash's JSON event -> count."""
    key = f"{prefix}:events:{NOW_MS // HOUR_MS * HOUR_MS}"
    found = []
    for region in regions:
        with _client(region) as client:
            found.append({m.decode(): s for m, s in client.zrange(key, 0, -1, withscores=True)})
    return found


def _allowed_blocked(identifier: str) -> dict[str, float]:
    return {
        f'{{"identifier":"{identifier}","success":true}}': 3.0,
        f'{{"identifier":"{identifier}","success":false}}': 2.0,
    }


def test_analytics_go_to_the_first_region_in_upstashs_layout(
    regions: list[Region], connect: Callable[[Region], Connection | RestConnection]
) -> None:
    prefix = f"mrc{uuid.uuid4().hex[:8]}"
    conns = [connect(region) for region in regions]  # the first region is a cluster
    try:
        with MultiRegionRatelimit(
            conns, FixedWindow(3, "1 m"), prefix=prefix, clock=VirtualClock(NOW_MS),
            analytics=True,
        ) as limiter:  # fmt: skip
            for _ in range(3):
                allowed = limiter.limit("cy")
                assert allowed.success
                assert allowed.pending.wait(10)
            assert limiter.limit("cy").reason is None  # refused by the regions
            cached = limiter.limit("cy")
            assert cached.reason == "cacheBlock"  # refused from memory: counted too
            assert cached.pending.wait(10)  # its count sent (with the one before, or after it)
            assert _events(regions, prefix) == [_allowed_blocked("cy"), {}, {}]
            assert limiter.get_usage() == {"cy": {"allowed": 3, "blocked": 2, "denied": 0}}
            assert limiter.get_top() == {"allowed": [("cy", 3)], "blocked": [("cy", 2)]}
            hours = limiter.get_usage_over_time(2)
            assert hours[-1] == {"time": NOW_MS // HOUR_MS * HOUR_MS, "allowed": 3, "blocked": 2,
                                 "denied": 0}  # fmt: skip
        assert _events(regions, prefix) == [_allowed_blocked("cy"), {}, {}]
        with MultiRegionRatelimit(conns, FixedWindow(3, "1 m"), prefix=prefix) as off:
            with pytest.raises(InvalidArgumentError, match="analytics=True"):
                off.get_usage()
            with pytest.raises(InvalidArgumentError, match="hours"):
                MultiRegionRatelimit(conns, FixedWindow(3, "1 m"), analytics=True).get_usage(0)
    finally:
        for conn in conns:
            conn.close()


def test_async_analytics_on_a_standalone_or_rest_first_region(
    regions: list[Region], connect: Callable[[Region], Connection | RestConnection]
) -> None:
    prefix = f"mrc{uuid.uuid4().hex[:8]}"
    first_standalone = regions[::-1]

    async def scenario() -> None:
        conns = [connect(region) for region in first_standalone]
        limiter = AsyncMultiRegionRatelimit(
            conns, SlidingWindow(3, "1 m"), prefix=prefix, clock=VirtualClock(NOW_MS),
            analytics=True,
        )  # fmt: skip
        try:
            for _ in range(5):
                await limiter.limit("di")
                await limiter.flush()
            assert await limiter.get_usage() == {"di": {"allowed": 3, "blocked": 2, "denied": 0}}
            await limiter.close()
        finally:
            for conn in conns:
                await conn.aclose()

    asyncio.run(scenario())
    assert _events(first_standalone, prefix) == [_allowed_blocked("di"), {}, {}]
