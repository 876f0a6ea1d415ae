"""Auto-pipelining, first step: async FixedWindow decisions with it off and on, and raw EVALSHA.

One process, one embedded ``redis-server`` on loopback, 50 asyncio tasks on one event loop
(``--tasks``). Rows run in shuffled rounds, each bracketed by the raw ``redis.asyncio``
``EVALSHA`` reference (see ``harness.bracketed_rounds``); a row's ratio is to that reference.
Allow path only: the limit is far above what a run can send. ``--cluster``: the same rows on
an embedded 3-master cluster, the reference being redis-py's ``RedisCluster`` client.

    .venv/bin/python benchmarks/autopipeline.py            # 5 rounds of 2 s a row
    .venv/bin/python benchmarks/autopipeline.py --quick    # a smoke run
    .venv/bin/python benchmarks/autopipeline.py --cluster  # on a 3-master cluster
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
from harness import AsyncOp, bracketed_rounds, run_once

from redkit import AsyncRatelimit, EmbeddedRedis, FixedWindow
from redkit.drivers.embedded import EmbeddedCluster

HIGH = 10**9
IDENTIFIERS = 1000


@dataclass
class Row:
    """One benchmark row and what it measured."""

    name: str
    setup: Callable[[str, list[Callable[[], Awaitable[Any]]]], Awaitable[AsyncOp]]
    reference: bool = False
    mode: str = "async"
    op: Any = None
    ids: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    denied: int = 0


def raw_evalsha(url: str) -> Callable[..., Awaitable[AsyncOp]]:
    async def setup(_slug: str, cleanups: list[Callable[[], Awaitable[Any]]]) -> AsyncOp:
        # One connection per task: redis-py's default pool refuses a command beyond 100.
        client = redis.asyncio.Redis.from_url(url, max_connections=10_000)
        cleanups.append(client.aclose)
        sha = await client.script_load("return 1")
        return functools.partial(client.evalsha, sha, 1)

    return setup


def raw_cluster_evalsha(url: str) -> Callable[..., Awaitable[AsyncOp]]:
    async def setup(_slug: str, cleanups: list[Callable[[], Awaitable[Any]]]) -> AsyncOp:
        client = redis.asyncio.cluster.RedisCluster.from_url(url.replace("+cluster", ""))
        cleanups.append(client.aclose)
        # The topology first: redis-py's cluster client trips on concurrent first use.
        await client.initialize()
        sha = await client.script_load("return 1")  # on every master
        return functools.partial(client.evalsha, sha, 1)

    return setup


def fixed_window(
    server: EmbeddedRedis | EmbeddedCluster, autopipeline: bool
) -> Callable[..., Awaitable[AsyncOp]]:
    async def setup(slug: str, cleanups: list[Callable[[], Awaitable[Any]]]) -> AsyncOp:
        conn = server.connect(autopipeline=autopipeline)
        cleanups.append(conn.aclose)
        limiter = AsyncRatelimit(conn, FixedWindow(HIGH, "60 s"), prefix=slug)

        async def op(identifier: str) -> bool:
            return (await limiter.limit(identifier)).success

        # One decision alone first: on a cluster, redis-py's client trips on concurrent first
        # use (an AttributeError from inside it) before it has learnt the topology.
        await op(f"{slug}:warm")
        return op

    return setup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.5 s")
    parser.add_argument("--cluster", action="store_true", help="on a 3-master cluster")
    args = parser.parse_args()
    rounds, seconds = (2, 0.5) if args.quick else (args.rounds, args.seconds)

    with EmbeddedCluster(3) if args.cluster else EmbeddedRedis() as server:
        reference = (
            Row(
                "raw redis.asyncio RedisCluster EVALSHA (reference)",
                raw_cluster_evalsha(server.url),
                reference=True,
            )
            if args.cluster
            else Row(
                "raw redis.asyncio EVALSHA (reference)", raw_evalsha(server.url), reference=True
            )
        )
        rows = [
            reference,
            Row("redkit FixedWindow, autopipeline off", fixed_window(server, False)),
            Row("redkit FixedWindow, autopipeline on", fixed_window(server, True)),
        ]
        loop = asyncio.new_event_loop()
        cleanups: list[Callable[[], Awaitable[Any]]] = []
        for number, row in enumerate(rows):
            slug = f"b{number}"
            row.op = loop.run_until_complete(row.setup(slug, cleanups))
            row.ids = [f"{slug}:{n}" for n in range(IDENTIFIERS)]

        def run(row: Any) -> float:
            rate, denied = run_once(
                row.op, row.ids, False, seconds, args.tasks, loop, lambda ok: not ok
            )
            row.rates.append(rate)
            row.denied += denied
            return rate

        for row in rows:  # warm up: connections opened, scripts loaded
            run(row)
            row.rates.clear()
        bracketed_rounds(rows, rounds, run, "async")
        for cleanup in cleanups:
            loop.run_until_complete(cleanup())
        loop.close()

    where = "a 3-master cluster" if args.cluster else "a standalone server"
    print(f"\n{where}, {args.tasks} asyncio tasks, {rounds} rounds of {seconds} s a row\n")
    print("| row | decisions/s (median) | / raw EVALSHA (median) |")
    print("|---|---:|---:|")
    for row in rows:
        note = f" ({row.denied} denied!)" if row.denied else ""
        print(
            f"| {row.name}{note} | {statistics.median(row.rates):,.0f} "
            f"| {statistics.median(row.ratios):.2f}x |"
        )


if __name__ == "__main__":
    main()
