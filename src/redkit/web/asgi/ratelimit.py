"""Rate limits for Starlette (and any ASGI app): a pure ASGI middleware.

``RateLimitMiddleware`` decides each HTTP request before the app sees it. An admitted request
goes on, and its rate-limit headers are added as the response starts; a refused one gets the
429 from the middleware itself, and the app is never called. A websocket handshake counts as a
request too: an admitted one gets the headers on its accept, a refused one a 429 (where the
server offers ASGI's websocket denial response) or a close with code 1008 before accept (which
the server turns into a 403). Lifespan scopes pass through untouched.

It is a plain ASGI class, not ``BaseHTTPMiddleware``: no task group or stream per request,
and context variables propagate as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from redkit.web.asgi.request import ScopeRequest
from redkit.web.request import KeyFunc, RequestInfo, TierFunc
from redkit.web.rule import CostFunc, Decision, ExemptFunc, LimitRule, RatelimitLike, limiter_from

if TYPE_CHECKING:
    from redkit.drivers.connect import Connection
    from redkit.drivers.rest import RestConnection

__all__ = [
    "WEBSOCKET_REFUSED",
    "RateLimitMiddleware",
    "refuse_websocket",
    "send_too_many_requests",
]


async def send_too_many_requests(send: Send, decision: Decision, *, kind: str = "http") -> None:
    """Send the 429 of a refused ``decision``: the JSON body, Retry-After, the headers.

    ``kind="websocket"`` sends it as a websocket denial response (an ASGI extension).
    """
    body = decision.body()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in decision.headers),
    ]
    prefix = "http" if kind == "http" else "websocket.http"
    await send({"type": f"{prefix}.response.start", "status": 429, "headers": headers})
    await send({"type": f"{prefix}.response.body", "body": body})


#: The websocket close code of a refused handshake: "policy violation" (RFC 6455, 7.4.1).
WEBSOCKET_REFUSED = 1008


async def refuse_websocket(scope: Scope, send: Send, decision: Decision) -> None:
    """Refuse a websocket handshake: a 429 when the server can send one, else close 1008."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        # Before accept, a close makes the server answer the handshake with a 403.
        await send({"type": "websocket.close", "code": WEBSOCKET_REFUSED})
        return
    await send_too_many_requests(send, decision, kind="websocket")


class RateLimitMiddleware:
    """An app-wide rate limit, as pure ASGI middleware.

    ``app.add_middleware(RateLimitMiddleware, ratelimit=limiter, key=by_client_ip())`` or
    ``Middleware(RateLimitMiddleware, ratelimit=limiter)``.

    Args:
        app: the ASGI app.
        ratelimit: any redkit limiter (a blocking one runs in the threadpool), or a rate
            string, ``"5/minute"`` or ``"10/second; 1000/day"``: fixed windows on ``redis``.
        redis: the connection of a rate string; without it, the one ``REDIS_URL`` names.
        key: who a request counts against (default: client IP, socket peer).
        tier: for a tiered limiter, a tier name or a function choosing one.
        cost: what one request costs, or a function of the request giving it.
        scope: the counter's name. Each route (the route the app's router would pick, by its
            template) counts on its own by default; ``scope="app"`` makes one count for all.
        exempt_when: a predicate on the request; true: not limited (as ``skip``).
        ietf: send ``RateLimit-Policy`` / ``RateLimit``.
        legacy: send ``X-RateLimit-*``.
        policy_name: the IETF headers' name for this limit.
        exempt: paths (exact) that are never limited, e.g. ``{"/health"}``.
        skip: a predicate on the request; true exempts it.
        websockets: count websocket handshakes too (each connection attempt is a request).

    Headers the app sets itself (a route's own, narrower limit) are left as they are.
    """

    def __init__(
        self,
        app: ASGIApp,
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
        exempt: Collection[str] = (),
        skip: Callable[[RequestInfo], bool] | None = None,
        websockets: bool = True,
    ) -> None:
        self.app = app
        self.rule = LimitRule(
            limiter_from(ratelimit, redis, blocking=False), key=key, tier=tier, cost=cost,
            scope=scope, ietf=ietf, legacy=legacy, policy_name=policy_name,
            exempt_when=exempt_when,
        )  # fmt: skip
        self.exempt = frozenset(exempt)
        self.skip = skip
        self.kinds = frozenset({"http", "websocket"} if websockets else {"http"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Decide a request (or handshake), then refuse it or call the app with headers added."""
        if scope["type"] not in self.kinds or scope.get("path") in self.exempt:
            await self.app(scope, receive, send)
            return
        request = ScopeRequest(scope)
        if self.skip is not None and self.skip(request):
            await self.app(scope, receive, send)
            return
        decision = await self.rule.check_async(request, run_in_threadpool)
        if decision is None:
            await self.app(scope, receive, send)
        elif decision.allowed:
            await self.app(scope, receive, _adding_headers(send, decision.headers))
        elif scope["type"] == "websocket":
            await refuse_websocket(scope, send, decision)
        else:
            await send_too_many_requests(send, decision)


#: The messages that open a response: the headers go on them.
_HEADED = ("http.response.start", "websocket.accept", "websocket.http.response.start")


def _adding_headers(send: Send, extra: list[tuple[str, str]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] in _HEADED:
            message = {**message, "headers": list(message.get("headers", ()))}
            headers = MutableHeaders(scope=message)
            for name, value in extra:
                headers.setdefault(name, value)
        await send(message)

    return send_with_headers
