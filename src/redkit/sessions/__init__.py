"""Server-side sessions: ``SessionStore`` and ``AsyncSessionStore``; no web framework here.

The web adapters live in :mod:`redkit.web`: :mod:`redkit.web.asgi` (Starlette, any ASGI app;
also re-exported by :mod:`redkit.web.fastapi`) and :mod:`redkit.web.flask` (the ``Redkit``
extension carries sessions). Their names are still importable from here for one release,
with a ``DeprecationWarning``, and load their framework only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redkit.core.moved import moved_names
from redkit.sessions.model import Session, SessionConflictError, SessionInfo
from redkit.sessions.store import AsyncSessionStore, SessionStore
from redkit.sessions.web import (
    KEEP,
    SessionEndedError,
    SessionNotLoadedError,
    SessionUnavailableError,
)

if TYPE_CHECKING:
    from redkit.web.asgi import RequestSession as RequestSession
    from redkit.web.asgi import SessionMiddleware as SessionMiddleware
    from redkit.web.asgi import get_session as get_session
    from redkit.web.asgi import load_session as load_session
    from redkit.web.flask import FlaskSession as FlaskSession
    from redkit.web.flask import RedisSessionInterface as RedisSessionInterface
    from redkit.web.flask.sessions import RedisSessions as RedisSessions

__all__ = [
    "KEEP",
    "AsyncSessionStore",
    "Session",
    "SessionConflictError",
    "SessionEndedError",
    "SessionInfo",
    "SessionNotLoadedError",
    "SessionStore",
    "SessionUnavailableError",
]

# The web adapters' names, once importable from here: each use warns and imports its module.
_moved = moved_names(
    __name__,
    {
        **dict.fromkeys(
            ("RequestSession", "SessionMiddleware", "get_session", "load_session"),
            "redkit.web.asgi",
        ),
        **dict.fromkeys(("FlaskSession", "RedisSessionInterface"), "redkit.web.flask"),
        "RedisSessions": "redkit.web.flask.sessions",  # deprecated itself: it warns when used
    },
    quiet={"RedisSessions"},
)


def __getattr__(name: str) -> Any:
    return _moved(name)
