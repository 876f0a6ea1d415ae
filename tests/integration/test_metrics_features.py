"""Concurrency leases and the session store's events, counted exactly by PrometheusMetrics on
every backend (the HTTP tests count decisions, cache events and sessions created)."""

from __future__ import annotations

from redkit import AsyncSessionStore, SessionStore
from redkit.metrics import PrometheusMetrics
from redkit.ratelimit import AsyncConcurrency, Concurrency, ConcurrencyLimit
from support.backends import BackendCase, Blocking
from support.metrics import prom as prom  # the fixture
from support.metrics import samples, value


def test_leases(backend: BackendCase, prom: PrometheusMetrics) -> None:
    made = (AsyncConcurrency if backend.is_async else Concurrency)(
        backend.conn, ConcurrencyLimit(2, "1 m"), prefix="jobs"
    )
    jobs = Blocking(made, backend)
    first, second = jobs.acquire("report"), jobs.acquire("report")
    assert first
    assert second
    assert not jobs.acquire("report")  # the third: refused
    assert jobs.release(first)
    assert not jobs.release(first)  # not held any more: not a release
    events = "redkit_concurrency_events_total"
    assert value(prom, events, prefix="jobs", event="acquired") == 2
    assert value(prom, events, prefix="jobs", event="refused") == 1
    assert value(prom, events, prefix="jobs", event="released") == 1


def test_session_events(backend: BackendCase, prom: PrometheusMetrics) -> None:
    made = (AsyncSessionStore if backend.is_async else SessionStore)(backend.conn, prefix="web")
    store = Blocking(made, backend)
    ids = [store.create({"n": n}, user_id="ada") for n in range(3)]
    assert store.get(ids[0]) is not None
    assert store.rotate(ids[0]) is not None
    assert store.delete(ids[1])
    assert store.revoke_user_sessions("ada") == 2  # the rotated one and the third
    assert store.get(ids[2]) is None
    events = "redkit_sessions_events_total"
    counted = {
        dict(labels)["event"]: v
        for (name, labels), v in samples(prom).items()
        if name == events and dict(labels)["prefix"] == "web"
    }
    assert counted == {
        "created": 3,
        "loaded": 1,
        "rotated": 1,
        "deleted": 1,
        "revoked": 2,
        "missing": 1,
    }
