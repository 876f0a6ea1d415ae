"""Multi-region rate limiting: over-admission per region lag, and a decision's speed.

Part ``lag``: three embedded Redis servers (the regions) and, in front of some, a loopback
TCP proxy adding a delay to every chunk each way (``tests/support/latency_proxy.py``).
Three processes hammer one identifier (a FixedWindow of 100 per hour, 300 calls each,
started together) through ``MultiRegionRatelimit``; for each one-way lag (0, 20, 50, 100,
200 ms) and each layout it reports how many were admitted against the limit:

- ``one near region``: every process is near region 0, regions 1 and 2 are far;
- ``each near its own``: process *i* is near region *i*, the two others are far from it
  (services deployed in three regions, each with its own Redis).

Part ``speed``: decisions per second of a single-region ``Ratelimit`` and of a
``MultiRegionRatelimit`` over three local regions (no added lag), side by side in one run
(``harness.bracketed_rounds``: the single-region row is the reference of its mode), sync in one
thread and async with 50 tasks on one loop; allow path only.

    .venv/bin/python benchmarks/multiregion.py               # both parts (about 4 minutes)
    .venv/bin/python benchmarks/multiregion.py --part lag    # or --part speed; --quick: smoke
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import harness
from observe import Row  # the same rows: what runs, what it measured

from redkit import AsyncRatelimit, FixedWindow, Ratelimit
from redkit.drivers.embedded import EmbeddedRedis
from redkit.ratelimit import AsyncMultiRegionRatelimit, MultiRegionRatelimit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.latency_proxy import LatencyProxy
from support.multiregion_worker import Hammered, hammer_timed

LAGS_MS = (0, 20, 50, 100, 200)
PROCESSES = 3
LIMIT = 100
CALLS = 300
TASKS = 50
IDS = [f"id:{n}" for n in range(1000)]


def _port(server: EmbeddedRedis) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/")[0])


@contextmanager
def _views(servers: list[EmbeddedRedis], lag_ms: int, layout: str) -> Iterator[list[list[str]]]:
    """Each process's list of region URLs: direct to its near region, proxied to far ones."""
    with ExitStack() as stack:
        proxied: dict[tuple[int, int], str] = {}

        def far(process: int, region: int) -> str:
            if lag_ms == 0:
                return servers[region].url
            if (process, region) not in proxied:
                proxy = stack.enter_context(LatencyProxy(_port(servers[region]), lag_ms))
                proxied[(process, region)] = proxy.url
            return proxied[(process, region)]

        views = []
        for process in range(PROCESSES):
            near = 0 if layout == "one near region" else process
            views.append(
                [
                    servers[region].url if region == near else far(process, region)
                    for region in range(len(servers))
                ]
            )
        yield views


def lag_part(calls: int, lags: tuple[int, ...]) -> str:
    """Admitted against the limit for each lag and layout: a Markdown table."""
    lines = [
        "| one-way lag | layout | admitted | limit | over | requests | decisions/s (all "
        "processes) | slowest decision ms | settled after s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    servers = [EmbeddedRedis().start() for _ in range(3)]
    context = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
            for lag in lags:
                for layout in ("one near region", "each near its own"):
                    if lag == 0 and layout == "each near its own":
                        continue  # the same as the other with no lag
                    with _views(servers, lag, layout) as views:
                        prefix = f"mrb{uuid.uuid4().hex[:8]}"
                        began = time.monotonic()
                        start_at = time.time() + 2.0
                        jobs = [
                            pool.submit(
                                hammer_timed, view, prefix, "one", LIMIT, calls, False, start_at
                            )
                            for view in views
                        ]
                        seen: list[Hammered] = [job.result(timeout=600) for job in jobs]
                        settled = time.monotonic() - began - 2.0
                    admitted = sum(s.admitted for s in seen)
                    rate = sum(calls / s.seconds for s in seen)
                    slowest = max(s.slowest for s in seen) * 1000
                    lines.append(
                        f"| {lag} ms | {layout} | {admitted} | {LIMIT} | {admitted - LIMIT:+d} "
                        f"| {calls * PROCESSES} | {rate:,.0f} | {slowest:.0f} | {settled:.1f} |"
                    )
                    print(lines[-1], file=sys.stderr, flush=True)
    finally:
        for server in servers:
            server.stop()
    return "\n".join(lines)


def speed_part(rounds: int, seconds: float) -> str:
    """A single-region decision and a 3-region one, side by side: a Markdown table."""
    loop = asyncio.new_event_loop()
    servers = [EmbeddedRedis().start() for _ in range(3)]
    conns = [server.connect() for server in servers]
    limit = FixedWindow(10**9, "1 h")
    single = Ratelimit(conns[0], limit, prefix="b-single")
    async_single = AsyncRatelimit(conns[0], limit, prefix="b-single")
    multi = MultiRegionRatelimit(conns, limit, prefix="b-multi")
    async_multi = AsyncMultiRegionRatelimit(conns, limit, prefix="b-multi")
    rows = [
        Row("FixedWindow decision", "sync, single region", "sync", True, single.limit, True,
            note="reference; server clock (default)"),
        Row("FixedWindow decision", "sync, 3 regions", "sync", False, multi.limit, True,
            note="every region asked, the first answer decides; client clock"),
        Row("FixedWindow decision", f"async ({TASKS} tasks), single region", "async", True,
            async_single.limit, False, note="reference; server clock (default)"),
        Row("FixedWindow decision", f"async ({TASKS} tasks), 3 regions", "async", False,
            async_multi.limit, False,
            note="every region asked, the first answer decides; client clock"),
    ]  # fmt: skip

    def failed(answer: Any) -> bool:
        return not answer.success

    def run(row: Row) -> float:
        rate, failures = harness.run_once(row.op, IDS, row.sync, seconds, TASKS, loop, failed)
        # The other regions' writes go on after the timed loop: they are part of the cost.
        if row.op is multi.limit:
            multi.flush()
        elif row.op is async_multi.limit:
            loop.run_until_complete(async_multi.flush())
        row.rates.append(rate)
        if failures:
            row.note += f"; **{failures} refused**"
        return rate

    try:
        harness.bracketed_rounds(rows, rounds, run, "multiregion")
    finally:
        multi.close()
        loop.run_until_complete(async_multi.close())
        single.close()
        loop.run_until_complete(async_single.close())
        for conn in conns:
            loop.run_until_complete(conn.aclose())
            conn.close()
        loop.close()
        for server in servers:
            server.stop()
    return harness.rates_table("| row | decisions/s | ratio | commands", rows, lambda r: "", [])


def main() -> None:
    """Run the parts asked for and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("lag", "speed", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.part in ("lag", "both"):
        calls, lags = (60, (0, 50)) if args.quick else (CALLS, LAGS_MS)
        print(lag_part(calls, lags), flush=True)
    if args.part in ("speed", "both"):
        rounds, seconds = (2, 0.3) if args.quick else (7, 1.5)
        print(speed_part(rounds, seconds), flush=True)


if __name__ == "__main__":
    main()
