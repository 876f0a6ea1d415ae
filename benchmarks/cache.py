"""Cache reads: redkit, its Python peers and raw redis-py, side by side; and the stampede.

One process, one embedded ``redis-server`` on loopback. Two parts:

1. **Hit path** of a ~1 KB JSON value (a dict of a few dozen fields). Every row runs once per
   round, in a shuffled order, for a fixed time; rounds repeat. Each row reports the median
   reads/s over its runs and the median of its per-round ratios to raw redis-py ``GET`` +
   ``json.loads`` of the same mode (sync rows against sync GET, async rows against async GET),
   that reference being run just before and just after each row (its ratio is to the mean of
   the two). Absolute figures drift with the machine's load; the ratios are what to compare.
   Keys cycle through 1000 per row, each row with its own keys, all written before measuring:
   every read is a hit (a miss, or a loader call, is counted and reported). Sync rows use one
   client in one thread; async rows run 50 tasks on one event loop.
2. **Stampede**: 1,000 cold reads of one key at once (1,000 asyncio tasks; and, for sync, 50
   threads x 20 reads), with a loader that sleeps 50 ms and counts its calls. Reported: loads
   per 1,000 cold reads, for redkit ``get_or_set`` (defaults: single flight + lease; and
   ``lease=None``) and for raw "GET, on a miss load and SET" (no protection). A fresh key
   every round; the rows run in a shuffled order each round.

    .venv/bin/python benchmarks/cache.py            # the full run (about 4 minutes)
    .venv/bin/python benchmarks/cache.py --quick    # a smoke run (well under a minute)

The peers come from the ``bench`` extra: ``pip install -e '.[embedded,hiredis,bench]'``; rows
of a peer that is not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import functools
import gc
import inspect
import itertools
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import redis
import redis.asyncio
import redis.utils
from harness import (
    AsyncOp,
    SyncOp,
    bracketed_rounds,
    command_stats,
    cpu_stall_us,
    format_commands,
    latency_table,
    rates_table,
    run_async,
    run_once,
    run_sync,
    sectioned_table,
    versions,
)

from redkit import AsyncCache, Cache, EmbeddedRedis

SYNC = "sync"
ASYNC = "async"
IDENTIFIERS = 1000
TASKS = 50
#: Long enough that no entry written before measuring expires (or is refreshed) during a run.
TTL_S = 3600
#: The stampede: cold reads of one key, the loader's time, and the sync threads.
READS = 1000
LOAD_S = 0.05
THREADS = 50
#: Cache instances sharing one Redis, standing in for processes (the lease's own case).
INSTANCES = 10


def make_value() -> dict[str, Any]:
    """The cached value: a dict of 36 fields of mixed types, about 1 KB as JSON."""
    value: dict[str, Any] = {}
    for i in range(36):
        name = f"field_{i:02d}"
        kind = i % 4
        if kind == 0:
            value[name] = i * 7919
        elif kind == 1:
            value[name] = f"text value number {i}, some words"
        elif kind == 2:
            value[name] = round(i * 3.14159, 4)
        else:
            value[name] = i % 8 == 3
    return value


VALUE = make_value()
VALUE_JSON = json.dumps(VALUE)

#: Loader calls per row slug, during the hit rounds (a loader call there is a miss).
LOADS: collections.Counter[str] = collections.Counter()

Cleanup = Callable[[], Any]


def is_missed(answer: Any) -> bool:
    """A read that found nothing counts against the row."""
    return answer is None


@dataclass
class Env:
    """What a row's setup may use: the server, and cleanups to run at the end."""

    server: EmbeddedRedis
    url: str
    cleanups: list[Cleanup] = field(default_factory=list)
    async_cleanups: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)


@dataclass
class Row:
    """A hit-path row."""

    section: str
    name: str
    mode: str
    slug: str
    setup: Callable[[Env, str, list[str]], Any]  # (env, slug, ids) -> op (or a coroutine)
    note: str = ""
    reference: bool = False  # raw GET + json.loads of its mode
    op: Any = None
    ids: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    misses: int = 0
    commands: str = ""


@dataclass
class Stampede:
    """A stampede row: ``setup`` gives ``read(key, loader, worker)``, sync or a coroutine."""

    section: str
    name: str
    mode: str
    slug: str
    setup: Callable[[Env], Any]
    note: str = ""
    read: Any = None
    caches: list[Any] = field(default_factory=list)
    loads: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)
    wrong: int = 0
    commands: str = ""


# -- measuring the hit path ------------------------------------------------------------------


async def read_all(op: AsyncOp, ids: list[str], tasks: int) -> list[Any]:
    """Read every identifier once, from ``tasks`` tasks."""

    async def worker(first: int) -> list[Any]:
        return [await op(identifier) for identifier in ids[first::tasks]]

    return [
        v for values in await asyncio.gather(*(worker(k) for k in range(tasks))) for v in values
    ]


def count_load(slug: str) -> dict[str, Any]:
    LOADS[slug] += 1
    return VALUE


async def count_load_async(slug: str) -> dict[str, Any]:
    LOADS[slug] += 1
    return VALUE


# -- hit rows: raw redis-py --------------------------------------------------------------------


def sync_raw(env: Env, slug: str, ids: list[str]) -> SyncOp:
    client = redis.Redis.from_url(env.url)
    env.cleanups.append(client.close)
    with client.pipeline(transaction=False) as pipe:
        for identifier in ids:
            pipe.set(identifier, VALUE_JSON, ex=TTL_S)
        pipe.execute()
    get, loads = client.get, json.loads

    def op(identifier: str) -> Any:
        raw = get(identifier)
        return None if raw is None else loads(raw)

    return op


async def async_raw(env: Env, slug: str, ids: list[str]) -> AsyncOp:
    # Enough connections for 500 tasks: redis-py's async pool refuses a command beyond 100.
    client = redis.asyncio.Redis.from_url(env.url, max_connections=10_000)
    env.async_cleanups.append(client.aclose)
    async with client.pipeline(transaction=False) as pipe:
        for identifier in ids:
            pipe.set(identifier, VALUE_JSON, ex=TTL_S)
        await pipe.execute()
    get, loads = client.get, json.loads

    async def op(identifier: str) -> Any:
        raw = await get(identifier)
        return None if raw is None else loads(raw)

    return op


# -- hit rows: redkit --------------------------------------------------------------------------


def local_tier_option() -> str | None:
    """The name of ``Cache``'s local-tier option, if this redkit has one."""
    parameters = inspect.signature(Cache).parameters
    return next((name for name in ("local_ttl", "local") if name in parameters), None)


def redkit_options(kind: str, env: Env) -> dict[str, Any]:
    options: dict[str, Any] = {"default_ttl": TTL_S}
    if kind == "local":
        options[local_tier_option() or "local_ttl"] = 60
    if kind.startswith("traced"):  # "traced 0.01": a trace of that share of the keys
        from redkit.advise import TraceRecorder

        folder = tempfile.mkdtemp(prefix="redkit-bench-trace-")
        recorder = TraceRecorder.to_file(f"{folder}/trace.jsonl", sample=float(kind.split()[1]))
        env.cleanups.append(recorder.close)
        options["trace"] = recorder
    return options


def redkit_sync(kind: str) -> Callable[[Env, str, list[str]], SyncOp]:
    def setup(env: Env, slug: str, ids: list[str]) -> SyncOp:
        connection = env.server.connect()
        env.cleanups.append(connection.close)
        cache = Cache(connection, namespace=slug, **redkit_options(kind, env))
        cache.set_many(dict.fromkeys(ids, VALUE))
        if kind == "get_or_set":
            loader = functools.partial(count_load, slug)
            get_or_set = cache.get_or_set
            return lambda identifier: get_or_set(identifier, loader)
        if kind == "cached":

            @cache.cached(ttl=TTL_S, key="{key}")
            def fetch(key: str) -> dict[str, Any]:
                return count_load(slug)

            return fetch
        return cache.get  # "get", "traced", and "local": Cache.get through the local tier

    return setup


def redkit_async(
    kind: str, autopipeline: bool = True
) -> Callable[[Env, str, list[str]], Awaitable[AsyncOp]]:
    async def setup(env: Env, slug: str, ids: list[str]) -> AsyncOp:
        connection = env.server.connect(autopipeline=autopipeline)
        env.async_cleanups.append(connection.aclose)
        cache = AsyncCache(connection, namespace=slug, **redkit_options(kind, env))
        await cache.set_many(dict.fromkeys(ids, VALUE))
        if kind == "get_or_set":
            loader = functools.partial(count_load_async, slug)
            get_or_set = cache.get_or_set
            return lambda identifier: get_or_set(identifier, loader)
        if kind == "cached":

            @cache.cached(ttl=TTL_S, key="{key}")
            async def fetch(key: str) -> dict[str, Any]:
                return count_load(slug)

            return fetch
        return cache.get

    return setup


# -- hit rows: peers ---------------------------------------------------------------------------


def cashews_async(pickle_type: str) -> Callable[[Env, str, list[str]], Awaitable[AsyncOp]]:
    async def setup(env: Env, slug: str, ids: list[str]) -> AsyncOp:
        import cashews

        cache = cashews.Cache(name=slug)
        cache.setup(env.url, pickle_type=pickle_type)
        await cache.init()
        env.async_cleanups.append(cache.close)
        for identifier in ids:
            await cache.set(identifier, VALUE, expire=TTL_S)
        return cache.get

    return setup


async def aiocache_async(env: Env, slug: str, ids: list[str]) -> AsyncOp:
    from aiocache import RedisCache
    from aiocache.serializers import JsonSerializer

    url = urlparse(env.url)
    cache = RedisCache(
        serializer=JsonSerializer(), endpoint=url.hostname, port=url.port or 6379, namespace=slug
    )
    env.async_cleanups.append(cache.close)
    for identifier in ids:
        await cache.set(identifier, VALUE, ttl=TTL_S)
    return cache.get


# -- stampede rows -----------------------------------------------------------------------------


def stampede_raw_sync(env: Env) -> Any:
    client = redis.Redis.from_url(env.url)
    env.cleanups.append(client.close)

    def read(key: str, loader: Callable[[], Any], worker: int) -> Any:
        raw = client.get(key)
        if raw is not None:
            return json.loads(raw)
        value = loader()
        client.set(key, json.dumps(value), ex=TTL_S)
        return value

    return read, []


async def stampede_raw_async(env: Env) -> Any:
    # redis-py's default asyncio pool refuses a command past 100 connections in use: wait.
    pool = redis.asyncio.BlockingConnectionPool.from_url(env.url, max_connections=100)
    client = redis.asyncio.Redis(connection_pool=pool)
    env.async_cleanups.append(client.aclose)

    async def read(key: str, loader: Callable[[], Awaitable[Any]], worker: int) -> Any:
        raw = await client.get(key)
        if raw is not None:
            return json.loads(raw)
        value = await loader()
        await client.set(key, json.dumps(value), ex=TTL_S)
        return value

    return read, []


def stampede_redkit_sync(instances: int, **options: Any) -> Callable[[Env], Any]:
    def setup(env: Env) -> Any:
        connection = env.server.connect()
        env.cleanups.append(connection.close)
        caches = [Cache(connection, namespace="stampede", **options) for _ in range(instances)]

        def read(key: str, loader: Callable[[], Any], worker: int) -> Any:
            return caches[worker % instances].get_or_set(key, loader)

        return read, caches

    return setup


def stampede_redkit_async(instances: int, **options: Any) -> Callable[[Env], Awaitable[Any]]:
    async def setup(env: Env) -> Any:
        connection = env.server.connect()
        env.async_cleanups.append(connection.aclose)
        caches = [AsyncCache(connection, namespace="stampede", **options) for _ in range(instances)]

        async def read(key: str, loader: Callable[[], Awaitable[Any]], worker: int) -> Any:
            return await caches[worker % instances].get_or_set(key, loader)

        return read, caches

    return setup


def stampede_sync(read: Any, key: str, reads: int, threads: int) -> tuple[int, float, int]:
    """``threads`` threads, released together, each reading ``key`` ``reads // threads`` times.

    Returns (loader calls, wall seconds from release to the last read, wrong values).
    """
    calls = itertools.count()  # next() on it is atomic under the GIL

    def loader() -> dict[str, Any]:
        next(calls)
        time.sleep(LOAD_S)
        return VALUE

    released: list[float] = []
    barrier = threading.Barrier(threads, action=lambda: released.append(time.perf_counter()))
    wrong = [0] * threads

    def worker(index: int) -> None:
        barrier.wait()
        for _ in range(reads // threads):
            if read(key, loader, index) != VALUE:
                wrong[index] += 1

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - released[0]
    return next(calls), wall, sum(wrong)


async def stampede_async(read: Any, key: str, reads: int) -> tuple[int, float, int]:
    """``reads`` tasks reading ``key`` at once: (loader calls, wall seconds, wrong values)."""
    calls = 0

    async def loader() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(LOAD_S)
        return VALUE

    start = time.perf_counter()
    values = await asyncio.gather(*(read(key, loader, k) for k in range(reads)))
    wall = time.perf_counter() - start
    return calls, wall, sum(value != VALUE for value in values)


# -- the table of rows -------------------------------------------------------------------------

PEERS = {"cashews": "cashews", "aiocache": "aiocache"}


def build_rows(tasks: int = TASKS) -> tuple[list[Row], list[Stampede]]:
    rows: list[Row] = []
    local = local_tier_option()

    def add(section: str, name: str, mode: str, setup: Any, note: str = "", **kw: Any) -> None:
        rows.append(Row(section, name, mode, f"h{len(rows)}", setup, note, **kw))

    for mode, tag in ((SYNC, "sync, 1 client"), (ASYNC, f"async, {tasks} tasks on one loop")):
        is_sync = mode == SYNC
        lib = "redis-py" if is_sync else "redis.asyncio"
        add(
            f"raw {lib} ({tag})",
            f"{lib} GET + json.loads",
            mode,
            sync_raw if is_sync else async_raw,
            "reference row",
            reference=True,
        )
        section = f"redkit ({tag})"
        prefix = "redkit Cache" if is_sync else "redkit AsyncCache"
        defaults = "defaults (json, lease 5 s, early_refresh 1.0), default_ttl 1 h"
        for kind, name, note in (
            ("get", f"{prefix}.get", defaults),
            ("get_or_set", f"{prefix}.get_or_set (warm key: a hit)", defaults),
            ("cached", '@cache.cached(key="{key}") function (hit)', defaults),
            ("local", f"{prefix}.get, local tier on (hit)", f"{local}=60 s" if local else ""),
            ("traced 0.01", f"{prefix}.get, trace on, sample 0.01", "TraceRecorder.to_file"),
            ("traced 1.0", f"{prefix}.get, trace on, sample 1.0", "every read recorded"),
        ):
            if kind == "local" and local is None:
                continue
            if kind.startswith("traced") and "trace" not in inspect.signature(Cache).parameters:
                continue  # a redkit from before the trace recorder
            setup = redkit_sync(kind) if is_sync else redkit_async(kind)
            add(section, name, mode, setup, note)
        if is_sync:
            continue
        add(
            section,
            f"{prefix}.get, autopipeline off",
            mode,
            redkit_async("get", autopipeline=False),
            "Connection(..., autopipeline=False): one connection per command",
        )
        section = f"peers ({tag})"
        add(
            section,
            "cashews get, JSON pickler",
            mode,
            cashews_async("json"),
            'setup(url, pickle_type="json"); else defaults (BlockingConnectionPool of 10, '
            "check_repr=True)",
        )
        add(
            section,
            "cashews get, default pickle",
            mode,
            cashews_async("default"),
            "its default serializer (pickle), as in baseline.md",
        )
        add(
            section,
            "aiocache RedisCache get, JsonSerializer",
            mode,
            aiocache_async,
            "RedisCache(serializer=JsonSerializer())",
        )

    stampedes: list[Stampede] = []

    def stampede(section: str, name: str, mode: str, setup: Any, note: str = "") -> None:
        stampedes.append(Stampede(section, name, mode, f"s{len(stampedes)}", setup, note))

    for mode, tag in (
        (ASYNC, f"async: {READS:,} tasks on one loop"),
        (SYNC, f"sync: {THREADS} threads x {READS // THREADS}"),
    ):
        is_sync = mode == SYNC
        section = f"stampede ({tag})"
        redkit_setup = stampede_redkit_sync if is_sync else stampede_redkit_async
        stampede(
            section,
            "redkit get_or_set, defaults",
            mode,
            redkit_setup(1),
            "single flight + lease 5 s; one cache",
        )
        stampede(
            section,
            "redkit get_or_set, lease=None",
            mode,
            redkit_setup(1, lease=None),
            "single flight only; one cache",
        )
        stampede(
            section,
            "raw GET, on a miss load and SET",
            mode,
            stampede_raw_sync if is_sync else stampede_raw_async,
            "no protection" if is_sync else "no protection; BlockingConnectionPool of 100",
        )
        stampede(
            section,
            f"redkit get_or_set, defaults, {INSTANCES} caches",
            mode,
            redkit_setup(INSTANCES),
            f"reads spread over {INSTANCES} Cache objects, standing in for processes: "
            "single flight per cache, the lease across them",
        )
        stampede(
            section,
            f"redkit get_or_set, lease=None, {INSTANCES} caches",
            mode,
            redkit_setup(INSTANCES, lease=None),
            "as above, without the lease: one load per cache at most",
        )
    return rows, stampedes


def peer_of(name: str) -> str | None:
    return next((dist for dist in PEERS if name.startswith(dist)), None)


# -- the run -----------------------------------------------------------------------------------


def facts_of(binary: str) -> dict[str, str]:
    facts = versions(binary, ("orjson", *PEERS))
    facts["value"] = f"a dict of {len(VALUE)} fields, {len(VALUE_JSON)} bytes as JSON"
    return facts


def take_loads(row: Row) -> int:
    return LOADS.pop(row.slug, 0)


def prepare(
    row: Row, env: Env, loop: asyncio.AbstractEventLoop, admin: redis.Redis, tasks: int
) -> None:
    """Set the row up (its keys written), read every key once, count server commands per read."""
    row.ids = [f"{row.slug}:{i}" for i in range(IDENTIFIERS)]
    if row.mode == SYNC:
        row.op = row.setup(env, row.slug, row.ids)
        values = [row.op(identifier) for identifier in row.ids]
        admin.config_resetstat()
        _, calls, misses = run_sync(row.op, row.ids, 0.1, is_missed)
    else:
        row.op = loop.run_until_complete(row.setup(env, row.slug, row.ids))
        values = loop.run_until_complete(read_all(row.op, row.ids, tasks))
        admin.config_resetstat()
        _, calls, misses = loop.run_until_complete(
            run_async(row.op, row.ids, 0.1, tasks, is_missed)
        )
    row.commands = format_commands(command_stats(admin), calls)
    wrong = sum(value != VALUE for value in values)
    if wrong or misses or take_loads(row):
        raise RuntimeError(f"{row.name}: {wrong} wrong values or misses during warm-up")


def measure(
    rows: list[Row], rounds: int, seconds: float, tasks: int, loop: asyncio.AbstractEventLoop
) -> None:
    """Every row once per round, each between two runs of its reference (see harness)."""
    bracketed_rounds(rows, rounds, lambda row: run_row(row, seconds, tasks, loop), "GET")


def run_row(row: Row, seconds: float, tasks: int, loop: asyncio.AbstractEventLoop) -> float:
    """Run ``row`` for ``seconds``; record and return its reads/s."""
    rate, misses = run_once(row.op, row.ids, row.mode == SYNC, seconds, tasks, loop, is_missed)
    row.rates.append(rate)
    row.misses += misses + take_loads(row)
    return rate


def measure_stampedes(
    stampedes: list[Stampede],
    rounds: int,
    env: Env,
    loop: asyncio.AbstractEventLoop,
    admin: redis.Redis,
    reads: int,
    threads: int,
) -> None:
    for row in stampedes:
        if row.mode == SYNC:
            row.read, row.caches = row.setup(env)
        else:
            row.read, row.caches = loop.run_until_complete(row.setup(env))
    order = list(stampedes)
    shuffler = random.Random(20261126)
    for number in range(1, rounds + 1):
        shuffler.shuffle(order)
        for row in order:
            gc.collect()
            key = f"{row.slug}:round{number}"  # cold: never read nor written before
            admin.config_resetstat()
            if row.mode == SYNC:
                loads, wall, wrong = stampede_sync(row.read, key, reads, threads)
            else:
                loads, wall, wrong = loop.run_until_complete(stampede_async(row.read, key, reads))
            if number == 1:
                row.commands = format_commands(command_stats(admin), 1)
            row.loads.append(loads)
            row.walls.append(wall)
            row.wrong += wrong
        print(f"stampede round {number}/{rounds} done", file=sys.stderr, flush=True)


def table(rows: list[Row], skipped: list[tuple[str, str]]) -> str:
    return rates_table(
        "| what | reads/s: median (min, max) | ratio to raw GET + json.loads, same mode "
        "(median of per-round ratios) | server commands per read",
        rows,
        lambda row: f"**{row.misses} misses**" if row.misses else "",
        skipped,
    )


def stampede_table(stampedes: list[Stampede], reads: int) -> str:
    def line(row: Stampede) -> str | None:
        if not row.loads:
            return None
        loads = f"{statistics.median(row.loads):,g} ({min(row.loads):,}, {max(row.loads):,})"
        wall = f"{statistics.median(row.walls) * 1000:,.0f}"
        extra = []
        errors = sum(cache.stats.errors for cache in row.caches)
        if errors:
            extra.append(f"**{errors} cache errors** (reads Redis did not answer in time)")
        if row.wrong:
            extra.append(f"**{row.wrong} wrong values**")
        note = "; ".join([row.note, *extra])
        return f"| {row.name} | {loads} | {wall} | {row.commands} | {note} |"

    return sectioned_table(
        f"| what | loads per {reads:,} cold reads: median (min, max) | wall ms, median "
        "| server commands, first round (whole stampede) | notes |",
        "|---|---:|---:|---|---|",
        ((row.section, line(row)) for row in stampedes),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 0.2 s")
    parser.add_argument("--rounds", type=int, help="rounds (default 10, quick 2)")
    parser.add_argument("--seconds", type=float, help="seconds per row per round (default 0.5)")
    parser.add_argument("--tasks", type=int, default=TASKS, help="async tasks (default 50)")
    parser.add_argument("--reads", type=int, default=READS, help="stampede reads (default 1000)")
    parser.add_argument("--threads", type=int, default=THREADS, help="sync stampede threads (50)")
    parser.add_argument("--only", help="only rows whose name contains this (references always run)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 10)
    seconds = args.seconds or (0.2 if args.quick else 0.5)
    if args.reads % args.threads:
        parser.error("--reads must be a multiple of --threads")

    rows, stampedes = build_rows(args.tasks)
    skipped: list[tuple[str, str]] = []
    if local_tier_option() is None:
        skipped.extend(
            (
                f"redkit {cls}.get, local tier on (hit)",
                "this redkit's Cache has no local_ttl option",
            )
            for cls in ("Cache", "AsyncCache")
        )
    for dist, module in PEERS.items():
        try:
            __import__(module)
        except ImportError:
            skipped.append((dist, "not installed (pip install -e '.[bench]')"))
            rows = [row for row in rows if peer_of(row.name) != dist]
    if args.only:
        text = args.only.lower()
        rows = [r for r in rows if text in r.name.lower() or r.reference]
        stampedes = [s for s in stampedes if text in s.name.lower()]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with EmbeddedRedis() as server:
        facts = facts_of(server.binary)
        started = datetime.datetime.now(datetime.timezone.utc)
        print(
            f"{len(rows)} rows, {rounds} rounds x {seconds} s, {IDENTIFIERS} identifiers, "
            f"{args.tasks} async tasks; {len(stampedes)} stampede rows; {facts['redis-server']}",
            file=sys.stderr,
            flush=True,
        )
        env = Env(server, server.url)
        admin = server.client()
        try:
            for row in rows:
                prepare(row, env, loop, admin, args.tasks)
            stall, began = cpu_stall_us(), time.monotonic()
            measure(rows, rounds, seconds, args.tasks, loop)
            latencies = latency_table(rows, seconds, args.tasks, loop, is_missed)
            after = cpu_stall_us()
            if stall is not None and after is not None:
                share = (after - stall) / 1e6 / (time.monotonic() - began)
                facts["CPU contention while measuring the hit path"] = (
                    f"{share:.0%} of the time some runnable task waited for a CPU "
                    "(/proc/pressure/cpu; this benchmark alone keeps 2 busy: client + server)"
                )
            measure_stampedes(stampedes, rounds, env, loop, admin, args.reads, args.threads)
        finally:
            for cleanup in env.cleanups:
                cleanup()
            for acleanup in env.async_cleanups:
                loop.run_until_complete(acleanup())
            admin.close()
    loop.close()

    command = "python benchmarks/cache.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"<!-- {command.strip()} | {started:%Y-%m-%d %H:%M} UTC -->")
    for name, value in facts.items():
        print(f"- {name}: {value}")
    print(
        f"- hit path: {rounds} rounds x {seconds} s per row, {IDENTIFIERS} keys per row, "
        f"{args.tasks} async tasks\n"
        f"- stampede: {rounds} rounds, {args.reads:,} cold reads of a fresh key per row per "
        f"round (async: {args.reads:,} tasks; sync: {args.threads} threads x "
        f"{args.reads // args.threads}), loader sleeps {LOAD_S * 1000:.0f} ms\n"
    )
    print(table(rows, skipped))
    print(
        f"\nPer-call latency, {args.tasks} tasks (one more run of each async row, timed per call)\n"
    )
    print(latencies)
    print()
    print(stampede_table(stampedes, args.reads))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(
                {
                    "facts": facts,
                    "started": started.isoformat(),
                    "rounds": rounds,
                    "seconds": seconds,
                    "rows": [
                        {
                            "section": r.section,
                            "name": r.name,
                            "mode": r.mode,
                            "rates": r.rates,
                            "ratios": r.ratios,
                            "commands": r.commands,
                            "misses": r.misses,
                        }
                        for r in rows
                    ],
                    "stampedes": [
                        {
                            "section": s.section,
                            "name": s.name,
                            "mode": s.mode,
                            "loads": s.loads,
                            "walls": s.walls,
                            "commands": s.commands,
                            "wrong": s.wrong,
                            "errors": sum(cache.stats.errors for cache in s.caches),
                        }
                        for s in stampedes
                    ],
                },
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
