"""A Redis that is slow, hung or down: the limiter answers in time, per its policy."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from redkit import FixedWindow, SlidingWindow, TokenBucket, connect
from redkit.drivers.embedded import EmbeddedRedis
from support.backends import BackendCase
from support.loop import LoopThread
from support.probes import closed_port

# Generous against a loaded 2-core machine, yet far below the connection's own 5 s timeout.
MARGIN = 1.5


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


def backend_for(url: str, mode: str, loop: LoopThread) -> BackendCase:
    topology = "cluster" if "+cluster" in url else "standalone"
    return BackendCase(connect(url), topology=topology, mode=mode, loop=loop)


@pytest.mark.parametrize("policy", ["allow", "deny"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hung_redis_gets_a_timely_timeout_answer(
    hung_port: int, mode: str, policy: str, loop_thread: LoopThread
) -> None:
    backend = backend_for(f"redis://127.0.0.1:{hung_port}", mode, loop_thread)
    rl = backend.ratelimit(SlidingWindow(10, "10 s"), timeout=0.3, on_timeout=policy)
    for _ in range(2):  # also once a (dead) connection sits in the pool
        result, took = timed(rl.limit, "user")
        assert (result.success, result.reason) == (policy == "allow", "timeout")
        assert (result.limit, result.remaining, result.reset) == (10, 0, 0)
        assert 0.2 < took < 0.3 + MARGIN
    many, took = timed(rl.limit_many, ["a", "b", "c"])
    assert [r.reason for r in many] == ["timeout"] * 3
    assert took < 0.3 + MARGIN


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}", "redis+cluster://127.0.0.1:{port}"])
@pytest.mark.parametrize("policy", ["allow", "deny"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_is_down_gets_a_timeout_answer(
    url: str, mode: str, policy: str, loop_thread: LoopThread
) -> None:
    backend = backend_for(url.format(port=closed_port()), mode, loop_thread)
    rl = backend.ratelimit(TokenBucket(1, "1 s", 5), timeout=0.5, on_timeout=policy)
    result, took = timed(rl.limit, "user")
    assert (result.success, result.reason) == (policy == "allow", "timeout")
    assert took < 0.5 + MARGIN


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_paused_redis_times_out_then_recovers(mode: str, loop_thread: LoopThread) -> None:
    with EmbeddedRedis() as server:
        backend = BackendCase(server.connect(), topology="standalone", mode=mode, loop=loop_thread)
        rl = backend.ratelimit(FixedWindow(100, "1 h"), timeout=0.4, on_timeout="deny")
        assert rl.limit("user").reason is None  # a pooled connection now exists
        os.kill(server.pid, signal.SIGSTOP)
        try:
            result, took = timed(rl.limit, "user")
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert (result.success, result.reason) == (False, "timeout")
        assert 0.3 < took < 0.4 + MARGIN
        # The late reply is dropped with its connection: the next answers are Redis's again.
        after = rl.limit("user")
        assert (after.success, after.reason) == (True, None)
        assert after.remaining in (97, 98)  # the timed-out request may or may not have counted
        if backend.is_async:
            loop_thread.run(backend.conn.aclose())
        backend.conn.close()


def test_a_slow_script_is_a_timeout_on_the_cluster_too(
    redis_cluster: Any, loop_thread: LoopThread
) -> None:
    # Pause the one node that owns the identifier: the others go on answering.
    backend = BackendCase(
        redis_cluster.connect(), topology="cluster", mode="sync", loop=loop_thread
    )
    rl = backend.ratelimit(FixedWindow(100, "1 h"), timeout=0.4)
    assert rl.limit("paused").reason is None
    assert rl.limit("other").reason is None
    admin = backend.admin
    owner = admin.get_node_from_key("@upstash/ratelimit:{paused}")
    pid = next(
        p for p, port in zip(redis_cluster.pids, redis_cluster.ports, strict=True)
        if port == owner.port
    )  # fmt: skip
    other_owner = admin.get_node_from_key("@upstash/ratelimit:{other}")
    os.kill(pid, signal.SIGSTOP)
    try:
        result, took = timed(rl.limit, "paused")
        other = rl.limit("other") if other_owner.port != owner.port else None
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (result.success, result.reason) == (True, "timeout")
    assert took < 0.4 + 0.5  # no retries: a retry would wait again, and send the script again
    if other is not None:
        assert other.reason is None
    # Once the node runs again, the timed-out request counted once at most.
    assert rl.get_remaining("paused").remaining in (98, 99)
    backend.conn.close()
