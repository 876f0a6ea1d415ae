"""The cost of ``stats="10 s"`` (fleet statistics) on a decision and on a cache hit.

One process, one embedded ``redis-server`` on loopback. Rows side by side, interleaved by
``harness.bracketed_rounds`` (R A R ...): a FixedWindow decision and a cache ``get`` hit,
each without ``stats=`` (the reference of its mode) and with ``stats="10 s"``; sync rows in
one thread, async rows with 50 tasks on one event loop. The ratio is a row's rate over its
reference's; the goal is above 0.95 (a cost under 5 %).

    .venv/bin/python benchmarks/observe.py            # 7 rounds of 2 s runs
    .venv/bin/python benchmarks/observe.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from dataclasses import dataclass, field
from typing import Any

import harness

from redkit import AsyncCache, AsyncRatelimit, Cache, FixedWindow, Ratelimit
from redkit.drivers.embedded import EmbeddedRedis

TASKS = 50
IDS = [f"id:{n}" for n in range(1000)]


@dataclass
class Row:
    """One benchmark row: what it runs and what it measured."""

    section: str
    name: str
    mode: str
    reference: bool
    op: Any
    sync: bool
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    commands: str = ""
    note: str = ""


def main() -> None:
    """Run the rows and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    rounds, seconds = (2, 0.5) if args.quick else (7, 2.0)
    loop = asyncio.new_event_loop()
    with EmbeddedRedis() as server, server.connect() as conn:
        limit = FixedWindow(10**9, "1 h")
        made: list[Any] = []

        def facade(kind: Any, *args: Any, **options: Any) -> Any:
            made.append(kind(conn, *args, **options))
            return made[-1]

        caches = {}
        for stats in (None, "10 s"):
            sync_cache = facade(Cache, namespace=f"bench-{stats}", stats=stats)
            for key in IDS:
                sync_cache.set(key, {"n": key})
            caches[stats] = (
                sync_cache,
                facade(AsyncCache, namespace=f"bench-{stats}", stats=stats),
            )
        rows = []
        for stats in (None, "10 s"):
            label = "without stats" if stats is None else 'stats="10 s"'
            sync_rl = facade(Ratelimit, limit, prefix=f"b-{stats}", stats=stats)
            async_rl = facade(AsyncRatelimit, limit, prefix=f"b-{stats}", stats=stats)
            sync_cache, async_cache = caches[stats]
            ref = stats is None
            rows += [
                Row("FixedWindow decision", f"sync, {label}", "rl-sync", ref, sync_rl.limit, True),
                Row("FixedWindow decision", f"async ({TASKS} tasks), {label}", "rl-async", ref,
                    async_rl.limit, False),
                Row("cache get (hit)", f"sync, {label}", "cache-sync", ref, sync_cache.get, True),
                Row("cache get (hit)", f"async ({TASKS} tasks), {label}", "cache-async", ref,
                    async_cache.get, False),
            ]  # fmt: skip

        def failed(answer: Any) -> bool:
            return answer is None or getattr(answer, "success", True) is False

        def run(row: Row) -> float:
            rate, failures = harness.run_once(row.op, IDS, row.sync, seconds, TASKS, loop, failed)
            row.rates.append(rate)
            if failures:
                row.note = f"**{failures} failed answers**"
            return rate

        harness.bracketed_rounds(rows, rounds, run, "observe")
        for item in made:
            closing = item.close()
            if asyncio.iscoroutine(closing):
                loop.run_until_complete(closing)
        loop.run_until_complete(conn.aclose())
    loop.close()
    print(harness.rates_table("| row | calls/s | ratio | commands", rows, lambda r: "", []))
    for row in rows:
        if not row.reference:
            print(f"{row.section}, {row.name}: cost {1 - statistics.median(row.ratios):+.1%}")


if __name__ == "__main__":
    main()
