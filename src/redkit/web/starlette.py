"""Deprecated: the ASGI rate-limit middleware moved to :mod:`redkit.web.asgi`.

``from redkit.web.starlette import RateLimitMiddleware`` still works for one release, with a
``DeprecationWarning``; import it from :mod:`redkit.web.asgi`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Imported now, so a missing Starlette fails at this import, as it always did.
import redkit.web.asgi
from redkit.core.moved import moved_names

if TYPE_CHECKING:
    from redkit.web.asgi import WEBSOCKET_REFUSED as WEBSOCKET_REFUSED
    from redkit.web.asgi import RateLimitMiddleware as RateLimitMiddleware
    from redkit.web.asgi import ScopeRequest as ScopeRequest
    from redkit.web.asgi import refuse_websocket as refuse_websocket
    from redkit.web.asgi import send_too_many_requests as send_too_many_requests

__all__ = [
    "WEBSOCKET_REFUSED",
    "RateLimitMiddleware",
    "ScopeRequest",
    "refuse_websocket",
    "send_too_many_requests",
]

_moved = moved_names(__name__, dict.fromkeys(__all__, redkit.web.asgi.__name__))


def __getattr__(name: str) -> Any:
    return _moved(name)
