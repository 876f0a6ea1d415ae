"""A JavaScript service and a Python service sharing multi-region limits.

The JavaScript side is Upstash's own ``@upstash/ratelimit`` ``MultiRegionRatelimit`` (npm),
over ``@upstash/redis`` clients, one per region, each pointed at a redkit gateway in front of
that region's Redis; the Python side is redkit's ``MultiRegionRatelimit`` /
``AsyncMultiRegionRatelimit`` on the same servers over RESP. They must count against the same
limit, write the same keys, and catch up each other's regions.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from redkit import Connection
from redkit.drivers.embedded import EmbeddedRedis
from redkit.gateway import Gateway
from redkit.ratelimit import (
    AsyncMultiRegionRatelimit,
    FixedWindow,
    MultiRegionRatelimit,
    SlidingWindow,
)
from support.js_sdk import installed_version, run_js, upstash_js
from support.web import serve_asgi

TOKEN = "js-interop-" + "t" * 32
LIMIT = 10
WINDOW_MS = 3_600_000  # "1 h", in both languages
ALGORITHMS = {"fixed": FixedWindow, "sliding": SlidingWindow}


class Region:
    """One region: its Redis, and the gateway that the JavaScript SDK reaches it through."""

    def __init__(self, server: EmbeddedRedis, rest_url: str) -> None:
        self.server = server
        self.rest_url = rest_url

    def hashes(self, prefix: str) -> dict[bytes, dict[bytes, bytes]]:
        """Every key under ``prefix`` in this region, with its fields (all are hashes)."""
        with self.server.client() as client:
            return {key: client.hgetall(key) for key in client.scan_iter(f"{prefix}:*")}


@pytest.fixture(scope="module")
def regions() -> Iterator[list[Region]]:
    upstash_js()  # installs the SDKs, or skips the module saying why
    with ExitStack() as stack:
        servers = [stack.enter_context(EmbeddedRedis()) for _ in range(2)]
        yield [
            Region(server, stack.enter_context(serve_asgi(Gateway.for_redis(server.url, TOKEN))))
            for server in servers
        ]


@pytest.fixture
def conns(regions: list[Region]) -> Iterator[list[Connection]]:
    connections = [region.server.connect() for region in regions]
    yield connections
    for connection in connections:
        connection.close()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix, and a window that does not end during the test."""
    left_ms = WINDOW_MS - int(time.time() * 1000) % WINDOW_MS
    if left_ms < 30_000:
        time.sleep(left_ms / 1000 + 0.05)  # both sides must be in one window
    return f"js{uuid.uuid4().hex[:8]}"


def js_limit(
    regions: list[Region], algorithm: str, prefix: str, identifier: str, calls: int
) -> list[dict[str, Any]]:
    """``calls`` decisions by @upstash/ratelimit over ``regions``, each one's pending awaited."""
    answers = run_js(
        "multiregion.cjs",
        {
            "RK_URLS": ",".join(region.rest_url for region in regions),
            "RK_TOKEN": TOKEN,
            "RK_ALGORITHM": algorithm,
            "RK_LIMIT": str(LIMIT),
            "RK_WINDOW": "1 h",
            "RK_PREFIX": prefix,
            "RK_IDENTIFIER": identifier,
            "RK_CALLS": str(calls),
        },
    )
    assert isinstance(answers, list)
    return answers


def py_limit(
    conns: list[Connection], algorithm: str, prefix: str, identifier: str, calls: int, mode: str
) -> list[bool]:
    """``calls`` decisions by redkit over ``conns`` (blocking or asyncio).

    Each decision's ``pending`` is waited for before the next, as the JavaScript side awaits
    each ``pending``: otherwise the regions may see one client's requests in different
    orders, and the limit holds only within the bound docs/multiregion.md states.
    """
    limiter = ALGORITHMS[algorithm](LIMIT, "1 h")
    answers = []
    if mode == "sync":
        with MultiRegionRatelimit(conns, limiter, prefix=prefix, ephemeral_cache=False) as rl:
            for _ in range(calls):
                result = rl.limit(identifier)
                answers.append(result.success)
                assert result.pending.wait(timeout=10)
        return answers

    async def run() -> list[bool]:
        rl = AsyncMultiRegionRatelimit(conns, limiter, prefix=prefix, ephemeral_cache=False)
        try:
            for _ in range(calls):
                result = await rl.limit(identifier)
                answers.append(result.success)
                await result.pending
            return answers
        finally:
            await rl.close()
            for conn in conns:
                await conn.aclose()

    return asyncio.run(run())


def test_the_sdks_are_the_current_majors(regions: list[Region]) -> None:
    assert installed_version("@upstash/ratelimit").startswith("2.")
    assert installed_version("@upstash/redis").startswith("1.")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("algorithm", ["fixed", "sliding"])
def test_a_js_and_a_python_service_count_against_one_limit(
    regions: list[Region], conns: list[Connection], prefix: str, algorithm: str, mode: str
) -> None:
    js = js_limit(regions, algorithm, prefix, "user:1", 6)
    assert [answer["success"] for answer in js] == [True] * 6
    assert js[-1]["remaining"] == LIMIT - 6

    # The Python service sees the 6 and admits only what is left of the limit...
    assert py_limit(conns, algorithm, prefix, "user:1", 6, mode) == [True] * 4 + [False] * 2
    # ...and the JavaScript one then sees the Python service's 4.
    refused = js_limit(regions, algorithm, prefix, "user:1", 2)
    assert [answer["success"] for answer in refused] == [False, False]

    # One key per window, the same in both regions: the 10 admitted requests, each costing 1.
    # The SDK's fixed window also writes each request it refuses in Redis (its sliding window
    # and redkit write none), except those its ephemeral cache refuses without a round trip.
    window = int(time.time() * 1000) // WINDOW_MS
    expected_key = f"{prefix}:user:1:{window}".encode()
    first, second = (region.hashes(prefix) for region in regions)
    assert list(first) == [expected_key]
    assert first == second
    written = sum(1 for answer in refused if answer["reason"] != "cacheBlock")
    expected = LIMIT + (written if algorithm == "fixed" else 0)
    assert sorted(first[expected_key].values()) == [b"1"] * expected


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_catches_up_the_region_the_other_missed(
    regions: list[Region], conns: list[Connection], prefix: str, mode: str
) -> None:
    # The Python service reached only region 0 (region 1 was cut off from it)...
    assert py_limit(conns[:1], "fixed", prefix, "user:2", 3, mode) == [True] * 3
    assert regions[1].hashes(prefix) == {}
    # ...the JavaScript SDK's catch-up copies its requests to region 1.
    assert [answer["success"] for answer in js_limit(regions, "fixed", prefix, "user:2", 1)] == [
        True
    ]
    first, second = (region.hashes(prefix) for region in regions)
    assert first == second
    assert len(next(iter(first.values()))) == 4

    # The other way round: the JavaScript service reached only region 1...
    assert [
        answer["success"] for answer in js_limit(regions[1:], "fixed", prefix, "user:3", 2)
    ] == [
        True,
        True,
    ]
    # ...and redkit's catch-up copies those to region 0.
    assert py_limit(conns, "fixed", prefix, "user:3", 1, mode) == [True]
    first, second = (region.hashes(prefix) for region in regions)
    assert first == second
    assert {len(fields) for fields in first.values()} == {4, 3}
