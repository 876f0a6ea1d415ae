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

from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TYPE_CHECKING

from redkit.web._extras import framework_missing

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import MutableHeaders
    from starlette.requests import HTTPConnection, Request
    from starlette.routing import BaseRoute, Match, Mount
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ModuleNotFoundError as exc:  # an optional dependency: say which extra
    raise framework_missing(__name__, "Starlette", "starlette", exc) from exc

from redkit.web.asgi import RequestSession
from redkit.web.request import UNMATCHED, KeyFunc, RequestInfo, TierFunc, session_user_id
from redkit.web.rule import CostFunc, Decision, ExemptFunc, LimitRule, RatelimitLike, limiter_from

if TYPE_CHECKING:
    from redkit.drivers.connect import Connection
    from redkit.drivers.rest import RestConnection

__all__ = [
    "WEBSOCKET_REFUSED",
    "RateLimitMiddleware",
    "ScopeRequest",
    "refuse_websocket",
    "send_too_many_requests",
]


class ScopeRequest:
    """An ASGI HTTP scope seen as a :class:`~redkit.web.request.RequestInfo`.

    Args:
        scope: the ASGI scope.
        request: the Starlette request (or websocket), when one exists already (a FastAPI
            dependency).

    """

    def __init__(self, scope: Scope, request: HTTPConnection | None = None) -> None:
        self.scope = scope
        self._request = request

    @property
    def peer(self) -> str | None:
        """``scope["client"][0]``; ``None`` for a unix socket or a test transport."""
        client = self.scope.get("client")
        return str(client[0]) if client else None

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name``, decoded as latin-1 (as HTTP/1.1 carries them)."""
        wanted = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.scope.get("headers", ()) if k == wanted]

    def user_id(self) -> object | None:
        """``request.state.user_id``, an authenticated ``scope["user"]``, or the session's."""
        state = self.scope.get("state")
        user: object | None = state.get("user_id") if isinstance(state, dict) else None
        if user is None:
            auth = self.scope.get("user")
            if auth is not None and getattr(auth, "is_authenticated", False):
                user = getattr(auth, "identity", None) or None
        if user is None:
            user = session_user_id(self.scope.get("session"))
        return user

    def route(self) -> str | None:
        """The matched route's template: ``scope["route"]`` once routed, else looked up.

        Before routing (the middleware) the app's router is asked which route would take the
        request; a mount's prefix goes in front of its routes' templates.
        """
        route = self.scope.get("route")
        if route is None:
            # Before routing (the middleware): match the routes as the router will, once for
            # this request's limit (a cost per request that grows with the number of routes).
            app = self.scope.get("app")
            router = getattr(app, "router", None)
            if router is None:
                return None
            return _template(getattr(router, "routes", ()), self.scope, "")
        template = getattr(route, "path", None)
        return _mounted(self.scope) + template if isinstance(template, str) else UNMATCHED

    def session_pending(self) -> Awaitable[None] | None:
        """The load of a redkit session the scope holds unloaded (``SessionMiddleware``)."""
        session = self.scope.get("session")
        if isinstance(session, RequestSession) and not session.awaited:
            return session.load_quietly()
        return None

    @property
    def native(self) -> HTTPConnection:
        """The Starlette ``Request``; for a websocket, its ``WebSocket`` or an ``HTTPConnection``.

        The ``WebSocket`` when a FastAPI dependency passed it in, else one on the scope.
        """
        if self._request is None:
            if self.scope["type"] != "http":
                return HTTPConnection(self.scope)
            self._request = Request(self.scope)
        return self._request


def _mounted(scope: Scope) -> str:
    """The path prefix of the mounts a routed request went through."""
    root, app_root = scope.get("root_path", ""), scope.get("app_root_path", "")
    return str(root[len(app_root) :]) if root.startswith(app_root) else ""


def _template(routes: Iterable[BaseRoute], scope: Scope, prefix: str) -> str:
    """The template of the route the router would pick for ``scope`` (a mount's, nested)."""
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        path = getattr(route, "path", "")
        inner = getattr(route, "routes", None) if isinstance(route, Mount) else None
        found = (
            _template(inner, {**scope, **child}, prefix + path)
            if inner is not None
            else prefix + path
        )
        if match is Match.FULL:
            return found
        partial = partial or found  # a method the route does not serve: it still answers
    return partial or UNMATCHED


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
