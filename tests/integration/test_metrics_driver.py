"""The drivers' metrics on real servers: round trips, commands, errors, the breaker's circuits."""

from __future__ import annotations

import asyncio
import socket

import pytest

from redkit import Cache
from redkit.core.ops import Pipeline, command
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedRedis
from redkit.errors import BackendTimeout, BackendUnavailable
from redkit.metrics import PrometheusMetrics
from support.backends import BackendCase
from support.loop import LoopThread
from support.metrics import prom as prom  # the fixture
from support.metrics import value


def test_one_round_trip_an_operation_and_a_pipeline_is_one(
    backend: BackendCase, prom: PrometheusMetrics
) -> None:
    backend.execute(command("PING"))  # connected (and, on a cluster, the slots learnt)
    kind = backend.topology
    trips = value(prom, "redkit_driver_round_trips_total", driver=kind)
    commands = value(prom, "redkit_driver_commands_total", driver=kind)
    for n in range(5):
        backend.execute(command("SET", f"metrics:{n}", "v"))
    items = (command("SET", "{m}a", "1"), command("SET", "{m}b", "2"), command("GET", "{m}a"))
    assert backend.execute(Pipeline(items))[2] == b"1"
    assert value(prom, "redkit_driver_round_trips_total", driver=kind) - trips == 6
    assert value(prom, "redkit_driver_commands_total", driver=kind) - commands == 8
    assert value(prom, "redkit_driver_errors_total", driver=kind) == 0
    assert value(prom, "redkit_driver_timeouts_total", driver=kind) == 0


def test_an_auto_pipelined_batch_is_one_round_trip(
    redis_server: EmbeddedRedis, loop_thread: LoopThread, prom: PrometheusMetrics
) -> None:
    conn = Connection(redis_server.url, autopipeline=True)

    async def fifty() -> None:
        driver = conn.async_driver()
        await driver.execute(command("PING"))
        await asyncio.gather(*(driver.execute(command("INCR", "metrics:n")) for _ in range(50)))

    try:
        trips = value(prom, "redkit_driver_round_trips_total", driver="standalone")
        loop_thread.run(fifty())
    finally:
        loop_thread.run(conn.aclose())
    done = value(prom, "redkit_driver_round_trips_total", driver="standalone") - trips
    assert done < 10  # 51 commands, in a few writes (one a loop pass)
    assert value(prom, "redkit_driver_commands_total", driver="standalone") == 51


def test_a_server_that_is_gone_counts_errors_and_one_opening(
    prom: PrometheusMetrics, loop_thread: LoopThread
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    conn = Connection(f"redis://127.0.0.1:{port}")
    cache = Cache(conn, namespace="gone")
    try:
        for _ in range(8):  # 5 in a row open the circuit; the next 3 are refused at once
            assert cache.get_or_set("k", lambda: "loaded") == "loaded"
    finally:
        conn.close()
    assert cache.breaker.is_open
    errors = value(prom, "redkit_driver_errors_total", driver="standalone")
    assert errors == 5  # the refused ones never reached the driver
    assert value(prom, "redkit_driver_circuit_openings_total", driver="standalone") == 1
    assert value(prom, "redkit_driver_open_circuits", driver="standalone") == 1


def test_a_server_that_never_answers_counts_timeouts(prom: PrometheusMetrics) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections (the kernel does), never answers
        conn = Connection(f"redis://127.0.0.1:{silent.getsockname()[1]}", socket_timeout=0.2)
        try:
            with pytest.raises((BackendTimeout, BackendUnavailable)) as raised:
                conn.sync_driver().execute(command("PING"))
        finally:
            conn.close()
    counted = "timeouts" if isinstance(raised.value, BackendTimeout) else "errors"
    assert value(prom, f"redkit_driver_{counted}_total", driver="standalone") == 1
