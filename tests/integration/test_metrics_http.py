"""Scraped over HTTP equals the operations done: the FastAPI and Flask examples on a real
server, redkit on every backend (the sync cases through Flask, the async through FastAPI)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
from examples.metrics_fastapi import create_app as fastapi_app
from examples.metrics_flask import create_app as flask_app

from redkit import AsyncCache, AsyncSessionStore, Cache, FixedWindow, SessionStore
from redkit.metrics import PrometheusMetrics
from redkit.metrics.events import FEATURES
from support.backends import BackendCase, Blocking
from support.metrics import Samples, parse, samples, value
from support.metrics import prom as prom  # the fixture
from support.web import serve_asgi, serve_wsgi
from support.windows import early_in_window


@contextlib.contextmanager
def served(backend: BackendCase, metrics: PrometheusMetrics) -> Iterator[httpx.Client]:
    """The example of the backend's mode, serving on loopback; a client of it."""
    if backend.is_async:
        server = serve_asgi(fastapi_app(backend.conn, metrics), backend.conn)
    else:
        server = serve_wsgi(flask_app(backend.conn, metrics))
    with server as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def user_path(backend: BackendCase, user_id: int, client: str) -> str:
    # FastAPI takes the client as a query parameter, the Flask example in the path.
    if backend.is_async:
        return f"/users/{user_id}?client={client}"
    return f"/users/{user_id}/{client}"


def scrape(client: httpx.Client) -> Samples:
    response = client.get("/metrics", follow_redirects=True)  # as Prometheus follows them
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_the_scrape_counts_every_decision_hit_miss_and_session(
    backend: BackendCase, prom: PrometheusMetrics
) -> None:
    with served(backend, prom) as client:
        early_in_window(60, needed_s=10)  # the example's limit: 5 a minute, epoch-aligned
        codes = [client.get(user_path(backend, 1, "alice")).status_code for _ in range(7)]
        assert client.get(user_path(backend, 2, "bob")).status_code == 200
        for user_id in (1, 2, 3):
            assert client.post(f"/login/{user_id}").status_code == 200
        scraped = scrape(client)
    assert codes == [200] * 5 + [429] * 2
    decisions = "redkit_ratelimit_decisions_total"
    assert value(scraped, decisions, prefix="api", outcome="allowed") == 6
    # The first refusal is Redis's; the ephemeral cache answers the next from memory.
    assert value(scraped, decisions, prefix="api", outcome="blocked") == 1
    assert value(scraped, decisions, prefix="api", outcome="cache_block") == 1
    assert value(scraped, "redkit_ratelimit_decision_seconds_count", prefix="api") == 8
    events = "redkit_cache_events_total"
    assert value(scraped, events, namespace="users", event="misses") == 2
    assert value(scraped, events, namespace="users", event="loads") == 2
    assert value(scraped, events, namespace="users", event="hits") == 4
    assert value(scraped, "redkit_cache_load_seconds_count", namespace="users") == 2
    assert value(scraped, "redkit_sessions_events_total", prefix="sess", event="created") == 3
    kind = backend.topology
    assert value(scraped, "redkit_driver_round_trips_total", driver=kind) > 0
    # No identifier, key or session id is a label value anywhere.
    labels = {v for _, pairs in scraped for _, v in pairs}
    assert not labels & {"alice", "bob", "user:1", "1", "2", "3"}


def test_a_thousand_identifiers_add_no_series(
    backend: BackendCase, prom: PrometheusMetrics
) -> None:
    # No decision budget: a slow machine must not turn an allowed decision into a timeout.
    limiter = backend.ratelimit(FixedWindow(1, "1 m"), prefix="cardinality", timeout=None)
    cache = Blocking(
        (AsyncCache if backend.is_async else Cache)(backend.conn, namespace="cards"), backend
    )
    store = Blocking(
        (AsyncSessionStore if backend.is_async else SessionStore)(
            backend.conn, prefix="cards-sess"
        ),
        backend,
    )

    def work(ids: range) -> None:
        names = [f"user-{n}" for n in ids]
        for name in names:
            limiter.limit(name)
        limiter.limit_many(names)  # each refused now: a second outcome, the same labels
        cache.set_many({f"key-{n}": n for n in ids})
        assert cache.get_many([f"key-{n}" for n in ids]) == {f"key-{n}": n for n in ids}
        for n in ids[:100]:
            store.create({"n": n}, user_id=n)

    work(range(10))
    series = set(samples(prom))
    work(range(10, 1010))
    after = samples(prom)
    # A series that the second round adds can only be a word of a vocabulary appearing late
    # (a timeout under load, say): never an identifier, a key, a user.
    added = set(after) - series
    words = {word for feature in FEATURES.values() for word in feature.counters}
    assert {v for _, labels in added for _, v in labels} <= words, added
    # Every decision counted once, whichever its outcome (a window may end during the test:
    # the limit is per minute, aligned to the epoch, so some second decisions are allowed).
    decided = sum(
        v
        for (name, labels), v in after.items()
        if name == "redkit_ratelimit_decisions_total" and ("prefix", "cardinality") in labels
    )
    assert decided == 2020
    hits = value(after, "redkit_cache_events_total", namespace="cards", event="hits")
    assert hits == 1010
