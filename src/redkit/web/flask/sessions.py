"""Server-side sessions for Flask: the ``SessionInterface`` the ``Redkit`` extension installs.

::

    from redkit import SessionStore
    from redkit.web.flask import Redkit, current_session

    ext = Redkit(sessions=SessionStore(redis, idle_ttl="30 m", absolute_ttl="12 h"))
    ext.init_app(app)          # or Redkit(app, sessions=store)

    @app.post("/login")
    def login():
        current_session().regenerate(user_id=user.id)   # a new id on every login
        return "welcome"

``flask.session`` is then a :class:`FlaskSession`: it reads Redis on first use, so a request
that never touches it costs no Redis call. :class:`RedisSessions`, the sessions-only
extension of earlier releases, is deprecated: ``Redkit(app, sessions=store)`` does the same.
"""

from __future__ import annotations

from typing import Any

import flask
from flask.sessions import SessionInterface, SessionMixin

from redkit.core.caller import warn_caller
from redkit.core.errors import BackendError, ConfigurationError
from redkit.sessions.cookies import CookiePolicy
from redkit.sessions.model import SessionConflictError
from redkit.sessions.store import SessionStore
from redkit.sessions.web import (
    LazySession,
    Outcome,
    SessionUnavailableError,
    commit_sync,
    error_response,
)

__all__ = [
    "FlaskSession",
    "RedisSessionInterface",
    "RedisSessions",
    "current_session",
    "install_sessions",
]

#: Headers of the app's response that would mislead once its body is replaced by an error.
_ENTITY_HEADERS = (
    "Location", "ETag", "Last-Modified", "Content-Encoding", "Content-Range",
    "Content-Disposition", "Content-Language",
)  # fmt: skip


class FlaskSession(LazySession, SessionMixin):
    """``flask.session`` under :class:`RedisSessionInterface`: read from Redis on first use.

    The data methods of a ``dict``, plus :meth:`regenerate` (login) and :meth:`invalidate`
    (logout), which need no read. ``permanent`` follows Flask's convention (it is kept in
    the data, as ``_permanent``): a permanent session's cookie lasts
    ``app.permanent_session_lifetime``, set when the cookie is issued, so set it before
    :meth:`regenerate` at login. ``store`` is the interface's
    :class:`~redkit.sessions.SessionStore` (``session.store.revoke_user_sessions(uid)``).
    """

    def __init__(
        self,
        store: SessionStore,
        cookie_id: str | None,
        *,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> None:
        super().__init__(cookie_id, user_agent=user_agent, ip=ip)
        self.store = store

    def load(self) -> FlaskSession:
        """Read the session from the store now (data access does it by itself).

        Raises:
            SessionUnavailableError: Redis cannot answer (the extension answers 503).

        """
        session_id = self._cookie_to_load()
        if session_id is not None:
            try:
                record = self.store.get(session_id)
            except BackendError as exc:
                raise SessionUnavailableError(f"session store: {exc}") from exc
            self._set_loaded(record)
        self.accessed = True
        return self

    def _load_now(self) -> dict[str, Any]:
        self.load()
        assert self._contents is not None
        return self._contents

    @property
    def new(self) -> bool:  # type: ignore[override]  # Flask's mixin has a plain attribute
        """Whether no stored session stands behind this one yet (Flask's ``session.new``)."""
        return self.is_new


class RedisSessionInterface(SessionInterface):
    """A Flask ``SessionInterface`` that keeps sessions in a :class:`SessionStore`.

    Args:
        store: where sessions live.
        cookie_name: the session cookie's name (Flask's ``SESSION_COOKIE_*`` settings are
            not read: these arguments replace them).
        path: the cookie's ``Path``.
        secure: the cookie's ``Secure`` flag. ``False`` (plain-HTTP development) warns.
        same_site: ``"lax"``, ``"strict"`` or ``"none"``.
        max_age: seconds the browser keeps the cookie; ``None``: until the browser closes,
            or ``app.permanent_session_lifetime`` for a permanent session.

    ``save_session`` stores what changed (nothing, and no Redis call, for an untouched
    session), sends a cookie only with a new id or to clear it, and fails closed: when Redis
    cannot save the session the response becomes a **503** JSON error, and when a concurrent
    request changed the same keys (or ended the session) a **409** one; none of the
    request's session changes are stored then. A failure to *load* the session inside a
    view raises :class:`~redkit.sessions.SessionUnavailableError`, which
    :func:`install_sessions` (``Redkit(sessions=...)``) turns into the same 503.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        cookie_name: str = "session",
        path: str = "/",
        secure: bool = True,
        same_site: str = "lax",
        max_age: int | None = None,
    ) -> None:
        self.store = store
        self.cookie = CookiePolicy(cookie_name, path, secure, same_site, max_age)

    def open_session(self, app: flask.Flask, request: flask.Request) -> FlaskSession:
        """The request's session, not read yet."""
        cookie_id = self.cookie.read([request.environ.get("HTTP_COOKIE", "")])
        agent = request.headers.get("User-Agent")
        return FlaskSession(self.store, cookie_id, user_agent=agent, ip=request.remote_addr)

    def save_session(
        self, app: flask.Flask, session: SessionMixin, response: flask.Response
    ) -> None:
        """Store what the request changed; set or clear the cookie when the id changed."""
        if not isinstance(session, FlaskSession):
            return
        try:
            outcome = commit_sync(self.store, session)
        except (SessionUnavailableError, SessionConflictError) as exc:
            _refuse(response, exc)
            # A rotation may have happened before the conflict: the client needs its new id.
            outcome = Outcome(session_id=session.issued_id)
        cookie = None
        if outcome.session_id is not None:
            max_age = self.cookie.max_age
            if max_age is None and session.loaded and session.permanent:
                max_age = int(app.permanent_session_lifetime.total_seconds())
            cookie = self.cookie.set_cookie(outcome.session_id, max_age)
        elif outcome.clear:
            cookie = self.cookie.clear_cookie()
        if cookie is not None:
            response.headers.add("Set-Cookie", cookie)
            # OWASP: a response that hands out a session id must not sit in a shared cache.
            # Whatever the view said: a cached response would hand the id to the next visitor.
            response.headers["Cache-Control"] = "no-store"
        if cookie is not None or session.accessed:
            response.vary.add("Cookie")


def _refuse(response: flask.Response, exc: SessionUnavailableError | SessionConflictError) -> None:
    status, body = error_response(exc)
    for name in _ENTITY_HEADERS:
        response.headers.pop(name, None)
    response.status_code = status
    response.set_data(body)
    response.mimetype = "application/json"
    response.headers["Cache-Control"] = "no-store"
    if status == 503:
        response.headers["Retry-After"] = "1"


def _unavailable(exc: SessionUnavailableError) -> flask.Response:
    status, body = error_response(exc)
    return flask.current_app.response_class(
        body,
        status=status,
        mimetype="application/json",
        headers={"Retry-After": "1", "Cache-Control": "no-store"},
    )


def install_sessions(
    app: flask.Flask, store: SessionStore, **options: Any
) -> RedisSessionInterface:
    """Make ``app`` keep ``flask.session`` in ``store``: what ``Redkit(sessions=store)`` does.

    Installs a :class:`RedisSessionInterface` (``options`` are its keyword arguments, the
    cookie's) and answers 503 for a :class:`~redkit.sessions.SessionUnavailableError`
    raised in a view (Redis could not load the session).
    """
    interface = RedisSessionInterface(store, **options)
    app.session_interface = interface
    app.register_error_handler(SessionUnavailableError, _unavailable)
    app.extensions["redkit.sessions"] = interface
    return interface


class RedisSessions:
    """Deprecated, kept for one release: use ``Redkit(app, sessions=store)``.

    The sessions-only extension of earlier releases: ``RedisSessions(store, app)``, or
    ``sessions = RedisSessions(store)`` then ``sessions.init_app(app)``
    (``init_app(app, store=...)`` when the store is made there); keyword arguments are those
    of :class:`RedisSessionInterface`. Its ``Redkit`` equivalents:
    ``Redkit(app, sessions=store, session_options={...})``, or ``REDKIT_SESSION_STORE`` set in
    the app factory before ``ext.init_app(app)``.
    """

    def __init__(
        self, store: SessionStore | None = None, app: flask.Flask | None = None, **options: Any
    ) -> None:
        warn_caller(
            "RedisSessions is deprecated and kept for one release only: use the one extension, "
            "redkit.web.flask.Redkit(app, sessions=store, session_options={...})",
            DeprecationWarning,
        )
        self.store = store
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask, *, store: SessionStore | None = None) -> None:
        """Make ``app`` keep its sessions in the store."""
        chosen = store if store is not None else self.store
        if chosen is None:
            raise ConfigurationError("RedisSessions needs a SessionStore: RedisSessions(store)")
        install_sessions(app, chosen, **self.options)


def current_session() -> FlaskSession:
    """``flask.session``, typed (Flask types it as a plain ``SessionMixin``).

    Raises:
        ConfigurationError: the app does not use :class:`RedisSessionInterface`.

    """
    session = flask.session._get_current_object()  # type: ignore[attr-defined]
    if not isinstance(session, FlaskSession):
        raise ConfigurationError(
            "flask.session is not a redkit session: use Redkit(app, sessions=SessionStore(...))"
        )
    return session
