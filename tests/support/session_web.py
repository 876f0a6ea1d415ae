"""Session middleware test support: one small app written for Starlette, FastAPI and Flask,
served for real on 127.0.0.1 (:mod:`support.web`), and a browser that keeps the session cookie
by hand (so a ``Secure`` cookie goes over plain HTTP to the test server).

Every app has the same routes:

- ``GET /plain``: never touches the session.
- ``GET /me``: ``{"user", "data", "new"}`` of the session.
- ``POST /set?key=&value=``: one string value into the session.
- ``POST /login?user=``: regenerate the session, handing it to the user.
- ``POST /logout``: invalidate it.
- ``POST /logout-everywhere``: end every session of the session's user.
- ``POST /wait-set?key=&value=[&login=]``: read the session, tell the test (``gate.loaded``),
  wait for ``gate.release``, then (log in and) set the value: two requests of one session,
  interleaved.
- ``GET /unloaded`` (ASGI only): use ``request.session`` without loading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookiejar
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import fastapi
import flask
import httpx
import redis
import redis.cluster
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from redkit.drivers.connect import Connection
from redkit.sessions import AsyncSessionStore, SessionNotLoadedError, SessionStore
from redkit.web.asgi import RequestSession, SessionMiddleware, load_session
from redkit.web.flask import Redkit, current_session
from support.backends import server_keys
from support.web import serve_asgi, serve_wsgi

KINDS = ["starlette", "fastapi", "flask"]


class Gate:
    """Holds a ``/wait-set`` request after it read its session, until the test releases it."""

    def __init__(self) -> None:
        self.loaded = threading.Event()
        self.release = threading.Event()


def _me(session: Any) -> dict[str, Any]:
    return {"user": session.user_id, "data": dict(session), "new": session.is_new}


# -- the three apps ----------------------------------------------------------------------------


def _closing(conn: Connection) -> Any:
    """A lifespan that closes the connection's asyncio clients in the server's own loop."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await conn.aclose()

    return lifespan


def starlette_app(store: AsyncSessionStore, conn: Connection, gate: Gate, **options: Any) -> Any:
    """Installed by wrapping the app (the middleware is built here, at once)."""

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def me(request: Request) -> JSONResponse:
        return JSONResponse(_me(await load_session(request)))

    async def set_value(request: Request) -> JSONResponse:
        session = await load_session(request)
        session[request.query_params["key"]] = request.query_params["value"]
        return JSONResponse({"ok": True})

    async def login(request: Request) -> JSONResponse:
        session = await load_session(request)
        session.regenerate(user_id=request.query_params["user"])
        return JSONResponse({"ok": True})

    async def logout(request: Request) -> JSONResponse:
        request.session.invalidate()  # type: ignore[attr-defined]  # no load needed
        return JSONResponse({"ok": True})

    async def logout_everywhere(request: Request) -> JSONResponse:
        session = await load_session(request)
        revoked = await session.store.revoke_user_sessions(session.user_id)
        return JSONResponse({"revoked": revoked})

    async def wait_set(request: Request) -> JSONResponse:
        session = await load_session(request)
        gate.loaded.set()
        await asyncio.to_thread(gate.release.wait, 30)
        if "login" in request.query_params:
            session.regenerate(user_id=request.query_params["login"])
        session[request.query_params["key"]] = request.query_params["value"]
        return JSONResponse({"ok": True})

    async def unloaded(request: Request) -> JSONResponse:
        try:
            return JSONResponse({"value": request.session.get("x")})
        except SessionNotLoadedError as exc:
            return JSONResponse({"error": str(exc)})

    app = Starlette(
        routes=[
            Route("/plain", plain),
            Route("/me", me),
            Route("/set", set_value, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/logout-everywhere", logout_everywhere, methods=["POST"]),
            Route("/wait-set", wait_set, methods=["POST"]),
            Route("/unloaded", unloaded),
        ],
        lifespan=_closing(conn),
    )
    return SessionMiddleware(app, store, **options)


def fastapi_app(store: AsyncSessionStore, conn: Connection, gate: Gate, **options: Any) -> Any:
    """Installed with ``add_middleware``; routes get the session from ``Depends(load_session)``."""
    app = fastapi.FastAPI(lifespan=_closing(conn))
    app.add_middleware(SessionMiddleware, store=store, **options)
    Loaded = fastapi.Depends(load_session)

    @app.get("/plain")
    async def plain() -> str:
        return "ok"

    @app.get("/me")
    async def me(session: RequestSession = Loaded) -> dict[str, Any]:
        return _me(session)

    @app.post("/set")
    async def set_value(key: str, value: str, session: RequestSession = Loaded) -> dict[str, Any]:
        session[key] = value
        return {"ok": True}

    @app.post("/login")
    async def login(user: str, session: RequestSession = Loaded) -> dict[str, Any]:
        session.regenerate(user_id=user)
        return {"ok": True}

    @app.post("/logout")
    async def logout(request: fastapi.Request) -> dict[str, Any]:
        request.session.invalidate()  # type: ignore[attr-defined]
        return {"ok": True}

    @app.post("/logout-everywhere")
    async def logout_everywhere(session: RequestSession = Loaded) -> dict[str, Any]:
        return {"revoked": await session.store.revoke_user_sessions(session.user_id)}

    @app.post("/wait-set")
    async def wait_set(
        key: str, value: str, login: str | None = None, session: RequestSession = Loaded
    ) -> dict[str, Any]:
        gate.loaded.set()
        await asyncio.to_thread(gate.release.wait, 30)
        if login is not None:
            session.regenerate(user_id=login)
        session[key] = value
        return {"ok": True}

    @app.get("/unloaded")
    async def unloaded(request: fastapi.Request) -> dict[str, Any]:
        try:
            return {"value": request.session.get("x")}
        except SessionNotLoadedError as exc:
            return {"error": str(exc)}

    # Build the middleware stack now, in the test's thread (warnings surface there).
    app.middleware_stack = app.build_middleware_stack()
    return app


def flask_app(store: SessionStore, gate: Gate, **options: Any) -> flask.Flask:
    """Installed with the extension; ``flask.session`` reads Redis on first use."""
    app = flask.Flask(__name__)
    Redkit(app, sessions=store, session_options=options)

    @app.get("/plain")
    def plain() -> str:
        return "ok"

    @app.get("/me")
    def me() -> dict[str, Any]:
        return _me(current_session())

    @app.post("/set")
    def set_value() -> dict[str, Any]:
        flask.session[flask.request.args["key"]] = flask.request.args["value"]
        return {"ok": True}

    @app.post("/login")
    def login() -> dict[str, Any]:
        current_session().regenerate(user_id=flask.request.args["user"])
        return {"ok": True}

    @app.post("/logout")
    def logout() -> dict[str, Any]:
        current_session().invalidate()
        return {"ok": True}

    @app.post("/logout-everywhere")
    def logout_everywhere() -> dict[str, Any]:
        session = current_session()
        return {"revoked": session.store.revoke_user_sessions(session.user_id)}

    @app.post("/wait-set")
    def wait_set() -> dict[str, Any]:
        session = current_session().load()
        gate.loaded.set()
        gate.release.wait(30)
        if "login" in flask.request.args:
            session.regenerate(user_id=flask.request.args["login"])
        session[flask.request.args["key"]] = flask.request.args["value"]
        return {"ok": True}

    return app


# -- serving -----------------------------------------------------------------------------------


class Site:
    """A running app: its URL, its gate, and a blocking store on the same Redis to inspect."""

    def __init__(self, kind: str, url: str, gate: Gate, store: SessionStore) -> None:
        self.kind = kind
        self.url = url
        self.gate = gate
        self.store = store

    @property
    def is_asgi(self) -> bool:
        return self.kind != "flask"

    def browser(self, cookie_name: str = "session") -> Browser:
        return Browser(self.url, cookie_name)


@contextlib.contextmanager
def running_site(kind: str, conn: Connection, *, store_options: dict[str, Any],
                 **options: Any) -> Iterator[Site]:  # fmt: skip
    """Start the ``kind`` app on ``conn`` with these store and cookie options."""
    gate = Gate()
    inspector = SessionStore(conn, **store_options)
    if kind == "flask":
        app = flask_app(SessionStore(conn, **store_options), gate, **options)
        with serve_wsgi(app) as url:
            yield Site(kind, url, gate, inspector)
        return
    build = starlette_app if kind == "starlette" else fastapi_app
    asgi = build(AsyncSessionStore(conn, **store_options), conn, gate, **options)
    with serve_asgi(asgi) as url:
        yield Site(kind, url, gate, inspector)


# -- the client ----------------------------------------------------------------------------


class Browser:
    """An httpx client that keeps the session cookie itself, from the raw ``Set-Cookie``.

    httpx's own jar would not send a ``Secure`` cookie to ``http://127.0.0.1``; this one
    does, so the apps keep their secure defaults. Its jar refuses every cookie.
    """

    def __init__(self, base_url: str, cookie_name: str = "session") -> None:
        refuse_all = http.cookiejar.CookieJar(
            http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
        )
        self.http = httpx.Client(base_url=base_url, timeout=30, cookies=refuse_all)
        self.name = cookie_name
        self.cookie: str | None = None

    def request(self, method: str, path: str, *, cookie: str | bytes | None = None,
                **kwargs: Any) -> httpx.Response:  # fmt: skip
        """Send with our cookie (or the raw ``cookie`` header given); keep what comes back."""
        headers = dict(kwargs.pop("headers", {}))
        if cookie is not None:
            headers["Cookie"] = cookie
        elif self.cookie is not None:
            headers["Cookie"] = f"{self.name}={self.cookie}"
        response = self.http.request(method, path, headers=headers, **kwargs)
        for raw in response.headers.get_list("set-cookie"):
            name, _, rest = raw.partition("=")
            if name == self.name:
                value = rest.split(";")[0]
                self.cookie = value or None
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def me(self) -> dict[str, Any]:
        response = self.get("/me")
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        self.http.close()


def session_cookies(response: httpx.Response, name: str = "session") -> list[str]:
    """The raw ``Set-Cookie`` headers of the response that set ``name``."""
    return [raw for raw in response.headers.get_list("set-cookie") if raw.startswith(name + "=")]


# -- looking at the server -------------------------------------------------------------------


def admin_client(conn: Connection) -> redis.Redis | redis.cluster.RedisCluster:
    client: redis.Redis | redis.cluster.RedisCluster = conn.sync_driver().client
    return client


def all_keys(conn: Connection) -> set[str]:
    """Every key on the server(s) behind ``conn``."""
    return server_keys(admin_client(conn))


def commands_run(admin: redis.Redis) -> int:
    """Commands the (standalone) server ran since the last stats reset, minus our own peeks
    (the commands a script runs count too)."""
    stats = admin.info("commandstats")
    return sum(
        int(entry["calls"])
        for name, entry in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    )


def script_calls(admin: redis.Redis) -> int:
    """Script calls (each session operation is one) since the last stats reset."""
    stats = admin.info("commandstats")
    return sum(
        int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("evalsha", "eval")
    )
