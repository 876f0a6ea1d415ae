"""REST through ``redkit gateway``, 50 asyncio tasks: redkit with auto-pipelining on and off,
and the official ``upstash-redis`` asyncio client (the reference row).

One embedded ``redis-server``, and ``redkit gateway`` in front of it in a process of its own
(uvicorn, as users run it, see ``gateway.py``); the clients run in this process, 50 tasks on
one event loop (``--tasks``). Two groups, each with its own reference row:

- ``GET`` of a 100-byte value: ``upstash-redis`` ``get`` (reference), redkit's REST driver;
- a fixed-window rate-limit decision: ``upstash-ratelimit``'s asyncio ``FixedWindow``
  (reference, on ``upstash-redis``), redkit's ``AsyncRatelimit`` ``FixedWindow`` (same key
  layout; allow path only, the limit is far above what a run sends).

Rows run in shuffled rounds, each bracketed by its group's reference (see
``harness.bracketed_rounds``); a row's ratio is to that reference, in the same round.

    .venv/bin/python benchmarks/rest_autopipeline.py            # 5 rounds of 1 s a row
    .venv/bin/python benchmarks/rest_autopipeline.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import TOKEN, start_gateway
from harness import AsyncOp, bracketed_rounds, cpu_stall_us, run_once, versions

import redkit
from redkit import AsyncRatelimit, EmbeddedRedis, FixedWindow
from redkit.core.ops import command

KEYS = 1000
VALUE = b"v" * 100
HIGH = 10**9

Cleanups = list[Callable[[], Awaitable[Any]]]


@dataclass
class Row:
    """One benchmark row and what it measured."""

    name: str
    mode: str  # the group: rows are compared with the reference row of their group
    setup: Callable[[str, str, Cleanups], Awaitable[AsyncOp]]
    reference: bool = False
    failed: Callable[[Any], bool] = lambda _: False
    op: Any = None
    ids: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    failures: int = 0


async def upstash_get(url: str, _slug: str, cleanups: Cleanups) -> AsyncOp:
    from upstash_redis.asyncio import Redis

    client = Redis(url=url, token=TOKEN, allow_telemetry=False)
    cleanups.append(client.close)
    return client.get


def redkit_get(autopipeline: bool) -> Callable[[str, str, Cleanups], Awaitable[AsyncOp]]:
    async def setup(url: str, _slug: str, cleanups: Cleanups) -> AsyncOp:
        conn = redkit.connect(url, token=TOKEN, autopipeline=autopipeline)
        cleanups.append(conn.aclose)
        driver = conn.async_driver()
        ops = {f"k{n}": command("GET", f"k{n}") for n in range(KEYS)}

        async def get(key: str) -> Any:
            return await driver.execute(ops[key])

        return get

    return setup


async def upstash_fixed_window(url: str, slug: str, cleanups: Cleanups) -> AsyncOp:
    from upstash_ratelimit.asyncio import FixedWindow as TheirFixedWindow
    from upstash_ratelimit.asyncio import Ratelimit as TheirRatelimit
    from upstash_redis.asyncio import Redis

    client = Redis(url=url, token=TOKEN, allow_telemetry=False)
    cleanups.append(client.close)
    limiter = TheirRatelimit(client, TheirFixedWindow(max_requests=HIGH, window=60), prefix=slug)

    async def decide(identifier: str) -> bool:
        return bool((await limiter.limit(identifier)).allowed)

    return decide


def redkit_fixed_window(autopipeline: bool) -> Callable[[str, str, Cleanups], Awaitable[AsyncOp]]:
    async def setup(url: str, slug: str, cleanups: Cleanups) -> AsyncOp:
        conn = redkit.connect(url, token=TOKEN, autopipeline=autopipeline)
        cleanups.append(conn.aclose)
        limiter = AsyncRatelimit(conn, FixedWindow(HIGH, "60 s"), prefix=slug)

        async def decide(identifier: str) -> bool:
            return (await limiter.limit(identifier)).success

        return decide

    return setup


def denied(allowed: Any) -> bool:
    return not allowed


def build_rows() -> list[Row]:
    return [
        Row("upstash-redis get (reference)", "GET", upstash_get, reference=True),
        Row("redkit REST driver GET, autopipeline off", "GET", redkit_get(False)),
        Row("redkit REST driver GET, autopipeline on", "GET", redkit_get(True)),
        Row(
            "upstash-ratelimit FixedWindow (reference)",
            "FixedWindow",
            upstash_fixed_window,
            reference=True,
            failed=denied,
        ),
        Row(
            "redkit FixedWindow, autopipeline off",
            "FixedWindow",
            redkit_fixed_window(False),
            failed=denied,
        ),
        Row(
            "redkit FixedWindow, autopipeline on",
            "FixedWindow",
            redkit_fixed_window(True),
            failed=denied,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.3 s")
    args = parser.parse_args()
    rounds, seconds = (2, 0.3) if args.quick else (args.rounds, args.seconds)
    rows = build_rows()
    with EmbeddedRedis() as server:
        with server.client() as admin:
            for n in range(KEYS):
                admin.set(f"k{n}", VALUE)
        process, url = start_gateway(server.url)
        loop = asyncio.new_event_loop()
        cleanups: Cleanups = []
        try:
            for number, row in enumerate(rows):
                slug = f"b{number}"
                row.op = loop.run_until_complete(row.setup(url, slug, cleanups))
                row.ids = (
                    [f"k{n}" for n in range(KEYS)]
                    if row.mode == "GET"
                    else [f"u{n}" for n in range(KEYS)]
                )

            def run(row: Any) -> float:
                rate, failures = run_once(
                    row.op, row.ids, False, seconds, args.tasks, loop, row.failed
                )
                row.rates.append(rate)
                row.failures += failures
                return rate

            for row in rows:  # warm up: connections opened, scripts loaded
                run(row)
                row.rates.clear()
            stall_before = cpu_stall_us()
            bracketed_rounds(rows, rounds, run, "rest")
            stall_after = cpu_stall_us()
        finally:
            for cleanup in cleanups:
                loop.run_until_complete(cleanup())
            loop.close()
            process.terminate()
            process.wait(10)
        facts = versions(server.binary, ("httpx", "upstash-redis", "upstash-ratelimit", "uvicorn"))

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"\nREST through `redkit gateway`, {args.tasks} asyncio tasks, "
        f"{rounds} rounds of {seconds} s a row\n"
    )
    print("| row | calls/s (median) | / the group's upstash row (median of per-round ratios) |")
    print("|---|---:|---:|")
    for row in rows:
        note = f" ({row.failures} denied!)" if row.failures else ""
        print(
            f"| {row.name}{note} | {statistics.median(row.rates):,.0f} "
            f"| {statistics.median(row.ratios):.2f}x |"
        )
    quick = " --quick" if args.quick else ""
    print(f"\n<!-- python benchmarks/rest_autopipeline.py{quick} | {now} -->")
    for name, value in facts.items():
        print(f"- {name}: {value}")
    if stall_before is not None and stall_after is not None:
        print(f"- CPU stall while measuring: {(stall_after - stall_before) / 1e6:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
