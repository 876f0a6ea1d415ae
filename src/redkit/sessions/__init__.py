"""Server-side sessions: ``SessionStore`` and ``AsyncSessionStore``.

Web middleware lives beside them: :mod:`redkit.sessions.asgi` (Starlette, FastAPI) and
:mod:`redkit.sessions.flask`.
"""

from __future__ import annotations

from redkit.sessions.model import Session, SessionConflictError, SessionInfo
from redkit.sessions.store import AsyncSessionStore, SessionStore

__all__ = ["AsyncSessionStore", "Session", "SessionConflictError", "SessionInfo", "SessionStore"]
