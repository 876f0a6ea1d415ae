"""The concurrency limiter across processes: never more holders than allowed; crashes heal."""

from __future__ import annotations

import multiprocessing
import queue
import time
from typing import Any

import pytest

from redkit import connect
from redkit.ratelimit.concurrency import Concurrency, ConcurrencyLimit
from support.backends import autopipelined
from support.workers.concurrency import acquire_and_die, hold_and_release

MAX_IN_FLIGHT = 3
# Two processes with threads, one with asyncio tasks: 12 would-be holders for 3 slots.
PROCESSES = [("threads", 4), ("threads", 4), ("tasks", 4)]
# On auto-pipelining connections (asyncio only): two processes of tasks, one of threads.
AUTOPIPELINED_PROCESSES = [("tasks", 4), ("tasks", 4), ("threads", 4)]
ATTEMPTS = 40


def server_for(topology: str, request: pytest.FixtureRequest) -> Any:
    if topology == "cluster":
        server = request.getfixturevalue("redis_cluster")
        server.flushall()
    else:
        server = request.getfixturevalue("redis_server")
        with server.client() as admin:
            admin.flushall()
    return server


def collect(results: Any, count: int, processes: list[Any], deadline: float) -> list[Any]:
    """``count`` reports from ``results``, failing early when a worker process failed."""
    reports = []
    while len(reports) < count:
        try:
            reports.append(results.get(timeout=0.2))
        except queue.Empty:
            failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not failed, f"a worker process failed (exit codes {failed})"
            assert time.monotonic() < deadline, "the workers did not report in time"
    return reports


@pytest.mark.slow
@pytest.mark.parametrize("autopipeline", [False, True], ids=["plain", "autopipelined"])
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_processes_never_hold_more_than_max_in_flight(
    topology: str, autopipeline: bool, request: pytest.FixtureRequest
) -> None:
    server = server_for(topology, request)
    layout = PROCESSES
    if autopipeline:
        autopipelined(server.url)  # skips where it is refused yet
        layout = AUTOPIPELINED_PROCESSES
    counter = "holders"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(layout))
    results: Any = context.Queue()
    limit = ConcurrencyLimit(MAX_IN_FLIGHT, "30 s")
    processes = [
        context.Process(
            target=hold_and_release,
            args=(server.url, limit, "job", counter, mode, workers, ATTEMPTS, barrier, results),
            kwargs={"autopipeline": autopipeline},
        )
        for mode, workers in layout
    ]
    for process in processes:
        process.start()
    try:
        reports = collect(results, len(layout), processes, time.monotonic() + 60)
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * len(processes)

    seen = [holders for report, _ in reports for holders in report]
    refused = sum(refusals for _, refusals in reports)
    # Each INCR result is at most the number of holders at that moment.
    assert max(seen) <= MAX_IN_FLIGHT
    # The limiter was really contended: slots were shared, and callers were turned away.
    assert max(seen) >= 2
    assert refused > 0
    assert len(seen) + refused == sum(w for _, w in layout) * ATTEMPTS
    # Every holder released: no slot is left taken, and the key is gone with its last lease.
    with connect(server.url) as conn:
        assert Concurrency(conn, limit).in_flight("job") == 0
        assert conn.sync_driver().client.get(counter) == b"0"


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_a_crashed_holders_slot_frees_itself_when_its_lease_ends(
    topology: str, request: pytest.FixtureRequest
) -> None:
    server = server_for(topology, request)
    limit = ConcurrencyLimit(1, "1 s")  # real time: the lease ends on the server's clock
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    process = context.Process(target=acquire_and_die, args=(server.url, limit, "job", results))
    process.start()
    try:
        [(success, token, expires_at)] = collect(results, 1, [], time.monotonic() + 30)
        process.join(10)
    finally:
        if process.is_alive():
            process.kill()
    assert (success, process.exitcode) == (True, 0)
    assert len(token) == 32

    with connect(server.url) as conn:
        limiter = Concurrency(conn, limit)
        # The dead holder never released: its slot stays taken until its lease ends...
        refused = limiter.acquire("job")
        assert not refused
        assert 0 < refused.retry_after <= 1.0
        assert limiter.in_flight("job") == 1
        assert not limiter.release(refused)  # nothing to give back
        time.sleep(refused.retry_after + 0.05)
        # ...and then it is free, without anyone releasing it.
        assert limiter.in_flight("job") == 0
        with limiter.acquire("job") as lease:
            assert lease
            assert lease.expires_at > expires_at
        assert limiter.in_flight("job") == 0
