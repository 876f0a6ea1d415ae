"""Server-side sessions for Starlette and FastAPI: a pure ASGI middleware.

::

    from redkit import AsyncSessionStore
    from redkit.web.asgi import RequestSession, SessionMiddleware, load_session

    store = AsyncSessionStore(redis, idle_ttl="30 m", absolute_ttl="12 h")
    app.add_middleware(SessionMiddleware, store=store)

    @app.post("/login")
    async def login(session: RequestSession = Depends(load_session)) -> dict[str, str]:
        session.regenerate(user_id=user.id)   # a new id on every login
        return {"ok": "yes"}

``request.session`` is a :class:`RequestSession`. Reading it needs Redis, hence an ``await``:
call ``await load_session(request)`` first (in FastAPI, ``Depends(load_session)``), or pass
``autoload=True`` to load it for every request that carries a session cookie. A request that
never loads its session costs no Redis call. Websockets get ``websocket.session`` the same way;
what changes before the handshake is accepted is stored then.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from redkit.core.errors import BackendError, ConfigurationError
from redkit.sessions.cookies import CookiePolicy
from redkit.sessions.model import SessionConflictError
from redkit.sessions.store import AsyncSessionStore
from redkit.sessions.web import (
    LazySession,
    Outcome,
    SessionNotLoadedError,
    SessionUnavailableError,
    commit_async,
    error_response,
)

__all__ = ["RequestSession", "SessionMiddleware", "get_session", "load_session"]

_Headers = list[tuple[bytes, bytes]]


class RequestSession(LazySession):
    """``request.session`` under :class:`SessionMiddleware`: a lazy, dict-like session.

    Use it as a ``dict`` once loaded (:meth:`load`, or :func:`load_session`); before that,
    any use of its data raises :class:`~redkit.sessions.SessionNotLoadedError`.
    :meth:`regenerate` (login) and :meth:`invalidate` (logout) need no load. ``store`` is the
    middleware's :class:`~redkit.sessions.AsyncSessionStore`, for what goes beyond this
    request's session (``await session.store.revoke_user_sessions(uid)``: log out everywhere).
    """

    def __init__(
        self,
        store: AsyncSessionStore,
        cookie_id: str | None,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> None:
        super().__init__(cookie_id, user_agent=user_agent, ip=ip)
        self.store = store
        self._load_error: SessionUnavailableError | None = None
        self._awaited = False

    @property
    def awaited(self) -> bool:
        """Whether :meth:`load` ran: until then its data cannot be used, cookie or not."""
        return self._awaited

    async def load(self) -> RequestSession:
        """Read the session from the store (once; later calls return at once).

        Raises:
            SessionUnavailableError: Redis cannot answer (the middleware answers 503).

        """
        session_id = self._cookie_to_load()
        if session_id is not None:
            try:
                record = await self.store.get(session_id)
            except BackendError as exc:
                self._load_error = SessionUnavailableError(f"session store: {exc}")
                raise self._load_error from exc
            self._set_loaded(record)
        self.accessed = True
        self._awaited = True
        return self

    async def load_quietly(self) -> None:
        """:meth:`load`, for a reader that is not the app (a rate limit reading the user).

        The session counts as used only when the app uses it: the response does not vary by
        cookie for a limit's read.
        """
        accessed = self.accessed
        await self.load()
        self.accessed = accessed

    def _data(self) -> dict[str, Any]:
        if not self._awaited:
            # Also without a cookie: a forgotten load fails for every visitor, at once.
            self.accessed = True
            return self._load_now()
        return super()._data()

    def _load_now(self) -> dict[str, Any]:
        raise SessionNotLoadedError(
            "request.session was used before it was loaded: first call "
            "`await load_session(request)` (in FastAPI: `Depends(load_session)`), or install "
            "SessionMiddleware(..., autoload=True)"
        )


def get_session(connection: HTTPConnection) -> RequestSession:
    """The request's session, loaded or not (typed; ``request.session`` is typed as a dict).

    Raises:
        ConfigurationError: :class:`SessionMiddleware` is not installed.

    """
    session = connection.scope.get("session")
    if not isinstance(session, RequestSession):
        raise ConfigurationError(
            "no redkit session on this request: add redkit.web.asgi.SessionMiddleware"
        )
    return session


async def load_session(request: HTTPConnection) -> RequestSession:
    """Load the request's (or websocket's) session and return it; a FastAPI dependency too.

    ``session: RequestSession = Depends(load_session)``, in HTTP and websocket routes alike.
    Loading twice costs nothing.
    """
    return await get_session(request).load()


class SessionMiddleware:
    """Server-side sessions in Redis for any ASGI app, as ``scope["session"]``.

    Args:
        app: the ASGI app to wrap.
        store: where sessions live.
        cookie_name: the session cookie's name.
        path: the cookie's ``Path``.
        secure: the cookie's ``Secure`` flag. ``False`` (plain-HTTP development) warns.
        same_site: ``"lax"``, ``"strict"`` or ``"none"``.
        max_age: seconds the browser keeps the cookie; ``None`` (the default) for a cookie
            that ends with the browser session. The store's timeouts apply either way.
        autoload: load the session before the app runs, for every request that brings a
            session cookie (one Redis call each), so the app can use ``request.session``
            without awaiting :func:`load_session`.

    When the app's response starts, the middleware stores what changed: it creates a new
    session (recording the client's user agent and address, ``scope["client"]``; put uvicorn's
    ``--forwarded-allow-ips`` in front when behind a proxy), saves the changed keys, rotates
    the id after :meth:`RequestSession.regenerate`, or deletes the session after
    :meth:`RequestSession.invalidate`. A cookie is sent only with a new id (or to clear it),
    with ``Cache-Control: no-store`` (replacing the app's own), and ``Vary: Cookie`` whenever the
    session was used. An id the store does not know is never reused.

    Sessions fail closed. When the app's response has not started yet, the middleware
    replaces it with a JSON error:

    - **503** when Redis cannot load or save the session (``{"error": "session_unavailable"}``);
    - **409** when a concurrent request of the same session changed the same keys, or ended
      or rotated the session, since this one read it (``{"error": "session_conflict",
      "keys": [...]}``): none of this request's changes were stored, the client may retry.

    Changes made after the response started are not stored.

    A websocket handshake gets its session as a request does (``websocket.session``; load it
    with :func:`load_session`). It is stored when the app accepts the connection, a new id
    going out as a ``Set-Cookie`` on the accept; changes made after that are not stored. When
    the session cannot be loaded or stored before accept, the handshake is refused: with the
    JSON error above where the server offers ASGI's websocket denial response, else by a close
    with code 1013 ("try again later"), which the server answers with a 403.
    """

    def __init__(
        self,
        app: ASGIApp,
        store: AsyncSessionStore,
        *,
        cookie_name: str = "session",
        path: str = "/",
        secure: bool = True,
        same_site: str = "lax",
        max_age: int | None = None,
        autoload: bool = False,
    ) -> None:
        self.app = app
        self.store = store
        self.cookie = CookiePolicy(cookie_name, path, secure, same_site, max_age)
        self.autoload = autoload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection; ``http`` and ``websocket`` ones get a session."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: _Headers = scope["headers"]
        cookie_id = self.cookie.read(_values(headers, b"cookie"))
        agent = next(iter(_values(headers, b"user-agent")), None)
        client = scope.get("client")
        session = RequestSession(
            self.store, cookie_id, user_agent=agent, ip=client[0] if client else None
        )
        scope["session"] = session
        reply = _Reply(scope, send, session, self.cookie)
        try:
            if self.autoload:
                await session.load()
            await self.app(scope, receive, reply.send)
        except (SessionUnavailableError, SessionConflictError) as exc:
            if reply.refused:
                return  # already answered with a 503 or 409 (see _Reply.send)
            if reply.started:
                raise
            await reply.refuse(exc)


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    # latin-1 maps every byte: odd bytes make a malformed value, never a decoding error.
    return [value.decode("latin-1") for key, value in headers if key.lower() == name]


#: The messages that start an HTTP response (a websocket's denial response is one too).
_RESPONSE_STARTS = ("http.response.start", "websocket.http.response.start")
#: The close code of a websocket handshake refused for its session: "try again later".
WEBSOCKET_RETRY = 1013


class _Reply:
    """The ``send`` the app sees: stores the session as the response (or websocket) starts."""

    def __init__(
        self, scope: Scope, send: Send, session: RequestSession, cookie: CookiePolicy
    ) -> None:
        self._scope = scope
        self._send = send
        self._session = session
        self._cookie = cookie
        self.started = False
        self.refused = False
        #: Why a websocket's accept was refused; raised again by every later send.
        self._refusal: SessionUnavailableError | SessionConflictError | None = None

    async def send(self, message: Message) -> None:
        if self.refused:
            if self._refusal is not None:
                raise self._refusal  # a refused websocket: the app must not think it is open
            return  # the app's response was replaced by an error: drop the rest of it
        kind = message["type"]
        if kind == "websocket.accept":
            await self._accept(message)
            return
        if kind == "websocket.close":
            self.started = True  # the app refused the handshake itself: nothing more to send
        if kind in _RESPONSE_STARTS:
            failure = self._session._load_error
            if failure is not None and message.get("status") == 500:
                # The app failed on its unloadable session, and an error middleware inside
                # this one (Starlette's ServerErrorMiddleware) answered 500 for it: say 503.
                await self.refuse(failure)
                return
            try:
                outcome = await commit_async(self._session.store, self._session)
            except (SessionUnavailableError, SessionConflictError) as exc:
                await self.refuse(exc)
                return
            headers = list(message.get("headers", []))
            self._add_headers(headers, outcome)
            message = {**message, "headers": headers}
            self.started = True
        await self._send(message)

    async def _accept(self, message: Message) -> None:
        try:
            outcome = await commit_async(self._session.store, self._session)
        except (SessionUnavailableError, SessionConflictError) as exc:
            await self.refuse(exc)
            self._refusal = exc
            raise  # out of the app's accept(): the connection never opened
        cookie = self._session_cookie(outcome)
        if cookie is not None:  # a 101 is no cached response: the cookie is all it needs
            headers: _Headers = [
                *message.get("headers", []),
                (b"set-cookie", cookie.encode("latin-1")),
            ]
            message = {**message, "headers": headers}
        self.started = True
        await self._send(message)

    async def refuse(self, exc: SessionUnavailableError | SessionConflictError) -> None:
        """Answer with the JSON error for ``exc`` instead of the app's response."""
        self.refused = True
        status, body = error_response(exc)
        start, body_type = "http.response.start", "http.response.body"
        if self._scope["type"] == "websocket":
            if "websocket.http.response" not in (self._scope.get("extensions") or {}):
                await self._send({"type": "websocket.close", "code": WEBSOCKET_RETRY})
                self.started = True
                return
            start, body_type = "websocket.http.response.start", "websocket.http.response.body"
        headers: _Headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        # A rotation may have happened before the conflict: the client needs its new id.
        self._add_headers(headers, Outcome(session_id=self._session.issued_id))
        await self._send({"type": start, "status": status, "headers": headers})
        await self._send({"type": body_type, "body": body})
        self.started = True

    def _session_cookie(self, outcome: Outcome) -> str | None:
        if outcome.session_id is not None:
            return self._cookie.set_cookie(outcome.session_id)
        if outcome.clear:
            return self._cookie.clear_cookie()
        return None

    def _add_headers(self, headers: _Headers, outcome: Outcome) -> None:
        cookie = self._session_cookie(outcome)
        if cookie is not None:
            headers.append((b"set-cookie", cookie.encode("latin-1")))
            # OWASP: a response that hands out a session id must not sit in any cache, whatever
            # the app said (a "public, max-age" would give the id to the next visitor).
            headers[:] = [(k, v) for k, v in headers if k.lower() != b"cache-control"]
            headers.append((b"cache-control", b"no-store"))
        if cookie is not None or self._session.accessed:
            _vary_on_cookie(headers)


def _vary_on_cookie(headers: _Headers) -> None:
    varies = [i for i, (key, _value) in enumerate(headers) if key.lower() == b"vary"]
    tokens = {t.strip().lower() for i in varies for t in headers[i][1].split(b",")}
    if b"*" in tokens or b"cookie" in tokens:
        return
    if varies:
        key, value = headers[varies[0]]
        headers[varies[0]] = (key, value + b", Cookie")
    else:
        headers.append((b"vary", b"Cookie"))
