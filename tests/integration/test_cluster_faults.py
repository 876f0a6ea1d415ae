"""One cluster master stalls (SIGSTOP): the keys of the healthy masters keep being served.

A stalled master is worse than a dead one: its socket accepts and never answers, so every
operation sent there waits out its timeout. What it must not do is reach the other masters:
not through the cache's circuit breaker (one circuit per node), not through the client's
topology refresh, and not through the server (the embedded cluster runs with
``cluster-require-full-coverage no``; with it on, Redis itself stops every master, and the
error says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redkit import AsyncRatelimit, FixedWindow, Ratelimit
from redkit.cache import AsyncCache, Cache
from redkit.core.errors import BackendTimeout, BackendUnavailable
from redkit.core.ops import command
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedCluster
from support.loop import LoopThread

#: Seconds each operation may wait: short, so that the stalled node costs little test time.
TIMEOUT = 0.5
#: The embedded cluster's node timeout is 2 s: past it the others flag the stalled one FAIL.
PAST_NODE_TIMEOUT = 2.5


@pytest.fixture(scope="module")
def cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster() as cluster:
        yield cluster


@pytest.fixture
def conn(cluster: EmbeddedCluster, loop_thread: LoopThread) -> Iterator[Connection]:
    """A connection of short timeouts to the cluster, closed after (both drivers)."""
    conn = Connection(cluster.url, socket_timeout=TIMEOUT)
    yield conn
    loop_thread.run(conn.aclose())
    conn.close()
    # redis-py 8.1's cluster clients (blocking and asyncio), after a master stalled, drop
    # connections and node objects to it without closing their sockets. Collected here, where
    # that is known and ignored, and not in whichever test happens to run next.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def _owner(cluster: EmbeddedCluster) -> redis.cluster.RedisCluster:
    return redis.cluster.RedisCluster(host="127.0.0.1", port=cluster.ports[0])


def split_keys(cluster: EmbeddedCluster, stalled: int, make: Any) -> tuple[list[str], list[str]]:
    """Names whose key (``make(name)``) is on the stalled node's port, and the others."""
    with contextlib.closing(_owner(cluster)) as probe:
        on_stalled, healthy = [], []
        for n in range(400):
            name = f"k{n}"
            port = probe.get_node_from_key(make(name)).port
            (on_stalled if port == stalled else healthy).append(name)
    return on_stalled[:20], healthy[:20]


@contextlib.contextmanager
def stalled_master(cluster: EmbeddedCluster, index: int = 2) -> Iterator[None]:
    """Freeze one master past the node timeout; thaw it and wait for the cluster after."""
    pid = cluster.pids[index]
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(PAST_NODE_TIMEOUT)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 30
        for client in cluster.node_clients(socket_timeout=5.0):
            with client:
                while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    assert time.monotonic() < deadline, "the cluster did not heal"
                    time.sleep(0.1)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_commands_on_healthy_masters_succeed_while_one_stalls(
    cluster: EmbeddedCluster, conn: Connection, mode: str, loop_thread: LoopThread
) -> None:
    stalled, healthy = split_keys(cluster, cluster.ports[2], lambda name: name)
    if mode == "sync":
        driver: Any = conn.sync_driver(timeout=TIMEOUT)

        def run(op: Any) -> Any:
            return driver.execute(op)
    else:

        def run(op: Any) -> Any:
            async def go() -> Any:
                return await conn.async_driver(timeout=TIMEOUT).execute(op)

            return loop_thread.run(go())

    for name in healthy:
        run(command("SET", name, "v"))
    with stalled_master(cluster):
        outcomes = []
        # Interleaved: every timeout on the stalled node is followed by a healthy key.
        for bad, good in zip(stalled[:6], healthy[:6], strict=True):
            started = time.monotonic()
            with pytest.raises(BackendTimeout):
                run(command("GET", bad))
            outcomes.append(time.monotonic() - started)
            assert run(command("GET", good)) == b"v"
        assert [run(command("GET", name)) for name in healthy] == [b"v"] * len(healthy)
        # Each wait on the stalled node is one timeout, not a retry after another.
        assert max(outcomes) < TIMEOUT * 2 + 1.0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_cache_breaker_opens_for_the_stalled_node_only(
    cluster: EmbeddedCluster, conn: Connection, mode: str, loop_thread: LoopThread
) -> None:
    stalled, healthy = split_keys(cluster, cluster.ports[2], lambda name: f"f:g0:{name}")
    if mode == "sync":
        cache: Any = Cache(conn, namespace="f", timeout=TIMEOUT)
        for name in healthy:
            cache.set(name, "cached")
        with stalled_master(cluster):
            # Threads, as a gthread worker would: the stalled keys' failures come in a burst.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(8) as pool:
                during = list(pool.map(lambda k: cache.get(k, default="miss"), stalled))
            after = [cache.get(name, default="miss") for name in healthy]
            routes = cache.breaker.open_routes()
    else:

        async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
            cache = AsyncCache(conn, namespace="f", timeout=TIMEOUT)
            for name in healthy:
                await cache.set(name, "cached")
            with stalled_master(cluster):  # the loop thread is this test's: blocking it is fine
                during = await asyncio.gather(*(cache.get(k, default="miss") for k in stalled))
                after = [await cache.get(name, default="miss") for name in healthy]
                routes = cache.breaker.open_routes()
            return list(during), after, routes

        during, after, routes = loop_thread.run(scenario())
    assert during == ["miss"] * len(stalled)
    assert after == ["cached"] * len(healthy)  # before the fix: every read a miss
    assert routes == [f"127.0.0.1:{cluster.ports[2]}"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_rate_limits_of_ids_on_healthy_masters_decide_while_one_stalls(
    cluster: EmbeddedCluster, conn: Connection, mode: str, loop_thread: LoopThread
) -> None:
    # The cluster layout puts an identifier in a hash tag: its slot is that of "{id}".
    stalled, healthy = split_keys(cluster, cluster.ports[2], lambda name: f"{{{name}}}")
    limit = FixedWindow(100, "1 m")
    if mode == "sync":
        limiter = Ratelimit(conn, limit, prefix="stall", timeout=TIMEOUT)
        with stalled_master(cluster):
            bad = [limiter.limit(name).reason for name in stalled[:4]]
            good = [limiter.limit(name) for name in healthy]
    else:

        async def scenario() -> tuple[list[Any], list[Any]]:
            limiter = AsyncRatelimit(conn, limit, prefix="stall", timeout=TIMEOUT)
            with stalled_master(cluster):
                bad = [(await limiter.limit(name)).reason for name in stalled[:4]]
                good = list(await asyncio.gather(*(limiter.limit(n) for n in healthy)))
            return bad, good

        bad, good = loop_thread.run(scenario())
    assert bad == ["timeout"] * 4
    assert [(r.success, r.reason) for r in good] == [(True, None)] * len(healthy)


def test_a_cluster_requiring_full_coverage_says_how_to_keep_serving() -> None:
    """With ``cluster-require-full-coverage yes`` Redis stops every master: the error says so."""
    with EmbeddedCluster(extra_args=["--cluster-require-full-coverage", "yes"]) as cluster:
        _, healthy = split_keys(cluster, cluster.ports[2], lambda name: name)
        conn = Connection(cluster.url, socket_timeout=TIMEOUT)
        driver = conn.sync_driver(timeout=TIMEOUT)
        driver.execute(command("SET", healthy[0], "v"))
        os.kill(cluster.pids[2], signal.SIGSTOP)
        message = ""
        try:
            deadline = time.monotonic() + 20
            while not message:  # until the healthy masters flag the stalled one FAIL
                try:
                    driver.execute(command("GET", healthy[0]))
                except BackendUnavailable as exc:
                    message = str(exc)
                assert time.monotonic() < deadline, "the cluster never went down"
                time.sleep(0.2)
        finally:
            os.kill(cluster.pids[2], signal.SIGCONT)
            conn.close()
        assert "CLUSTERDOWN" in message
        assert "cluster-require-full-coverage no" in message
