"""Blocking redkit from 1 and from 16 threads: decisions and cache hits against raw redis-py.

One process, one embedded ``redis-server`` on loopback. Four groups of rows, each with its raw
redis-py reference (see ``harness.bracketed_rounds``: a row's ratio is to the reference runs
just before and after it, in shuffled rounds):

- 1 thread, decisions: the hand-written one-round-trip fixed window (``register_script``,
  INCRBY + PEXPIRE, through redis-py's ``EVALSHA``) is the reference; ``limits``'
  ``FixedWindowRateLimiter`` and redkit's ``Ratelimit`` with ``FixedWindow``;
- 16 threads, decisions: the same, from 16 threads sharing one client (redis-py's pool);
- 1 thread and 16 threads, cache hits: ``GET`` + ``json.loads`` against ``Cache.get``.

redkit rows run with the blocking driver's shared connection (the default) and without it
(``RedisDriver(shared=False)``: redis-py's pool, as before). Allow path only; every read hits.

    .venv/bin/python benchmarks/sync_threads.py            # 5 rounds of 1 s a row
    .venv/bin/python benchmarks/sync_threads.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from harness import bracketed_rounds, cpu_stall_us, versions

from redkit import EmbeddedRedis, FixedWindow, Ratelimit
from redkit.cache import Cache
from redkit.core.driver import AsyncDriver
from redkit.drivers.connect import Connection
from redkit.drivers.redis import RedisDriver

HIGH = 10**9
WINDOW_S = 60
IDENTIFIERS = 1000
HANDWRITTEN_LUA = (Path(__file__).parent / "lua" / "handwritten.lua").read_text(encoding="utf-8")
VALUE = {f"field_{i:02d}": (i * 7919 if i % 2 else f"text value number {i}") for i in range(36)}

Op = Callable[[str], bool]  # True: the call did what it should (admitted, a hit)


@dataclass
class Row:
    """One benchmark row and what it measured."""

    name: str
    mode: str
    setup: Callable[[str, str, list[str]], Op]  # (url, slug, identifiers) -> op
    reference: bool = False
    op: Any = None
    ids: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    failed: int = 0


class _UnsharedBackend:
    """A backend whose blocking driver takes redis-py's own path for every command."""

    is_cluster = False

    def __init__(self, url: str) -> None:
        self.driver = RedisDriver(redis.Redis.from_url(url, socket_timeout=5.0), shared=False)

    def sync_driver(self, *, timeout: float | None = None) -> RedisDriver:
        return self.driver

    def async_driver(self, *, timeout: float | None = None) -> AsyncDriver:
        raise NotImplementedError("blocking rows only")


CLEANUPS: list[Callable[[], Any]] = []


def _backend(url: str, shared: bool) -> Any:
    if shared:
        conn = Connection(url)
        CLEANUPS.append(conn.close)
        return conn
    backend = _UnsharedBackend(url)
    CLEANUPS.append(backend.driver.close)
    return backend


# -- rows --------------------------------------------------------------------------------------


def raw_handwritten(url: str, slug: str, ids: list[str]) -> Op:
    client = redis.Redis.from_url(url)
    CLEANUPS.append(client.close)
    script = client.register_script(HANDWRITTEN_LUA)
    args = [1, WINDOW_S * 1000]
    return lambda identifier: script(keys=[identifier], args=args) <= HIGH


def limits_fixed(url: str, slug: str, ids: list[str]) -> Op:
    import limits
    import limits.storage
    import limits.strategies

    limiter = limits.strategies.FixedWindowRateLimiter(limits.storage.RedisStorage(url))
    item = limits.parse(f"{HIGH}/{WINDOW_S} seconds")
    hit = limiter.hit
    return lambda identifier: hit(item, identifier)


def redkit_fixed(shared: bool) -> Callable[[str, str, list[str]], Op]:
    def setup(url: str, slug: str, ids: list[str]) -> Op:
        limiter = Ratelimit(_backend(url, shared), FixedWindow(HIGH, f"{WINDOW_S} s"), prefix=slug)
        limit = limiter.limit
        return lambda identifier: limit(identifier).success

    return setup


def raw_get(url: str, slug: str, ids: list[str]) -> Op:
    client = redis.Redis.from_url(url)
    CLEANUPS.append(client.close)
    with client.pipeline(transaction=False) as pipe:
        for identifier in ids:
            pipe.set(identifier, json.dumps(VALUE), ex=3600)
        pipe.execute()
    get, loads = client.get, json.loads

    def op(identifier: str) -> bool:
        raw = get(identifier)
        return raw is not None and bool(loads(raw))

    return op


def redkit_get(shared: bool) -> Callable[[str, str, list[str]], Op]:
    def setup(url: str, slug: str, ids: list[str]) -> Op:
        cache = Cache(_backend(url, shared), namespace=slug, default_ttl=3600)
        cache.set_many(dict.fromkeys(ids, VALUE))
        get = cache.get
        return lambda identifier: get(identifier) is not None

    return setup


def build_rows(threads: int) -> list[Row]:
    rows: list[Row] = []
    for count in (1, threads):
        tag = f"{count} thread{'s' if count > 1 else ''}"
        decisions, hits = f"{tag}: decisions", f"{tag}: cache hits"
        rows += [
            Row(f"raw redis-py hand-written INCRBY+PEXPIRE EVALSHA ({tag})", decisions,
                raw_handwritten, reference=True),
            Row(f"limits FixedWindowRateLimiter ({tag})", decisions, limits_fixed),
            Row(f"redkit Ratelimit FixedWindow, shared connection ({tag})", decisions,
                redkit_fixed(True)),
            Row(f"redkit Ratelimit FixedWindow, redis-py pool ({tag})", decisions,
                redkit_fixed(False)),
            Row(f"raw redis-py GET + json.loads ({tag})", hits, raw_get, reference=True),
            Row(f"redkit Cache.get, shared connection ({tag})", hits, redkit_get(True)),
            Row(f"redkit Cache.get, redis-py pool ({tag})", hits, redkit_get(False)),
        ]  # fmt: skip
    return rows


# -- measuring ---------------------------------------------------------------------------------


def run_threads(op: Op, ids: list[str], threads: int, seconds: float) -> tuple[float, int]:
    """``threads`` threads calling ``op`` over their share of ``ids``: (calls/s, failed)."""
    counts = [0] * threads
    failures = [0] * threads
    start = threading.Barrier(threads + 1)
    clock = time.perf_counter
    end = 0.0

    def worker(n: int) -> None:
        mine = ids[n::threads]
        size = len(mine)
        index = calls = failed = 0
        start.wait()
        while True:
            for _ in range(10):
                if not op(mine[index]):
                    failed += 1
                index = index + 1 if index + 1 < size else 0
            calls += 10
            if clock() >= end:
                break
        counts[n], failures[n] = calls, failed

    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in workers:
        thread.start()
    gc.collect()
    began = clock()
    end = began + seconds
    start.wait()
    for thread in workers:
        thread.join()
    return sum(counts) / (clock() - began), sum(failures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.3 s")
    parser.add_argument("--only", help='groups whose name contains this ("decisions", "1 thread")')
    args = parser.parse_args()
    rounds, seconds = (2, 0.3) if args.quick else (args.rounds, args.seconds)

    rows = build_rows(args.threads)
    if args.only:
        rows = [row for row in rows if args.only in row.mode]
    with EmbeddedRedis() as server:
        facts = versions(server.binary, ("limits",))
        for number, row in enumerate(rows):
            slug = f"t{number}"
            row.ids = [f"{slug}:{n}" for n in range(IDENTIFIERS)]
            row.op = row.setup(server.url, slug, row.ids)

        def run(row: Row) -> float:
            threads = 1 if row.mode.startswith("1 thread:") else args.threads
            rate, failed = run_threads(row.op, row.ids, threads, seconds)
            row.rates.append(rate)
            row.failed += failed
            return rate

        for row in rows:  # warm up: connections opened, scripts loaded, keys created
            run(row)
            row.rates.clear()
            row.failed = 0
        stall, began = cpu_stall_us(), time.monotonic()
        bracketed_rounds(rows, rounds, run, "reference")
        after = cpu_stall_us()
        for cleanup in CLEANUPS:
            cleanup()

    print(f"\n{rounds} rounds of {seconds} s a row; {IDENTIFIERS} identifiers a row")
    for name in ("redis-server", "python", "redis", "hiredis", "limits"):
        print(f"- {name}: {facts.get(name)}")
    if stall is not None and after is not None:
        share = (after - stall) / 1e6 / (time.monotonic() - began)
        print(f"- CPU contention while measuring: {share:.0%} (/proc/pressure/cpu)")
    print("\n| row | calls/s (median) | / reference of its group (median) |")
    print("|---|---:|---:|")
    for row in rows:
        note = f" (**{row.failed} failed**)" if row.failed else ""
        print(
            f"| {row.name}{note} | {statistics.median(row.rates):,.0f} "
            f"| {statistics.median(row.ratios):.2f}x |"
        )
    # The goal that is not against a reference: redkit over limits, per round.
    for count in (1, args.threads):
        tag = f"({count} thread{'s' if count > 1 else ''})"
        ours = next(
            (r for r in rows if r.name.startswith("redkit Ratelimit") and tag in r.name), None
        )
        theirs = next((r for r in rows if r.name.startswith("limits") and tag in r.name), None)
        if ours is None or theirs is None:
            continue
        per_round = [a / b for a, b in zip(ours.ratios, theirs.ratios, strict=True)]
        print(f"\nredkit FixedWindow (shared) / limits {tag}: {statistics.median(per_round):.2f}x")


if __name__ == "__main__":
    main()
