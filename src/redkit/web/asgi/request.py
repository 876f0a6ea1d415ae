"""An ASGI request as key functions see it.

:class:`ScopeRequest` is the :class:`~redkit.web.request.RequestInfo` of the rate-limit
middleware and of FastAPI's dependencies alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from starlette.requests import HTTPConnection, Request
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import Scope

from redkit.web.asgi.sessions import RequestSession
from redkit.web.request import UNMATCHED, session_user_id

__all__ = ["ScopeRequest"]


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
