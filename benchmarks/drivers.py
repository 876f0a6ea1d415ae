"""Auto-pipelining peers: GET and EVALSHA through Python clients that share connections.

Do coredis or valkey-glide already do what issue 16 asks (many concurrent asyncio callers
sharing round trips), and how far are they from what the server can take? One process, one
embedded ``redis-server`` on loopback, 50 and then 500 asyncio tasks on one event loop
(``--tasks``). Two modes, each with its own reference row:

- GET: raw ``redis.asyncio`` ``GET`` (the reference; a connection per task), coredis ``GET``
  (its default pool, which multiplexes: a command is written, its connection handed back at
  once, the reply awaited after), valkey-glide ``GET`` (a Rust core, one multiplexed
  connection per node), redkit ``Connection(url, autopipeline=True)``'s asyncio driver running
  ``Command(("GET", key))``;
- EVALSHA of ``return 1`` with one key: raw ``redis.asyncio`` (the reference), coredis
  ``evalsha``, valkey-glide ``custom_command(["EVALSHA", ...])`` and ``invoke_script``, redkit's
  driver running a ``ScriptCall``.

Rows run in shuffled rounds, each bracketed by its mode's reference
(``harness.bracketed_rounds``); a row's ratio is to that reference. Every reply is checked (a
wrong one is counted and shown). Latency is per call, from its start to its answer
(``harness.run_async``), so at 500 tasks it includes the wait for the event loop; every run of
every row takes the clock per call, so the ratios are not skewed by it; p50 and p99 are the
medians over a row's runs. Client CPU per call is this process's CPU time (all its threads)
over the calls of a run: on a shared machine it drifts less than calls/s. A row whose library
is not installed is skipped, with the reason.

Then the physical reference, when ``redis-benchmark`` is on PATH: the C client with 50
connections and 16 commands in flight on each (``-P 16``), GET, INCR and the same EVALSHA, on
the same server; and ``-P 1`` (one command in flight per connection) for comparison.

    /tmp/peervenv/bin/python benchmarks/drivers.py          # 5 rounds of 1 s a row, ~4 minutes
    /tmp/peervenv/bin/python benchmarks/drivers.py --quick  # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio
from harness import AsyncOp, bracketed_rounds, cpu_stall_us, run_async, versions

from redkit import Connection, EmbeddedRedis
from redkit.core.ops import Command, ScriptCall
from redkit.core.scripts import Script

KEYS = 1000
VALUE = b"v" * 16
SOURCE = "return 1"
SHA = hashlib.sha1(SOURCE.encode(), usedforsecurity=False).hexdigest()
#: The reply each mode's calls must give.
EXPECTED = {"GET": VALUE, "EVALSHA": 1}
PEERS = {"coredis": "coredis", "valkey-glide": "glide"}

Cleanups = list[Callable[[], Awaitable[Any]]]
Setup = Callable[[str, Cleanups], Awaitable[AsyncOp]]


@dataclass
class Row:
    """One benchmark row and what it measured."""

    name: str
    mode: str  # "GET" or "EVALSHA": what it sends, and the reference it is compared with
    setup: Setup
    needs: str | None = None  # the distribution it needs, when not one of redkit's own
    reference: bool = False
    op: Any = None
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    p50: list[float] = field(default_factory=list)
    p99: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds per call
    wrong: int = 0


def raw_client(url: str, cleanups: Cleanups) -> redis.asyncio.Redis:
    """A redis-py asyncio client that opens a connection per task, as many as it takes."""
    # redis-py's default pool refuses a command beyond its 100th connection.
    client = redis.asyncio.Redis.from_url(url, max_connections=10_000)
    cleanups.append(client.aclose)
    return client


def raw_get(url: str) -> Setup:
    async def setup(_mode: str, cleanups: Cleanups) -> AsyncOp:
        return raw_client(url, cleanups).get

    return setup


def raw_evalsha(url: str) -> Setup:
    async def setup(_mode: str, cleanups: Cleanups) -> AsyncOp:
        client = raw_client(url, cleanups)

        def op(key: str) -> Awaitable[Any]:
            return client.evalsha(SHA, 1, key)

        return op

    return setup


def coredis_row(url: str) -> Setup:
    async def setup(mode: str, cleanups: Cleanups) -> AsyncOp:
        import coredis

        client = coredis.Redis.from_url(url)
        # coredis runs its connections inside an anyio task group that must be entered and
        # left by one task: a task of its own holds the client open until the cleanup.
        opened, stop = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with client:
                opened.set()
                await stop.wait()

        holder = asyncio.get_running_loop().create_task(hold())
        await opened.wait()

        async def close() -> None:
            stop.set()
            await holder

        cleanups.append(close)
        if mode == "GET":
            return client.get

        def op(key: str) -> Awaitable[Any]:
            return client.evalsha(SHA, keys=[key])

        return op

    return setup


def glide_row(url: str, how: str) -> Setup:
    async def setup(_mode: str, cleanups: Cleanups) -> AsyncOp:
        from glide import GlideClient, GlideClientConfiguration, NodeAddress
        from glide import Script as GlideScript

        parts = urlsplit(url)
        address = NodeAddress(parts.hostname or "127.0.0.1", parts.port or 6379)
        # glide refuses (does not queue) a request beyond its in-flight limit, 1000 by
        # default: keep the default, the tasks stay below it.
        client = await GlideClient.create(GlideClientConfiguration([address]))
        cleanups.append(client.close)
        if how == "get":
            return client.get
        if how == "custom_command":

            def op(key: str) -> Awaitable[Any]:
                return client.custom_command(["EVALSHA", SHA, "1", key])

            return op
        script = GlideScript(SOURCE)

        def invoke(key: str) -> Awaitable[Any]:
            return client.invoke_script(script, keys=[key])

        return invoke

    return setup


def redkit_row(url: str) -> Setup:
    async def setup(mode: str, cleanups: Cleanups) -> AsyncOp:
        conn = Connection(url, autopipeline=True)
        cleanups.append(conn.aclose)
        driver = conn.async_driver()
        if mode == "GET":

            def get(key: str) -> Awaitable[Any]:
                return driver.execute(Command(("GET", key)))

            return get
        script = Script("one", SOURCE)

        def call(key: str) -> Awaitable[Any]:
            return driver.execute(ScriptCall(script, (key,), ()))

        return call

    return setup


def build_rows(url: str) -> list[Row]:
    """Every row, references first."""
    return [
        Row("raw redis.asyncio GET (reference)", "GET", raw_get(url), reference=True),
        Row("coredis GET (multiplexing pool)", "GET", coredis_row(url), needs="coredis"),
        Row("valkey-glide GET", "GET", glide_row(url, "get"), needs="valkey-glide"),
        Row("redkit autopipeline=True, Command GET", "GET", redkit_row(url)),
        Row("raw redis.asyncio EVALSHA (reference)", "EVALSHA", raw_evalsha(url), reference=True),
        Row("coredis evalsha", "EVALSHA", coredis_row(url), needs="coredis"),
        Row(
            "valkey-glide custom_command EVALSHA",
            "EVALSHA",
            glide_row(url, "custom_command"),
            needs="valkey-glide",
        ),
        Row(
            "valkey-glide invoke_script",
            "EVALSHA",
            glide_row(url, "invoke_script"),
            needs="valkey-glide",
        ),
        Row("redkit autopipeline=True, ScriptCall", "EVALSHA", redkit_row(url)),
    ]


def percentile(ordered: list[float], share: float) -> float:
    """The value below which ``share`` of the sorted ``ordered`` lies."""
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(
    rows: list[Row], rounds: int, seconds: float, tasks: int, loop: asyncio.AbstractEventLoop
) -> None:
    """Warm every row up, then run the bracketed rounds at ``tasks`` tasks."""
    keys = [f"k:{n}" for n in range(KEYS)]

    def run(row: Row) -> float:
        gc.collect()
        expected = EXPECTED[row.mode]
        latencies: list[float] = []
        cpu = time.process_time()  # all threads: glide's Rust core runs in threads of its own
        rate, calls, wrong = loop.run_until_complete(
            run_async(row.op, keys, seconds, tasks, lambda reply: reply != expected, latencies)
        )
        row.cpu.append((time.process_time() - cpu) / calls)
        latencies.sort()
        row.rates.append(rate)
        row.p50.append(percentile(latencies, 0.50))
        row.p99.append(percentile(latencies, 0.99))
        row.wrong += wrong
        return rate

    for row in rows:  # connections opened (one per task for the raw rows), scripts cached
        run(row)
    for row in rows:
        row.rates.clear()
        row.p50.clear()
        row.p99.clear()
        row.cpu.clear()
        row.ratios.clear()
    bracketed_rounds(rows, rounds, run, f"{tasks} tasks")


def table(rows: list[Row], tasks: int) -> str:
    """The Markdown table of one task count."""
    lines = [
        f"| {tasks} tasks | calls/s median (min, max) | / raw ref. | p50 ms | p99 ms "
        "| client CPU µs/call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        wrong = f" (**{row.wrong} wrong replies**)" if row.wrong else ""
        rate = statistics.median(row.rates)
        lines.append(
            f"| {row.name}{wrong} | {rate:,.0f} ({min(row.rates):,.0f}, {max(row.rates):,.0f}) "
            f"| {statistics.median(row.ratios):.2f} | {statistics.median(row.p50) * 1e3:.2f} "
            f"| {statistics.median(row.p99) * 1e3:.2f} | {statistics.median(row.cpu) * 1e6:.0f} |"
        )
    return "\n".join(lines)


def redis_benchmark(url: str, requests: int) -> tuple[list[str], str]:
    """Run ``redis-benchmark`` at -P 16 and -P 1: (its lines, the commands run)."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return [], "skipped: redis-benchmark is not on PATH (apt-get install redis-tools)"
    parts = urlsplit(url)
    base = [binary, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379), "-q"]
    base += ["-c", "50"]
    out, commands = [], []
    for pipeline in (16, 1):
        n = str(requests if pipeline > 1 else requests // 4)
        for extra in (["-t", "get,incr"], ["evalsha", SHA, "1", "k:0"]):
            argv = [*base, "-P", str(pipeline), "-n", n, *extra]
            commands.append(" ".join(["redis-benchmark", *argv[1:]]))
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            # -q prints "NAME: N requests per second, p50=M msec" after carriage returns.
            for line in result.stdout.replace("\r", "\n").splitlines():
                if "requests per second" in line:
                    out.append(f"-P {pipeline:>2}  {line.strip()}")
            if result.returncode:
                out.append(f"-P {pipeline:>2}  failed: {result.stderr.strip()}")
    return out, "\n".join(commands)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--tasks", default="50,500", help="task counts, comma-separated")
    parser.add_argument("--requests", type=int, default=200_000, help="redis-benchmark -n")
    parser.add_argument("--no-redis-benchmark", action="store_true")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.3 s")
    args = parser.parse_args()
    rounds, seconds = (2, 0.3) if args.quick else (args.rounds, args.seconds)
    requests = 40_000 if args.quick else args.requests
    task_counts = [int(t) for t in args.tasks.split(",")]

    skipped: list[str] = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with EmbeddedRedis() as server:
        rows = []
        for row in build_rows(server.url):
            module = PEERS.get(row.needs or "")
            if module is not None and importlib.util.find_spec(module) is None:
                skipped.append(f"{row.name}: skipped, {row.needs} is not installed")
            else:
                rows.append(row)
        for line in skipped:
            print(line, file=sys.stderr)
        admin = server.client()
        admin.mset({f"k:{n}": VALUE for n in range(KEYS)})
        assert admin.script_load(SOURCE) == SHA
        facts = versions(server.binary, PEERS)
        cleanups: Cleanups = []
        tables = []
        try:
            for row in rows:
                row.op = loop.run_until_complete(row.setup(row.mode, cleanups))
            for tasks in task_counts:
                load = os.getloadavg()
                stall, began = cpu_stall_us(), time.monotonic()
                measure(rows, rounds, seconds, tasks, loop)
                after = cpu_stall_us()
                waited = ""
                if stall is not None and after is not None:
                    share = (after - stall) / 1e6 / (time.monotonic() - began)
                    waited = f"; a runnable task waited for a CPU {share:.0%} of the time"
                tables.append(
                    f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}{waited}\n\n"
                    + table(rows, tasks)
                )
        finally:
            for cleanup in cleanups:
                loop.run_until_complete(cleanup())
            loop.close()
        if args.no_redis_benchmark:
            physical, commands = [], "skipped: --no-redis-benchmark"
        else:
            load = os.getloadavg()
            physical, commands = redis_benchmark(server.url, requests)
            commands += f"\n(load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})"
        admin.close()

    print(f"\n<!-- python benchmarks/drivers.py {' '.join(sys.argv[1:])} -->")
    for name, value in facts.items():
        print(f"- {name}: {value}")
    print(f"- {rounds} rounds x {seconds} s a row, {KEYS} keys, one event loop\n")
    for text in tables:
        print(text + "\n")
    for line in skipped:
        print(f"- {line}")
    print("\nredis-benchmark (the physical reference, same server):\n")
    print("```\n" + commands + "\n" + "\n".join(physical) + "\n```")


if __name__ == "__main__":
    main()
