"""Django sessions: redkit's engine against Django's cache engine on Django's and django-redis's
Redis caches, per request.

One process, one embedded ``redis-server`` on loopback, one thread (Django's session engines
are blocking). A "request" opens a stored session by its key and either reads one value
(``read``) or also changes it and saves (``read + save``). Rows side by side, interleaved by
``harness.bracketed_rounds`` (R A R ...); the reference of each section is Django's cache
engine (``django.contrib.sessions.backends.cache``) on Django's own ``RedisCache``. redkit's
engine also extends the idle timeout on each read, keeps a per-user index and merges saves
key by key, which the others do not.

    .venv/bin/python benchmarks/django_sessions.py            # 7 rounds of 2 s runs
    .venv/bin/python benchmarks/django_sessions.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

import harness
from observe import Row  # the same rows: what runs, what it measured

from redkit.drivers.embedded import EmbeddedRedis

SESSIONS = 1000
IDS = [str(n) for n in range(SESSIONS)]


def _configure(url: str) -> None:
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench-" + "k" * 40,
        INSTALLED_APPS=["django.contrib.sessions"],
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
            "django_redis": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url},
        },
        SESSION_ENGINE="redkit.web.django.sessions",
        REDKIT_SESSIONS={"LOCATION": url},
        USE_TZ=True,
    )
    django.setup()


def _engines() -> dict[str, Any]:
    """Each engine's ``SessionStore`` maker, by row name."""
    from django.contrib.sessions.backends import cache as cache_engine
    from django.core.cache import caches

    from redkit.web.django.sessions import SessionStore as RedkitStore

    def on_cache(alias: str) -> Any:
        def make(key: str | None = None) -> Any:
            store = cache_engine.SessionStore(key)
            store._cache = caches[alias]  # type: ignore[attr-defined]
            return store

        return make

    return {
        "Django's cache engine on Django's RedisCache": on_cache("default"),
        "Django's cache engine on django-redis": on_cache("django_redis"),
        "redkit.web.django.sessions": RedkitStore,
    }


def main() -> None:
    """Run the rows and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    rounds, seconds = (2, 0.5) if args.quick else (7, 2.0)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    loop = asyncio.new_event_loop()
    with EmbeddedRedis() as server:
        _configure(server.url)
        rows: list[Row] = []
        for name, make in _engines().items():
            keys = {}
            for identifier in IDS:
                store = make()
                store["n"] = 0
                store["cart"] = list(range(10))
                store.save()
                keys[identifier] = store.session_key

            def read(identifier: str, make: Any = make, keys: dict[str, str] = keys) -> Any:
                return make(keys[identifier])["n"]

            def write(identifier: str, make: Any = make, keys: dict[str, str] = keys) -> Any:
                store = make(keys[identifier])
                store["n"] += 1
                store.save()
                return store["n"]

            reference = name.endswith("Django's RedisCache")
            rows += [
                Row("read", name, "read", reference, read, sync=True),
                Row("read + save", name, "write", reference, write, sync=True),
            ]

        def failed(answer: Any) -> bool:
            return answer is None

        def run(row: Row) -> float:
            rate, failures = harness.run_once(row.op, IDS, row.sync, seconds, 1, loop, failed)
            row.rates.append(rate)
            if failures:
                row.note = f"**{failures} failed answers**"
            return rate

        with server.client() as admin:  # what one request sends, counted by the server
            for row in rows:
                admin.config_resetstat()
                for identifier in IDS[:100]:
                    row.op(identifier)
                row.commands = harness.format_commands(harness.command_stats(admin), 100)
        harness.bracketed_rounds(rows, rounds, run, "django sessions")
        from django.core.cache import caches

        from redkit.web.django.connection import close_connections

        caches.close_all()
        close_connections()
    loop.close()
    rows.sort(key=lambda row: (row.section, not row.reference))
    print(harness.rates_table("| row | requests/s | ratio | commands", rows, lambda r: "", []))
    for row in rows:
        if not row.reference:
            print(f"{row.section}, {row.name}: {statistics.median(row.ratios):.2f}x")


if __name__ == "__main__":
    main()
