"""Rate limits for FastAPI routes: a dependency, and a decorator that needs no parameter.

- ``Depends(RateLimit(limiter, key=...))`` per route, or in
  ``APIRouter(dependencies=[...])`` / ``FastAPI(dependencies=[...])`` for many at once.
- ``@rate_limit(limiter, key=...)`` under the route decorator; the endpoint keeps its own
  signature (the request is injected behind its back, as fastapi-cache does).

App-wide limits are better served by :class:`redkit.web.asgi.RateLimitMiddleware`, which
refuses before routing.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException, WebSocketException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from redkit.web.asgi._inject import inject
from redkit.web.asgi.ratelimit import WEBSOCKET_REFUSED
from redkit.web.asgi.request import ScopeRequest
from redkit.web.request import KeyFunc, TierFunc
from redkit.web.rule import CostFunc, Decision, ExemptFunc, LimitRule, RatelimitLike, limiter_from

if TYPE_CHECKING:
    from redkit.drivers.connect import Connection
    from redkit.drivers.rest import RestConnection

__all__ = [
    "RateLimit",
    "RateLimitExceeded",
    "rate_limit",
    "rate_limit_exceeded_handler",
    "too_many_requests_response",
]

F = TypeVar("F", bound=Callable[..., Any])


class RateLimitExceeded(HTTPException):
    """Raised by :class:`RateLimit` on a refusal; answered as a 429 with the JSON body.

    Attributes:
        decision: the refusal, with its headers and ``retry_after``.

    """

    def __init__(self, decision: Decision) -> None:
        super().__init__(429, "Too many requests", headers=dict(decision.headers))
        self.decision = decision


def too_many_requests_response(decision: Decision) -> Response:
    """The 429 response of a refusal: ``{"error": "Too many requests", "retryAfter": N}``."""
    return Response(
        decision.body(),
        status_code=429,
        headers=dict(decision.headers),
        media_type="application/json",
    )


async def rate_limit_exceeded_handler(request: Request, exc: Exception) -> Response:
    """The exception handler for :class:`RateLimitExceeded` (registered on first refusal).

    Register your own for ``RateLimitExceeded`` (or for status 429) to answer differently.
    """
    if not isinstance(exc, RateLimitExceeded):  # pragma: no cover - registered for it only
        raise exc
    return too_many_requests_response(exc.decision)


def _ensure_handler(request: HTTPConnection) -> None:
    # Starlette's ExceptionMiddleware puts its handler table in the scope; adding ours there
    # (unless the app has one) makes the 429 carry our body without a set-up step. Without
    # that table the exception still gives a 429 with the headers, in FastAPI's own body.
    tables = request.scope.get("starlette.exception_handlers")
    if isinstance(tables, tuple) and tables and isinstance(tables[0], dict):
        tables[0].setdefault(RateLimitExceeded, rate_limit_exceeded_handler)


def _set_headers(response: Response, decision: Decision) -> None:
    for name, value in decision.headers:
        response.headers[name] = value


class RateLimit:
    """A FastAPI dependency that applies a rate limit: ``Depends(RateLimit(limiter))``.

    Admitted requests get the rate-limit headers on their response (when the endpoint returns
    data, or uses the injected ``Response``; a ``Response`` the endpoint builds itself is
    FastAPI's to send as it is: use :func:`rate_limit` or the middleware there). A refusal
    raises :class:`RateLimitExceeded`, answered as a 429 with
    ``{"error": "Too many requests", "retryAfter": N}``, ``Retry-After`` and the headers.
    The dependency's value is the :class:`~redkit.web.rule.Decision` (``None`` when the key
    function exempted the request).

    In a websocket route (or a router's dependencies that cover one) it limits the handshake:
    a refusal raises ``WebSocketException`` with code 1008, which closes the connection
    before it is accepted (the server answers the handshake with a 403).

    Args:
        ratelimit: any redkit limiter (a blocking one runs in the threadpool), or a rate
            string, ``"5/minute"`` or ``"10/second; 1000/day"``: fixed windows on ``redis``.
        redis: the connection of a rate string; without it, the one ``REDIS_URL`` names.
        key: who a request counts against (default: client IP, socket peer).
        tier: for a tiered limiter, a tier name or a function choosing one.
        cost: what one request costs, or a function of the request giving it.
        scope: the counter's name. Each route counts on its own by default (its template is
            part of the identifier); routes given one ``scope`` share a count per client.
        exempt_when: a predicate on the request (a ``RequestInfo``); true: not limited.
        ietf: send ``RateLimit-Policy`` / ``RateLimit``.
        legacy: send ``X-RateLimit-*``.
        policy_name: the IETF headers' name for this limit.

    """

    def __init__(
        self,
        ratelimit: RatelimitLike,
        *,
        redis: Connection | RestConnection | None = None,
        key: KeyFunc | None = None,
        tier: str | TierFunc | None = None,
        cost: int | CostFunc = 1,
        scope: str | None = None,
        exempt_when: ExemptFunc | None = None,
        ietf: bool = True,
        legacy: bool = True,
        policy_name: str = "default",
    ) -> None:
        self.rule = LimitRule(
            limiter_from(ratelimit, redis, blocking=False), key=key, tier=tier, cost=cost,
            scope=scope, ietf=ietf, legacy=legacy, policy_name=policy_name,
            exempt_when=exempt_when,
        )  # fmt: skip

    async def __call__(self, request: HTTPConnection, response: Response) -> Decision | None:
        """Decide ``request`` (or a websocket handshake); add the headers or refuse it."""
        decision = await self.rule.check_async(
            ScopeRequest(request.scope, request), run_in_threadpool
        )
        if decision is None:
            return None
        if not decision.allowed:
            if request.scope["type"] == "websocket":
                raise WebSocketException(WEBSOCKET_REFUSED, "Too many requests")
            _ensure_handler(request)
            raise RateLimitExceeded(decision)
        _set_headers(response, decision)
        return decision


def rate_limit(
    ratelimit: RatelimitLike,
    *,
    redis: Connection | RestConnection | None = None,
    key: KeyFunc | None = None,
    tier: str | TierFunc | None = None,
    cost: int | CostFunc = 1,
    scope: str | None = None,
    exempt_when: ExemptFunc | None = None,
    ietf: bool = True,
    legacy: bool = True,
    policy_name: str = "default",
) -> Callable[[F], F]:
    """Rate-limit an endpoint; put it under ``@app.get(...)``. The arguments of :class:`RateLimit`.

    The endpoint needs no ``request`` parameter: the decorated function's signature gains a
    hidden one that FastAPI fills, and its own parameters work as before. A refusal returns
    the 429 without calling the endpoint; an admitted request's headers go on the endpoint's
    ``Response`` if it returns one, else on the response FastAPI builds. Sync endpoints run
    in the threadpool, as FastAPI would run them.
    """
    rule = LimitRule(
        limiter_from(ratelimit, redis, blocking=False), key=key, tier=tier, cost=cost,
        scope=scope, ietf=ietf, legacy=legacy, policy_name=policy_name, exempt_when=exempt_when,
    )  # fmt: skip

    def decorate(func: F) -> F:
        injection = inject(func)
        is_async = inspect.iscoroutinefunction(func)

        @functools.wraps(func)
        async def endpoint(*args: Any, **kwargs: Any) -> Any:
            request, response = injection.take(args, kwargs)
            decision = await rule.check_async(
                ScopeRequest(request.scope, request), run_in_threadpool
            )
            if decision is not None and not decision.allowed:
                return too_many_requests_response(decision)
            if is_async:
                result = await func(*args, **kwargs)
            else:
                result = await run_in_threadpool(func, *args, **kwargs)
            if isinstance(result, Response):
                if decision is not None and result.status_code != 429:  # not an inner refusal's
                    _set_headers(result, decision)
            elif decision is not None and response is not None:
                _set_headers(response, decision)
            return result

        # FastAPI reads __signature__; without __wrapped__ nothing looks past it to the
        # original (whose signature lacks the injected parameters).
        del endpoint.__wrapped__
        endpoint.__signature__ = injection.signature  # type: ignore[attr-defined]
        return typing.cast(F, endpoint)

    return decorate
