"""Django cache backends side by side: redkit's, Django's own RedisCache, and django-redis.

One process, one embedded ``redis-server`` on loopback, Django configured with the three
backends as aliases (each with its defaults: values pickled, ints raw; and redkit's once more
with its cross-process stampede lease on, whose writes cost one more command, and with JSON
values, which need no signature). Rows:

- ``get`` (a hit): ``caches[alias].get(key)`` of a ~1 KB dict, 1000 keys per row, all written
  first; a miss counts against the row.
- ``set``: ``caches[alias].set(key, value)`` of the same dict (default timeout, 300 s).
- ``aget`` (a hit), 50 asyncio tasks: redkit's is natively async; Django's and django-redis's
  run ``get`` through ``sync_to_async`` (that is what their ``aget`` is).

Each mode's reference is Django's own ``RedisCache``: every row runs once per round, in a
shuffled order, between two runs of the reference (``harness.bracketed_rounds``); a row's
ratio is the median of its per-round ratios to the mean of the two. redkit against
django-redis is the median of the per-round ratios of the two rows (same bracketing).

    .venv/bin/python benchmarks/django_cache.py            # 10 rounds of 0.5 s
    .venv/bin/python benchmarks/django_cache.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import (
    bracketed_rounds,
    command_stats,
    format_commands,
    run_once,
    spread,
    versions,
)

from redkit import EmbeddedRedis

IDENTIFIERS = 1000
TASKS = 50
BACKENDS = {
    "redkit": "redkit.web.django.RedisCache",
    "redkit-lease": "redkit.web.django.RedisCache",
    "redkit-json": "redkit.web.django.RedisCache",
    "django": "django.core.cache.backends.redis.RedisCache",
    "django-redis": "django_redis.cache.RedisCache",
}
OPTIONS: dict[str, dict[str, Any]] = {
    "redkit-lease": {"LEASE": "5 s"},
    "redkit-json": {"SERIALIZER": "json"},
}
NAMES = {
    "redkit": "redkit.web.django.RedisCache",
    "redkit-lease": 'redkit, OPTIONS LEASE "5 s" (writes fence loads)',
    "redkit-json": 'redkit, OPTIONS SERIALIZER "json" (not pickled: no signature)',
    "django": "Django's RedisCache",
    "django-redis": "django-redis RedisCache",
}


def make_value() -> dict[str, Any]:
    """A dict of 36 fields of mixed types (about 1 KB as JSON), as in benchmarks/cache.py."""
    kinds: list[Callable[[int], Any]] = [
        lambda i: i * 7919,
        lambda i: f"text value number {i}, some words",
        lambda i: round(i * 3.14159, 4),
        lambda i: i % 8 == 3,
    ]
    return {f"field_{i:02d}": kinds[i % 4](i) for i in range(36)}


VALUE = make_value()


@dataclass
class Row:
    """One backend in one mode."""

    backend: str
    mode: str  # "get", "set" or "aget": rows are bracketed by the reference of their mode
    op: Any = None
    ids: list[str] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    misses: int = 0
    commands: str = ""

    @property
    def reference(self) -> bool:
        return self.backend == "django"


def configure(url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="benchmark-" + "s" * 40,
        CACHES={
            alias: {
                "BACKEND": backend,
                "LOCATION": url,
                "KEY_PREFIX": alias,
                "OPTIONS": OPTIONS.get(alias, {}),
            }
            for alias, backend in BACKENDS.items()
        },
    )
    django.setup()


def prepare(row: Row, loop: asyncio.AbstractEventLoop, admin: Any) -> None:
    """Write the row's keys, make its operation, and count the server commands of one call."""
    from django.core.cache import caches

    cache = caches[row.backend]
    row.ids = [f"{row.mode}:{i}" for i in range(IDENTIFIERS)]
    # No timeout: a run outlasts the default 300 s, and a read must never find a key expired.
    cache.set_many(dict.fromkeys(row.ids, VALUE), timeout=None)
    if row.mode == "get":
        row.op = cache.get
    elif row.mode == "set":
        row.op = lambda key: cache.set(key, VALUE)
    else:
        row.op = cache.aget
    admin.config_resetstat()
    calls = 200
    for key in row.ids[:calls]:
        if row.mode == "aget":
            loop.run_until_complete(row.op(key))
        else:
            row.op(key)
    row.commands = format_commands(command_stats(admin), calls)


def failed(row: Row) -> Callable[[Any], bool]:
    if row.mode == "set":
        return lambda answer: False
    return lambda answer: answer != VALUE


def run_row(row: Row, seconds: float, loop: asyncio.AbstractEventLoop) -> float:
    rate, misses = run_once(row.op, row.ids, row.mode != "aget", seconds, TASKS, loop, failed(row))
    row.rates.append(rate)
    row.misses += misses
    return rate


def table(rows: list[Row]) -> str:
    lines = [
        "| mode | backend | calls/s: median (min, max) | ratio to Django's RedisCache "
        "(median of per-round ratios) | redkit / this (median per round) | "
        "server commands per call |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        redkit = next(r for r in rows if r.mode == row.mode and r.backend == "redkit")
        against = statistics.median(a / b for a, b in zip(redkit.ratios, row.ratios, strict=True))
        rates = spread(row.rates)
        wrong = f"; **{row.misses} misses**" if row.misses else ""
        lines.append(
            f"| {row.mode} | {NAMES[row.backend]} | {rates} | "
            f"{statistics.median(row.ratios):.2f} | {against:.2f}x | {row.commands}{wrong} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 0.2 s")
    parser.add_argument("--rounds", type=int, help="rounds (default 10, quick 2)")
    parser.add_argument("--seconds", type=float, help="seconds per row per round (default 0.5)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 10)
    seconds = args.seconds or (0.2 if args.quick else 0.5)
    rows = [Row(backend, mode) for mode in ("get", "set", "aget") for backend in BACKENDS]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with EmbeddedRedis() as server:
        configure(server.url)
        facts = versions(server.binary, ("django", "django-redis", "redis", "hiredis"))
        started = datetime.datetime.now(datetime.timezone.utc)
        admin = server.client()
        try:
            for row in rows:
                prepare(row, loop, admin)
            bracketed_rounds(rows, rounds, lambda row: run_row(row, seconds, loop), "Django")
        finally:
            admin.close()
            from redkit.web.django.cache import aclose_connections

            loop.run_until_complete(aclose_connections())
            loop.close()
    print(f"{rounds} rounds x {seconds} s per row; started {started:%Y-%m-%d %H:%M} UTC")
    for name, value in facts.items():
        print(f"- {name}: {value}")
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
