"""The checks in front of every page: who the caller is, where a POST comes from, the headers.

A request is either a bearer-token request (``Authorization: Bearer <token>``: scripts, the
JSON API) or a browser with the login cookie. A POST from a browser must carry the session's
CSRF token and, when it names one, come from the dashboard's own origin (``Origin``, else
``Referer``; ``Sec-Fetch-Site: cross-site`` is refused outright). Without tokens
(``no_auth``) only loopback host names are served, so a web page cannot reach the dashboard by
DNS rebinding.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from redkit.dashboard.auth import COOKIE, Auth, Identity

__all__ = ["LOOPBACK_HOSTS", "Refused", "SecurityHeaders", "identify", "same_origin"]

#: Host names a dashboard without tokens answers to.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
#: No script, no inline style, no framing; images only from the page and ``data:`` (charts).
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on POSTs.
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # Pages hold live figures and CSRF tokens, the API live figures: never kept by a cache.
    (b"cache-control", b"no-store"),
]


class Refused(Exception):
    """A request the dashboard will not serve: ``status`` and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class SecurityHeaders:
    """ASGI middleware: the security headers on every HTTP response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``app`` with the headers added."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in _HEADERS}
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in names]
                message = {**message, "headers": kept + _HEADERS}
            await send(message)

        await self.app(scope, receive, with_headers)


def identify(auth: Auth, request: Request) -> tuple[Identity | None, str | None]:
    """The caller, and a new login cookie to set (only without tokens, on a first visit).

    Raises:
        Refused: a wrong bearer token (401), a host other than loopback without tokens (421).
    """
    if auth.no_auth and request.url.hostname not in LOOPBACK_HOSTS:
        raise Refused(421, "this dashboard runs without tokens and answers on loopback only")
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, presented = header.partition(" ")
        role = auth.role_of_token(presented.strip()) if scheme.lower() == "bearer" else None
        if role is None and not auth.no_auth:
            raise Refused(401, "wrong or malformed Authorization header (Bearer <token>)")
        if role is not None:
            return Identity(role, "bearer", None), None
    identity = auth.from_cookie(request.cookies.get(COOKIE))
    if identity is None and auth.no_auth:
        cookie, identity = auth.new_cookie("admin")
        return identity, cookie
    return identity, None


def same_origin(request: Request, allowed: Sequence[str]) -> bool:
    """Whether a POST comes from the dashboard's own pages (or an allowed origin).

    ``Origin`` (else ``Referer``) must name the host the request was sent to; a browser that
    says ``Sec-Fetch-Site: cross-site`` is refused whatever the rest says.
    """
    if request.headers.get("sec-fetch-site") == "cross-site":
        return False
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin is None:
        return True  # not a browser, or an old one: the CSRF token still has to match
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return bool(parts.netloc) and parts.netloc == request.headers.get("host", "")
