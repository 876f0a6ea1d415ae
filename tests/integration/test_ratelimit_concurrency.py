"""Several processes, each with threads or asyncio tasks, hammer one identifier at once."""

from __future__ import annotations

import multiprocessing
import queue
import time
from collections import Counter
from typing import Any

import pytest

from redkit import CachedFixedWindow, FixedWindow, SlidingWindow, TokenBucket
from redkit.ratelimit import Limiter
from redkit.ratelimit.limiters import GCRA, SlidingLog
from redkit.ratelimit.multi import MultiLimit
from support.backends import autopipelined
from support.workers.ratelimit import hammer

LIMIT = 40
#: GCRA's emission interval: refills come during the test, not only the burst.
GCRA_RATE_PER_S = 50
LIMITERS: list[Limiter] = [
    FixedWindow(LIMIT, "1 h"),
    SlidingWindow(LIMIT, "1 h"),
    TokenBucket(1, "1 h", LIMIT),
    CachedFixedWindow(LIMIT, "1 h"),
    GCRA(GCRA_RATE_PER_S, "1 s", LIMIT),
    SlidingLog(LIMIT, "1 h"),
    # Several limits at once: the bucket refuses first, and the window must not keep a charge.
    MultiLimit.of([FixedWindow(LIMIT * 5, "1 h"), TokenBucket(1, "1 h", LIMIT)]),
]
# Two processes with threads, one with asyncio tasks: 3 x 4 x 25 = 300 attempts per limiter.
PROCESSES = [("threads", 4), ("threads", 4), ("tasks", 4)]
# On auto-pipelining connections (asyncio only): two processes of tasks, one of threads.
AUTOPIPELINED_PROCESSES = [("tasks", 4), ("tasks", 4), ("threads", 4)]
CALLS = 25


@pytest.mark.slow
@pytest.mark.parametrize("autopipeline", [False, True], ids=["plain", "autopipelined"])
@pytest.mark.parametrize("topology", ["standalone", "cluster"])
def test_processes_hammering_one_identifier_never_pass_the_limit(
    topology: str, autopipeline: bool, request: pytest.FixtureRequest
) -> None:
    if topology == "cluster":
        server = request.getfixturevalue("redis_cluster")
        server.flushall()
    else:
        server = request.getfixturevalue("redis_server")
        with server.client() as admin:
            admin.flushall()
    layout = PROCESSES
    if autopipeline:
        autopipelined(server.url)  # skips where it is refused yet
        layout = AUTOPIPELINED_PROCESSES
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(layout))
    results: Any = context.Queue()
    processes = [
        context.Process(
            target=hammer,
            args=(server.url, LIMITERS, "user:42", mode, workers, CALLS, barrier, results),
            kwargs={"autopipeline": autopipeline},
        )
        for mode, workers in layout
    ]
    for process in processes:
        process.start()
    per_limiter: dict[int, list[list[int]]] = {index: [] for index in range(len(LIMITERS))}
    spans: dict[int, list[tuple[float, float]]] = {index: [] for index in range(len(LIMITERS))}
    deadline = time.monotonic() + 90
    try:
        for _ in range(len(layout) * len(LIMITERS)):
            while True:
                try:
                    index, admitted, started, finished = results.get(timeout=0.5)
                    break
                except queue.Empty:
                    failed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
                    assert not failed, f"a worker process failed (exit codes {failed})"
                    assert time.monotonic() < deadline, "the workers did not report in time"
            per_limiter[index].append(admitted)
            spans[index].append((started, finished))
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0] * len(processes)

    fixed, sliding, bucket, cached, gcra, log, multi = (
        per_limiter[i] for i in range(len(LIMITERS))
    )
    # Exact limiters: at most LIMIT per window (the test may straddle a window's end), and the
    # limit is reached, since 300 attempts were made.
    for admitted in (fixed, sliding):
        per_window = Counter(reset for process in admitted for reset in process)
        assert max(per_window.values()) <= LIMIT
        assert sum(per_window.values()) >= LIMIT
    # A full bucket of LIMIT, refilled by one token an hour after the first take.
    assert sum(len(process) for process in bucket) in (LIMIT, LIMIT + 1)
    # The cached window: each process alone stays within the limit, all of them within P x L.
    for process in cached:
        assert all(count <= LIMIT for count in Counter(process).values())
    per_window = Counter(reset for process in cached for reset in process)
    assert LIMIT <= max(per_window.values()) <= len(layout) * LIMIT
    # GCRA: at most the burst plus one per emission interval over the time the processes ran
    # (a little more than the span in which they were admitted).
    gcra_spans = spans[4]
    elapsed = max(end for _, end in gcra_spans) - min(start for start, _ in gcra_spans)
    admitted_gcra = sum(len(process) for process in gcra)
    assert LIMIT <= admitted_gcra <= LIMIT + elapsed * GCRA_RATE_PER_S + 1
    # The sliding log: exactly the limit in the test's (far less than an hour's) window.
    assert sum(len(process) for process in log) == LIMIT
    # Several limits: the bucket's LIMIT (plus a refill at most), and the window counted
    # exactly the admitted requests: no refused request left a charge behind.
    admitted_multi = sum(len(process) for process in multi)
    assert admitted_multi in (LIMIT, LIMIT + 1)
    conn = server.connect()
    admin = conn.sync_driver().client
    window_counts = [int(admin.get(key)) for key in admin.scan_iter("hammer-6:*:limit0:*")]
    conn.close()
    assert sum(window_counts) == admitted_multi
