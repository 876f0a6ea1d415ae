"""A JavaScript service and a Python service sharing single-region limits and analytics.

The JavaScript side is Upstash's own ``@upstash/ratelimit`` ``Ratelimit`` (npm) over
``@upstash/redis``, through a redkit gateway in front of the test's Redis; the Python side is
redkit's ``Ratelimit`` / ``AsyncRatelimit`` on the same server over RESP. For each algorithm
both ship, one identifier's requests count against one limit whichever side makes them, a
reset by either side resets both, and the analytics one writes the other reads.
(Standalone only: on a cluster redkit makes the identifier a hash tag, the SDK does not.)
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from redkit import AsyncRatelimit, Connection, Ratelimit
from redkit.drivers.embedded import EmbeddedRedis
from redkit.gateway import Gateway
from redkit.ratelimit import FixedWindow, Limiter, SlidingWindow, TokenBucket
from redkit.ratelimit.result import Remaining
from support.js_sdk import run_js, upstash_js
from support.web import serve_asgi

TOKEN = "js-interop-" + "t" * 32
HOUR_MS = 3_600_000
#: The SDK's static constructor with its arguments, and redkit's limiter of the same meaning.
ALGORITHMS: dict[str, tuple[list[Any], Limiter]] = {
    "fixed": (["fixedWindow", 10, "1 h"], FixedWindow(10, "1 h")),
    "sliding": (["slidingWindow", 10, "1 h"], SlidingWindow(10, "1 h")),
    "token": (["tokenBucket", 1, "1 h", 10], TokenBucket(1, "1 h", 10)),
}


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    upstash_js()  # installs the SDKs, or skips the module saying why
    with EmbeddedRedis() as own:
        yield own


@pytest.fixture(scope="module")
def rest_url(server: EmbeddedRedis) -> Iterator[str]:
    with serve_asgi(Gateway.for_redis(server.url, TOKEN)) as url:
        yield url


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix, and an hour (the windows' length) that does not end in the test."""
    left_ms = HOUR_MS - int(time.time() * 1000) % HOUR_MS
    if left_ms < 30_000:
        time.sleep(left_ms / 1000 + 0.05)
    return f"js{uuid.uuid4().hex[:8]}"


class Python:
    """redkit's limiter on ``server``, blocking or asyncio, called as if blocking."""

    def __init__(self, server: EmbeddedRedis, algorithm: str, prefix: str, mode: str) -> None:
        self.conn: Connection = server.connect()
        options: dict[str, Any] = {"prefix": prefix, "ephemeral_cache": False, "analytics": True}
        limiter = ALGORITHMS[algorithm][1]
        self.mode = mode
        if mode == "sync":
            self.sync = Ratelimit(self.conn, limiter, **options)
        else:
            self.loop = asyncio.new_event_loop()
            self.aio = AsyncRatelimit(self.conn, limiter, **options)

    def call(self, name: str, *args: Any) -> Any:
        if self.mode == "sync":
            return getattr(self.sync, name)(*args)
        return self.loop.run_until_complete(getattr(self.aio, name)(*args))

    def limit(self, identifier: str, calls: int) -> list[bool]:
        return [self.call("limit", identifier).success for _ in range(calls)]

    def close(self) -> None:
        if self.mode == "sync":
            self.sync.close()
        else:
            self.loop.run_until_complete(self.aio.close())
            self.loop.run_until_complete(self.conn.aclose())
            self.loop.close()
        self.conn.close()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def js(rest_url: str, algorithm: str, prefix: str, actions: list[str]) -> list[Any]:
    answers = run_js(
        "ratelimit.cjs",
        {
            "RK_URL": rest_url,
            "RK_TOKEN": TOKEN,
            "RK_PREFIX": prefix,
            "RK_IDENTIFIER": "user:1",
            "RK_LIMITER": json.dumps(ALGORITHMS[algorithm][0]),
            "RK_ACTIONS": json.dumps(actions),
            "RK_ANALYTICS": "1",
        },
    )
    assert isinstance(answers, list)
    return answers


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_one_limit_whichever_side_decides(
    server: EmbeddedRedis, rest_url: str, prefix: str, algorithm: str, mode: str
) -> None:
    python = Python(server, algorithm, prefix, mode)
    try:
        taken = js(rest_url, algorithm, prefix, ["limit"] * 6)
        assert [answer["success"] for answer in taken] == [True] * 6
        assert taken[-1]["remaining"] == 4

        left = python.call("get_remaining", "user:1")
        assert isinstance(left, Remaining)
        assert (left.remaining, left.limit) == (4, 10)
        assert python.limit("user:1", 5) == [True] * 4 + [False]

        remaining, refused = js(rest_url, algorithm, prefix, ["remaining", "limit"])
        assert remaining["remaining"] == 0
        assert refused["success"] is False

        # A reset by either side frees the identifier for both.
        python.call("reset", "user:1")
        again = js(rest_url, algorithm, prefix, ["limit"])[0]
        assert (again["success"], again["remaining"]) == (True, 9)
        # Both read the same state: the same remaining, and the same end of window / refill.
        seen = python.call("get_remaining", "user:1")
        assert (seen.remaining, seen.reset) == (9, again["reset"])
        js(rest_url, algorithm, prefix, ["reset"])
        assert python.call("get_remaining", "user:1").remaining == 10
    finally:
        python.close()


def test_each_side_reads_the_analytics_the_other_wrote(
    server: EmbeddedRedis, rest_url: str, prefix: str, mode: str
) -> None:
    python = Python(server, "fixed", prefix, mode)
    try:
        js(rest_url, "fixed", prefix, ["limit"] * 12)  # 10 allowed, 2 blocked, counted by JS
        assert python.limit("user:1", 1) == [False]  # counted by redkit
        python.call("flush")
        usage = python.call("get_usage", 1)
        assert usage["user:1"]["allowed"] == 10
        assert usage["user:1"]["blocked"] == 3
    finally:
        python.close()
