"""Fixtures: real Redis servers started from the embedded binary, once per test session.

``backend`` runs a test four times: on a standalone server and on a 3-master cluster, each
through the sync and the async driver. Every key is removed before each test.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator

import pytest

from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from support import Backend, LoopThread


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


@pytest.fixture(
    params=["standalone-sync", "standalone-async", "cluster-sync", "cluster-async"],
)
def backend(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Backend:
    topology, mode = request.param.split("-")
    if topology == "cluster":
        request.getfixturevalue("redis_cluster").flushall()
        conn = request.getfixturevalue("cluster_conn")
    else:
        with request.getfixturevalue("redis_server").client() as admin:
            admin.flushall()
        conn = request.getfixturevalue("standalone_conn")
    return Backend(conn, topology=topology, mode=mode, loop=loop_thread)


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
