"""OpenTelemetry through the real SDK on every backend: exact counts, and each load's span a
child of the span that was current where the cache was called (a request handler's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from opentelemetry.trace import SpanContext

from redkit import AsyncCache, Cache, FixedWindow
from redkit.drivers.connect import Connection
from support.backends import BackendCase
from support.metrics import Otel
from support.web import serve_asgi
from support.windows import early_in_window


@pytest.fixture
def otel() -> Iterator[Otel]:
    made = Otel(durations=("cache.load", "ratelimit.decision"))
    made.observer.enable()
    yield made
    made.observer.disable()
    made.close()


def test_counts_and_spans(backend: BackendCase, otel: Otel) -> None:
    limiter = backend.ratelimit(FixedWindow(3, "1 m"), prefix="otel-api", timeout=None)
    cache_type = AsyncCache if backend.is_async else Cache
    cache: Any = cache_type(backend.conn, namespace="otel-users")
    tracer = otel.tracers.get_tracer("app")

    def load() -> dict[str, int]:
        return {"id": 1}

    # The handler runs where its framework runs it: in the event loop for the asyncio cases.
    async def async_handler() -> SpanContext:
        with tracer.start_as_current_span("GET /users/1") as span:
            assert await cache.get_or_set("user:1", load) == {"id": 1}
            assert await cache.get_or_set("user:1", load) == {"id": 1}
            return span.get_span_context()

    def sync_handler() -> SpanContext:
        with tracer.start_as_current_span("GET /users/1") as span:
            assert cache.get_or_set("user:1", load) == {"id": 1}
            assert cache.get_or_set("user:1", load) == {"id": 1}
            return span.get_span_context()

    handler = backend.loop.run(async_handler()) if backend.is_async else sync_handler()
    early_in_window(60)  # 3 a minute, epoch-aligned: not across two windows
    outcomes = [limiter.limit("alice").success for _ in range(4)]
    assert outcomes == [True, True, True, False]

    points: Any = otel.points()
    users = ("redkit.namespace", "otel-users")
    for event, n in (("misses", 1), ("loads", 1), ("hits", 1)):
        assert (
            points[("redkit.cache.events", frozenset({users, ("redkit.event", event)}))].value == n
        )
    api = ("redkit.prefix", "otel-api")
    allowed = points[
        ("redkit.ratelimit.decisions", frozenset({api, ("redkit.outcome", "allowed")}))
    ]
    assert allowed.value == 3
    blocked = points[
        ("redkit.ratelimit.decisions", frozenset({api, ("redkit.outcome", "blocked")}))
    ]
    assert blocked.value == 1
    assert points[("redkit.ratelimit.decision.duration", frozenset({api}))].count == 4
    assert (
        points[
            ("redkit.driver.round_trips", frozenset({("redkit.driver", backend.topology)}))
        ].value
        > 0
    )

    spans = otel.exporter.get_finished_spans()
    loads = [span for span in spans if span.name == "redkit.cache.load"]
    assert len(loads) == 1  # the second call was a hit: no load, no span
    (span,) = loads
    assert span.parent is not None
    assert span.parent.span_id == handler.span_id
    assert span.context.trace_id == handler.trace_id
    assert dict(span.attributes or {}) == {"redkit.namespace": "otel-users"}
    (outer,) = [s for s in spans if s.name == "GET /users/1"]
    assert outer.start_time <= span.start_time <= span.end_time <= outer.end_time


def test_over_http_a_loads_span_is_a_child_of_the_requests_span(
    conn: Connection, otel: Otel
) -> None:
    tracer = otel.tracers.get_tracer("server")
    cache = AsyncCache(conn, namespace="otel-http")
    app = FastAPI()

    @app.middleware("http")
    async def traced(request: Request, call_next: Any) -> Any:
        # What a server instrumentation does: one span per request, current while it runs.
        with tracer.start_as_current_span(f"{request.method} {request.url.path}"):
            return await call_next(request)

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> Any:
        return await cache.get_or_set(f"user:{user_id}", lambda: {"id": user_id})

    with serve_asgi(app, conn) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/users/1", "/users/2", "/users/1"):
            assert client.get(path).status_code == 200
    spans = otel.exporter.get_finished_spans()
    requests = {span.context.span_id: span.name for span in spans if span.name.startswith("GET")}
    loads = [span for span in spans if span.name == "redkit.cache.load"]
    assert len(requests) == 3
    assert [requests[span.parent.span_id] for span in loads if span.parent] == [
        "GET /users/1",
        "GET /users/2",
    ]
