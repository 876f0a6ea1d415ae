"""Websockets under redkit's ASGI middleware, over real connections (uvicorn, websockets).

A handshake is limited like a request: admitted ones carry the rate-limit headers, refused
ones get a 429 through ASGI's websocket denial response, or a 403 where the server cannot send
one. Sessions reach websocket routes, are stored when the app accepts, and a session that
cannot be read refuses the handshake. Every test runs on a standalone Redis and a cluster.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import fastapi
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from redkit import AsyncRatelimit, Connection, SlidingLog
from redkit.sessions import AsyncSessionStore, SessionUnavailableError
from redkit.web.asgi import RateLimitMiddleware, RequestSession, SessionMiddleware, load_session
from redkit.web.fastapi import RateLimit
from support.probes import closed_port
from support.web import serve_asgi

_prefixes = itertools.count()


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


def without_denial_responses(app: Any) -> Any:
    """The app as served by a server that cannot answer a handshake with an HTTP response."""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope = {**scope, "extensions": {}}
        await app(scope, receive, send)

    return served


@pytest.fixture
def echo_app() -> Starlette:
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    return Starlette(routes=[WebSocketRoute("/ws", echo)])


def limited(app: Any, conn: Connection, limit: int, **options: Any) -> RateLimitMiddleware:
    limiter = AsyncRatelimit(conn, SlidingLog(limit, "60 s"), prefix=f"ws-limit-{next(_prefixes)}")
    return RateLimitMiddleware(app, ratelimit=limiter, **options)


def greet(url: str, **options: Any) -> ClientConnection:
    """Open a websocket, read its greeting, close it; return the connection (headers)."""
    with connect(url, open_timeout=10, **options) as websocket:
        assert websocket.recv(timeout=10) == "hello"
    return websocket


# -- rate limits ---------------------------------------------------------------------------


def test_websocket_handshakes_count_against_the_limit(conn: Connection, echo_app: Any) -> None:
    with serve_asgi(limited(echo_app, conn, 3), conn) as base:
        url = ws_url(base, "/ws")
        for sent in range(1, 4):
            headers = greet(url).response.headers
            assert headers["X-RateLimit-Limit"] == "3"
            assert headers["X-RateLimit-Remaining"] == str(3 - sent)
            assert headers["RateLimit-Policy"] == '"default";q=3;w=60'
        with pytest.raises(InvalidStatus) as refused:
            greet(url)
    response = refused.value.response
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["X-RateLimit-Remaining"] == "0"
    body = json.loads(response.body)
    assert body == {
        "error": "Too many requests",
        "retryAfter": int(response.headers["Retry-After"]),
    }


def test_a_server_without_denial_responses_refuses_with_a_403(
    conn: Connection, echo_app: Any
) -> None:
    app = without_denial_responses(limited(echo_app, conn, 1))
    with serve_asgi(app, conn) as base:
        url = ws_url(base, "/ws")
        greet(url)
        with pytest.raises(InvalidStatus) as refused:
            greet(url)
    assert refused.value.response.status_code == 403


def test_websocket_limits_can_be_turned_off(conn: Connection, echo_app: Any) -> None:
    with serve_asgi(limited(echo_app, conn, 1, websockets=False), conn) as base:
        for _ in range(3):
            assert "X-RateLimit-Limit" not in greet(ws_url(base, "/ws")).response.headers


def test_a_fastapi_router_limit_covers_its_websocket_routes(conn: Connection) -> None:
    """``RateLimit`` in a router's dependencies limits websocket handshakes too (close 1008)."""
    limiter = AsyncRatelimit(conn, SlidingLog(2, "60 s"), prefix=f"ws-limit-{next(_prefixes)}")
    router = fastapi.APIRouter(dependencies=[fastapi.Depends(RateLimit(limiter))])

    @router.get("/page")
    async def page() -> Any:
        return {"ok": True}

    @router.websocket("/ws")
    async def echo(websocket: fastapi.WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = fastapi.FastAPI()
    app.include_router(router)
    with serve_asgi(app, conn) as base:
        for _ in range(2):
            greet(ws_url(base, "/ws"))
        with pytest.raises(InvalidStatus) as refused:
            greet(ws_url(base, "/ws"))
        with httpx.Client(base_url=base) as client:
            assert client.get("/page").status_code == 200  # another route: its own count
    assert refused.value.response.status_code == 403


# -- sessions ------------------------------------------------------------------------------


Loaded = fastapi.Depends(load_session)


def session_app(store: AsyncSessionStore) -> fastapi.FastAPI:
    app = fastapi.FastAPI()
    app.add_middleware(SessionMiddleware, store=store)

    @app.post("/login")
    async def login(user: str, session: RequestSession = Loaded) -> Any:
        session.regenerate(user_id=user)
        return {"ok": True}

    @app.get("/visits")
    async def visits(session: RequestSession = Loaded) -> Any:
        return {"visits": session.get("visits", 0)}

    @app.websocket("/ws")
    async def ws(websocket: fastapi.WebSocket, session: RequestSession = Loaded) -> None:
        session["visits"] = session.get("visits", 0) + 1  # stored when the app accepts
        await websocket.accept()
        await websocket.send_json({"user": session.user_id, "visits": session["visits"]})
        await websocket.close()

    return app


@pytest.fixture
def session_store(conn: Connection) -> AsyncSessionStore:
    return AsyncSessionStore(conn, prefix=f"ws-session-{next(_prefixes)}")


def session_cookie(response: httpx.Response) -> str:
    # The cookie is Secure: the test carries it over plain HTTP by hand, as a browser would not.
    return response.headers["set-cookie"].split(";", 1)[0]


def test_a_websocket_reads_and_stores_the_session(
    conn: Connection, session_store: AsyncSessionStore
) -> None:
    with serve_asgi(session_app(session_store), conn) as base:
        with httpx.Client(base_url=base) as client:
            cookie = session_cookie(client.post("/login", params={"user": "ann"}))
            for visit in (1, 2):
                with connect(
                    ws_url(base, "/ws"), additional_headers={"Cookie": cookie}, open_timeout=10
                ) as websocket:
                    assert json.loads(websocket.recv(timeout=10)) == {
                        "user": "ann",
                        "visits": visit,
                    }
                # A session that existed gets no new cookie on the accept.
                assert "set-cookie" not in websocket.response.headers
            assert client.get("/visits", headers={"Cookie": cookie}).json() == {"visits": 2}
        # Without a cookie: a new session, handed out on the accept.
        with connect(ws_url(base, "/ws"), open_timeout=10) as websocket:
            assert json.loads(websocket.recv(timeout=10)) == {"user": None, "visits": 1}
        handed = websocket.response.headers["set-cookie"]
        assert "HttpOnly" in handed
        assert handed.split(";", 1)[0] != cookie


@pytest.mark.parametrize("denial", [True, False], ids=["denial-response", "close"])
def test_a_session_store_that_is_down_refuses_the_handshake(denial: bool) -> None:
    down = Connection(f"redis://127.0.0.1:{closed_port()}", connect_timeout=0.5)
    app = session_app(AsyncSessionStore(down))
    served = app if denial else without_denial_responses(app)
    with serve_asgi(served, down) as base, pytest.raises(InvalidStatus) as refused:
        connect(ws_url(base, "/ws"), additional_headers={"Cookie": "session=a.b"}, open_timeout=10)
    response = refused.value.response
    if denial:
        assert response.status_code == 503
        assert json.loads(response.body)["error"] == "session_unavailable"
    else:
        assert response.status_code == 403


def test_an_accept_whose_session_cannot_be_stored_fails_in_the_app() -> None:
    """The app learns its accept was refused: it must not go on as if the socket were open."""
    down = Connection(f"redis://127.0.0.1:{closed_port()}", connect_timeout=0.5)
    seen: list[str] = []
    app = fastapi.FastAPI()
    app.add_middleware(SessionMiddleware, store=AsyncSessionStore(down))

    @app.websocket("/push")
    async def push(websocket: fastapi.WebSocket, session: RequestSession = Loaded) -> None:
        session["subscribed"] = True  # a new session (no cookie): created at accept
        try:
            await websocket.accept()
        except SessionUnavailableError:
            seen.append("refused")
            raise
        seen.append("opened")

    with serve_asgi(app, down) as base:
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(base, "/push"), open_timeout=10)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    assert refused.value.response.status_code == 503
    assert seen == ["refused"]
