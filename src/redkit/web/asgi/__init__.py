"""redkit in Starlette and any ASGI app: pure ASGI middleware (needs ``redkit[starlette]``).

- :class:`SessionMiddleware`: server-side sessions, ``request.session`` a lazy
  :class:`RequestSession` (:mod:`.sessions`).
- :class:`RateLimitMiddleware`: an app-wide rate limit, decided before routing
  (:mod:`.ratelimit`); :class:`ScopeRequest` is what its key functions see (:mod:`.request`).
- :func:`cache_response`: response caching for Starlette and FastAPI endpoints, on an
  :class:`~redkit.AsyncCache` (:mod:`.cache`).
"""

from __future__ import annotations

from redkit.web._extras import framework_missing

try:
    import starlette  # noqa: F401  (every module here builds on Starlette's types)
except ModuleNotFoundError as exc:  # an optional dependency: say which extra
    raise framework_missing(__name__, "Starlette", "starlette", exc) from exc

from redkit.web.asgi.cache import cache_response, invalidate_response
from redkit.web.asgi.ratelimit import (
    WEBSOCKET_REFUSED,
    RateLimitMiddleware,
    refuse_websocket,
    send_too_many_requests,
)
from redkit.web.asgi.request import ScopeRequest
from redkit.web.asgi.sessions import RequestSession, SessionMiddleware, get_session, load_session

__all__ = [
    "WEBSOCKET_REFUSED",
    "RateLimitMiddleware",
    "RequestSession",
    "ScopeRequest",
    "SessionMiddleware",
    "cache_response",
    "get_session",
    "invalidate_response",
    "load_session",
    "refuse_websocket",
    "send_too_many_requests",
]
