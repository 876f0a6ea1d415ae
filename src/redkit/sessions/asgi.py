"""Deprecated: the ASGI session middleware moved to :mod:`redkit.web.asgi`.

``from redkit.sessions.asgi import SessionMiddleware`` still works for one release, with a
``DeprecationWarning``; import it from :mod:`redkit.web.asgi` (or :mod:`redkit.web.fastapi`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Imported now, so a missing Starlette fails at this import, as it always did.
import redkit.web.asgi.sessions
from redkit.core.moved import moved_names

if TYPE_CHECKING:
    from redkit.web.asgi.sessions import WEBSOCKET_RETRY as WEBSOCKET_RETRY
    from redkit.web.asgi.sessions import RequestSession as RequestSession
    from redkit.web.asgi.sessions import SessionMiddleware as SessionMiddleware
    from redkit.web.asgi.sessions import get_session as get_session
    from redkit.web.asgi.sessions import load_session as load_session

__all__ = ["RequestSession", "SessionMiddleware", "get_session", "load_session"]

_moved = moved_names(
    __name__,
    {
        **dict.fromkeys(__all__, "redkit.web.asgi"),
        "WEBSOCKET_RETRY": redkit.web.asgi.sessions.__name__,
    },
)


def __getattr__(name: str) -> Any:
    return _moved(name)
