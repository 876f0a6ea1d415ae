"""A Flask app whose rate limit, cache and sessions are measured at ``/metrics``.

Run it (Prometheus then scrapes ``http://127.0.0.1:5000/metrics``)::

    REDIS_URL=redis://localhost:6379 flask --app examples.metrics_flask:create_app run
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, jsonify
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from redkit import Cache, FixedWindow, Ratelimit, SessionStore, from_env
from redkit.metrics import PrometheusMetrics

__all__ = ["create_app"]


def create_app(redis: Any = None, metrics: PrometheusMetrics | None = None) -> Flask:
    """The Flask app: blocking facades on ``redis``, which ``REDIS_URL`` names if not given.

    Without ``metrics``, every redkit instance of the process reports to prometheus-client's
    default registry, which ``/metrics`` serves.
    """
    if metrics is None:
        metrics = PrometheusMetrics().enable()
    backend = redis or from_env()
    cache = Cache(backend, namespace="users")
    limiter = Ratelimit(backend, FixedWindow(5, "1 m"), prefix="api")
    sessions = SessionStore(backend, prefix="sess")

    app = Flask(__name__)
    # /metrics is prometheus-client's WSGI app, beside Flask's own routes.
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": metrics.wsgi_app()}
    )

    @app.get("/users/<int:user_id>/<client>")
    def user(user_id: int, client: str) -> Any:
        if not limiter.limit(client).success:  # the identifier: never a label
            abort(429)
        return jsonify(cache.get_or_set(f"user:{user_id}", lambda: {"id": user_id}))

    @app.post("/login/<int:user_id>")
    def login(user_id: int) -> Any:
        return jsonify(session=sessions.create({"theme": "dark"}, user_id=user_id))

    return app
