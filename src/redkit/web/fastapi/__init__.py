"""redkit in FastAPI, in one import: rate limits, response caching and sessions.

::

    from redkit.web.fastapi import (
        RateLimit, RequestSession, SessionMiddleware, by_client_ip, cache_response, load_session,
    )

- Rate limits: the dependency :class:`RateLimit` and the decorator :func:`rate_limit`
  (:mod:`.ratelimit`), or the app-wide :class:`RateLimitMiddleware`; the key functions
  (:func:`by_client_ip`, :func:`by_user`, :func:`by_api_key`, :func:`tier_by_api_key`).
- Response caching: :func:`cache_response` on an :class:`~redkit.AsyncCache`.
- Sessions: :class:`SessionMiddleware`, and ``Depends(load_session)`` for the request's
  :class:`RequestSession`.

The middleware, the cache decorator and sessions are those of :mod:`redkit.web.asgi` (they
serve any Starlette app); this module adds what is FastAPI's own, the dependencies. It needs
``redkit[fastapi]``.
"""

from __future__ import annotations

from redkit.web._extras import framework_missing

try:
    import starlette  # noqa: F401  (FastAPI is built on it, and so is everything here)
except ModuleNotFoundError as exc:  # an optional dependency: say which extra
    raise framework_missing(__name__, "FastAPI", "fastapi", exc) from exc

from redkit.web.asgi import (
    RateLimitMiddleware,
    RequestSession,
    SessionMiddleware,
    cache_response,
    get_session,
    invalidate_response,
    load_session,
)
from redkit.web.clientip import TrustedProxies
from redkit.web.fastapi.ratelimit import (
    RateLimit,
    RateLimitExceeded,
    rate_limit,
    rate_limit_exceeded_handler,
    too_many_requests_response,
)
from redkit.web.keys import by_api_key, by_client_ip, by_user, tier_by_api_key
from redkit.web.rule import Decision

__all__ = [
    "Decision",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitMiddleware",
    "RequestSession",
    "SessionMiddleware",
    "TrustedProxies",
    "by_api_key",
    "by_client_ip",
    "by_user",
    "cache_response",
    "get_session",
    "invalidate_response",
    "load_session",
    "rate_limit",
    "rate_limit_exceeded_handler",
    "tier_by_api_key",
    "too_many_requests_response",
]
