"""redkit's dashboard: rate limits, caches, sessions and the keyspace of a Redis, in a browser.

``Dashboard(redis, token=...)`` is an ASGI app (Starlette) to serve on its own
(:func:`redkit.dashboard.server.serve`, ``redkit dashboard``) or to mount under a FastAPI or
Starlette app. Needs the ``dashboard`` extra: ``pip install 'redkit[dashboard]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redkit.dashboard.app import Dashboard

__all__ = ["Dashboard"]


def __getattr__(name: str) -> Any:
    # Lazily: importing the package must not need Starlette, only using the app does.
    if name == "Dashboard":
        from redkit.dashboard.app import Dashboard

        return Dashboard
    raise AttributeError(f"module 'redkit.dashboard' has no attribute {name!r}")
