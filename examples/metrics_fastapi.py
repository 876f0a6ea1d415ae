"""A FastAPI app whose rate limit, cache and sessions are measured at ``/metrics``.

Run it (Prometheus then scrapes ``http://127.0.0.1:8000/metrics``)::

    REDIS_URL=redis://localhost:6379 uvicorn --factory examples.metrics_fastapi:create_app
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException

from redkit import AsyncCache, AsyncRatelimit, AsyncSessionStore, FixedWindow, from_env
from redkit.metrics import PrometheusMetrics

__all__ = ["create_app"]


def create_app(redis: Any = None, metrics: PrometheusMetrics | None = None) -> FastAPI:
    """The app, on ``redis`` (``REDIS_URL`` by default), reporting to ``metrics``.

    ``metrics`` defaults to a :class:`PrometheusMetrics` on prometheus-client's default
    registry, enabled for the whole process.
    """
    redis = from_env() if redis is None else redis
    metrics = PrometheusMetrics().enable() if metrics is None else metrics
    limiter = AsyncRatelimit(redis, FixedWindow(5, "1 m"), prefix="api")
    cache = AsyncCache(redis, namespace="users")
    sessions = AsyncSessionStore(redis, prefix="sess")

    app = FastAPI()
    app.mount("/metrics", metrics.asgi_app())

    @app.get("/users/{user_id}")
    async def user(user_id: int, client: str) -> Any:
        # The client is the limit's identifier: never a label of the metrics.
        if not (await limiter.limit(client)).success:
            raise HTTPException(429, "too many requests")
        return await cache.get_or_set(f"user:{user_id}", lambda: {"id": user_id})

    @app.post("/login/{user_id}")
    async def login(user_id: int) -> dict[str, str]:
        return {"session": await sessions.create({"theme": "dark"}, user_id=user_id)}

    return app
