"""Server-side sessions: ``SessionStore`` and ``AsyncSessionStore``.

Web middleware lives beside them: :mod:`redkit.sessions.asgi` (Starlette, FastAPI) and
:mod:`redkit.sessions.flask`. Their main names are importable from here too, but only load
their framework when first used, so ``import redkit`` needs neither Starlette nor Flask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from redkit.sessions.model import Session, SessionConflictError, SessionInfo
from redkit.sessions.store import AsyncSessionStore, SessionStore
from redkit.sessions.web import (
    KEEP,
    SessionEndedError,
    SessionNotLoadedError,
    SessionUnavailableError,
)

if TYPE_CHECKING:
    from redkit.sessions.asgi import RequestSession, SessionMiddleware, get_session, load_session
    from redkit.sessions.flask import FlaskSession, RedisSessionInterface, RedisSessions

__all__ = [
    "KEEP",
    "AsyncSessionStore",
    "FlaskSession",
    "RedisSessionInterface",
    "RedisSessions",
    "RequestSession",
    "Session",
    "SessionConflictError",
    "SessionEndedError",
    "SessionInfo",
    "SessionMiddleware",
    "SessionNotLoadedError",
    "SessionStore",
    "SessionUnavailableError",
    "get_session",
    "load_session",
]

# Names of the web modules, imported on first use (they import their framework).
_LAZY = {
    "RequestSession": "asgi",
    "SessionMiddleware": "asgi",
    "get_session": "asgi",
    "load_session": "asgi",
    "FlaskSession": "flask",
    "RedisSessionInterface": "flask",
    "RedisSessions": "flask",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'redkit.sessions' has no attribute {name!r}")
    return getattr(importlib.import_module(f"redkit.sessions.{module}"), name)
