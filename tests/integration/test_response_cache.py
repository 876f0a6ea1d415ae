"""Response caching over real HTTP: FastAPI and Starlette under uvicorn, Flask under werkzeug.

Each app counts how often its endpoint runs: a hit is a request that did not run it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import flask
import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from redkit import AsyncCache, Cache
from redkit.drivers.connect import Connection
from redkit.web.asgi import cache as asgi_cache
from redkit.web.flask import cache as flask_cache
from support.web import serve_asgi, serve_wsgi


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def bump(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls


def fastapi_app(conn: Connection, counter: Counter) -> FastAPI:
    # A generous timeout: on this small machine a burst of new cluster connections can be slow,
    # and a read that times out is answered by the endpoint (as designed), not by the cache.
    cache = AsyncCache(conn, namespace="web", timeout=5)
    app = FastAPI()

    @app.get("/products")
    @asgi_cache.cache_response(cache, ttl="5 m", tags=["products"])
    async def products(category: str = "all") -> dict[str, Any]:
        return {"category": category, "call": counter.bump()}

    @app.get("/slow")
    @asgi_cache.cache_response(cache, ttl="5 m")
    def slow() -> dict[str, Any]:  # a sync endpoint: run in the threadpool
        time.sleep(0.3)
        return {"call": counter.bump()}

    @app.get("/missing")
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def missing() -> Response:
        counter.bump()
        return JSONResponse({"error": "not here"}, status_code=404)

    @app.get("/personal")
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def personal() -> Response:
        response = JSONResponse({"call": counter.bump()})
        response.set_cookie("visitor", "v1")
        return response

    @app.get("/lang")
    @asgi_cache.cache_response(cache, ttl="5 m", vary=["Accept-Language"])
    async def lang(request: Request) -> dict[str, Any]:
        return {"lang": request.headers.get("accept-language"), "call": counter.bump()}

    @app.post("/invalidate")
    async def invalidate() -> dict[str, int]:
        dropped = await products.invalidate("/products", "category=all")  # type: ignore[attr-defined]
        return {"dropped": dropped}

    @app.post("/invalidate-tag")
    async def invalidate_tag() -> dict[str, int]:
        return {"stale": await cache.invalidate_tags("products")}

    return app


def starlette_app(conn: Connection, counter: Counter) -> Starlette:
    cache = AsyncCache(conn, namespace="web")

    @asgi_cache.cache_response(cache, ttl="5 m")
    async def page(request: Request) -> Response:
        return PlainTextResponse(f"page {request.path_params['n']} call {counter.bump()}")

    return Starlette(routes=[Route("/page/{n}", page, methods=["GET", "HEAD"])])


def flask_app(conn: Connection, counter: Counter) -> flask.Flask:
    cache = Cache(conn, namespace="web", timeout=5)
    app = flask.Flask(__name__)

    @app.get("/products")
    @flask_cache.cache_response(cache, ttl="5 m", tags=["products"])
    def products() -> Any:
        return {"category": flask.request.args.get("category", "all"), "call": counter.bump()}

    @app.get("/slow")
    @flask_cache.cache_response(cache, ttl="5 m")
    def slow() -> Any:
        time.sleep(0.3)
        return {"call": counter.bump()}

    @app.get("/missing")
    @flask_cache.cache_response(cache, ttl="5 m")
    def missing() -> Any:
        counter.bump()
        return {"error": "not here"}, 404

    @app.get("/personal")
    @flask_cache.cache_response(cache, ttl="5 m")
    def personal() -> Any:
        response = flask.make_response({"call": counter.bump()})
        response.set_cookie("visitor", "v1")
        return response

    @app.get("/lang")
    @flask_cache.cache_response(cache, ttl="5 m", vary=["Accept-Language"])
    def lang() -> Any:
        return {"lang": flask.request.headers.get("Accept-Language"), "call": counter.bump()}

    @app.post("/invalidate")
    def invalidate() -> Any:
        return {"dropped": products.invalidate("/products", "category=all")}  # type: ignore[attr-defined]

    @app.post("/invalidate-tag")
    def invalidate_tag() -> Any:
        return {"stale": cache.invalidate_tags("products")}

    return app


@pytest.fixture(params=["fastapi", "flask"])
def served(request: pytest.FixtureRequest, conn: Connection) -> Iterator[tuple[str, Counter]]:
    counter = Counter()
    if request.param == "fastapi":
        with serve_asgi(fastapi_app(conn, counter), conn) as url:
            yield url, counter
    else:
        with serve_wsgi(flask_app(conn, counter)) as url:
            yield url, counter


def test_a_second_read_is_a_hit_with_the_same_body(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as client:
        first = client.get("/products", params={"category": "all", "page": "1"})
        second = client.get("/products?page=1&category=all")  # the same query, another order
        other = client.get("/products", params={"category": "audio"})
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] == "MISS"
    assert second.headers["x-cache"] == "HIT"
    assert second.json() == first.json() == {"category": "all", "call": 1}
    assert second.headers["content-type"].startswith("application/json")
    assert second.headers["etag"] == first.headers["etag"]
    assert first.headers["cache-control"] == "max-age=300"
    assert 295 <= int(second.headers["cache-control"].removeprefix("max-age=")) <= 300
    assert other.headers["x-cache"] == "MISS"
    assert other.json() == {"category": "audio", "call": 2}
    assert counter.calls == 2


def test_a_matching_etag_gets_304_without_a_body(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as client:
        etag = client.get("/products").headers["etag"]
        unchanged = client.get("/products", headers={"If-None-Match": etag})
        weak = client.get("/products", headers={"If-None-Match": f'"x", W/{etag}'})
        other = client.get("/products", headers={"If-None-Match": '"something-else"'})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["etag"] == etag
    assert weak.status_code == 304
    assert other.status_code == 200
    assert other.json()["call"] == 1
    assert counter.calls == 1


def test_no_cache_refreshes_and_no_store_bypasses(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as client:
        client.get("/products")
        fresh = client.get("/products", headers={"Cache-Control": "no-cache"})
        after = client.get("/products")
        bypass = client.get("/products", headers={"Cache-Control": "no-store"})
        last = client.get("/products")
    assert fresh.headers["x-cache"] == "MISS"
    assert fresh.json()["call"] == 2
    assert after.json()["call"] == 2  # the refreshed copy replaced the old one
    assert after.headers["x-cache"] == "HIT"
    assert bypass.json()["call"] == 3
    assert last.json()["call"] == 2  # no-store wrote nothing
    assert counter.calls == 3


def test_errors_and_responses_with_cookies_are_never_stored(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as client:
        missing = [client.get("/missing") for _ in range(2)]
        personal = [client.get("/personal") for _ in range(2)]
    assert [r.status_code for r in missing] == [404, 404]
    assert all("x-cache" not in r.headers for r in missing)
    assert [r.json()["call"] for r in personal] == [3, 4]
    assert all("visitor=v1" in r.headers["set-cookie"] for r in personal)
    assert counter.calls == 4


def test_vary_headers_are_part_of_the_key(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as client:
        english = client.get("/lang", headers={"Accept-Language": "en"})
        french = client.get("/lang", headers={"Accept-Language": "fr"})
        again = client.get("/lang", headers={"Accept-Language": "en"})
    assert english.json() == {"lang": "en", "call": 1}
    assert french.json() == {"lang": "fr", "call": 2}
    assert again.json() == english.json()
    assert counter.calls == 2


def test_explicit_invalidation_by_url_and_by_tag(served: tuple[str, Counter]) -> None:
    url, counter = served
    with httpx.Client(base_url=url) as client:
        client.get("/products", params={"category": "all"})
        assert client.post("/invalidate").json() == {"dropped": 1}
        assert client.get("/products", params={"category": "all"}).json()["call"] == 2
        client.get("/products", params={"category": "audio"})
        client.post("/invalidate-tag")
        assert client.get("/products", params={"category": "all"}).json()["call"] == 4
        assert client.get("/products", params={"category": "audio"}).json()["call"] == 5
    assert counter.calls == 5


def test_a_stampede_of_cold_requests_runs_the_endpoint_once(served: tuple[str, Counter]) -> None:
    url, counter = served

    def fetch(_: int) -> Any:
        with httpx.Client(base_url=url, timeout=30) as client:
            return client.get("/slow").json()

    with httpx.Client(base_url=url) as client:  # the server's connections to Redis are open
        client.get("/products")
        counter.calls = 0

    with ThreadPoolExecutor(12) as pool:
        bodies = list(pool.map(fetch, range(12)))
    assert bodies == [{"call": 1}] * 12
    assert counter.calls == 1


def test_plain_starlette_endpoints_and_head(conn: Connection) -> None:
    counter = Counter()
    with (
        serve_asgi(starlette_app(conn, counter), conn) as url,
        httpx.Client(base_url=url) as client,
    ):
        first = client.get("/page/1")
        second = client.get("/page/1")
        head = client.head("/page/1")
    assert first.text == second.text == "page 1 call 1"
    assert second.headers["x-cache"] == "HIT"
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == first.headers["etag"]
    assert counter.calls == 1


def test_stacked_with_a_rate_limit_and_the_endpoints_own_request(conn: Connection) -> None:
    from redkit import AsyncRatelimit, FixedWindow
    from redkit.web.fastapi import rate_limit

    counter = Counter()
    cache = AsyncCache(conn, namespace="web", timeout=5)
    limiter = AsyncRatelimit(conn, FixedWindow(3, "1 m"), prefix="stacked")
    app = FastAPI()

    @app.get("/stacked")
    @rate_limit(limiter)
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def stacked(request: Request, n: int = 0) -> dict[str, Any]:
        return {"path": request.url.path, "n": n, "call": counter.bump()}

    with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
        replies = [client.get("/stacked", params={"n": 7}) for _ in range(4)]
        schema = client.get("/openapi.json").json()
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers.get("x-cache") for r in replies[:3]] == ["MISS", "HIT", "HIT"]
    assert replies[2].json() == {"path": "/stacked", "n": 7, "call": 1}
    assert replies[1].headers["x-ratelimit-remaining"] == "1"  # the limit runs on hits too
    assert replies[3].json() == {"error": "Too many requests", "retryAfter": int(
        replies[3].headers["retry-after"])}  # fmt: skip
    parameters = schema["paths"]["/stacked"]["get"]["parameters"]
    assert [p["name"] for p in parameters] == ["n"]  # nothing injected shows in the API


def test_the_flask_extension_brings_limits_response_cache_and_sessions(conn: Connection) -> None:
    import warnings

    from redkit import FixedWindow, Ratelimit, SessionStore
    from redkit.web.flask import Redkit

    counter = Counter()
    app = flask.Flask(__name__)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the plain-HTTP cookie warning, asserted elsewhere
        ext = Redkit(
            app,
            ratelimit=Ratelimit(conn, FixedWindow(100, "1 m"), prefix="ext-default"),
            cache=Cache(conn, namespace="ext", timeout=5),
            sessions=SessionStore(conn, prefix="ext-session"),
            session_options={"secure": False},
        )

    @app.get("/catalog")
    @ext.limit(Ratelimit(conn, FixedWindow(3, "1 m"), prefix="ext-catalog"))
    @ext.cache_response(ttl="1 m")
    def catalog() -> Any:
        return {"call": counter.bump()}

    @app.post("/login")
    def login() -> Any:
        name = flask.request.args.get("name", "ada")
        flask.session.regenerate(user_id=name)  # type: ignore[attr-defined]
        flask.session["theme"] = "dark"
        return {"ok": True}

    @app.get("/hello")
    @ext.cache_response(ttl="1 m")
    def hello() -> Any:  # reads the session: never stored for the next visitor
        return {"hello": flask.session.user_id}  # type: ignore[attr-defined]

    @app.get("/me")
    def me() -> Any:
        return {"user": flask.session.user_id, "theme": flask.session.get("theme")}  # type: ignore[attr-defined]

    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        replies = [client.get("/catalog") for _ in range(4)]
        assert client.post("/login").status_code == 200
        assert client.get("/me").json() == {"user": "ada", "theme": "dark"}
        assert client.get("/hello").json() == {"hello": "ada"}
        with httpx.Client(base_url=url) as other:
            other.post("/login", params={"name": "bob"})
            assert other.get("/hello").json() == {"hello": "bob"}
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert [r.headers.get("x-cache") for r in replies[:3]] == ["MISS", "HIT", "HIT"]
    assert replies[0].headers["x-ratelimit-limit"] == "3"
    assert counter.calls == 1


@pytest.mark.filterwarnings("ignore::redkit.errors.InsecureCookieWarning")
def test_answers_meant_for_one_visitor_are_never_stored(conn: Connection) -> None:
    """Credentials, a used session, a Vary the key cannot honour, a cookie set on the side."""
    from fastapi import Depends

    from redkit import AsyncRatelimit, AsyncSessionStore, FixedWindow
    from redkit.web.asgi import RequestSession, SessionMiddleware, load_session
    from redkit.web.fastapi import RateLimit

    counter = Counter()
    cache = AsyncCache(conn, namespace="web", timeout=5)
    limiter = AsyncRatelimit(conn, FixedWindow(100, "1 m"), prefix="private")
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=AsyncSessionStore(conn), secure=False)

    @app.post("/login")
    async def login(name: str, session: RequestSession = Depends(load_session)) -> Any:  # noqa: B008
        session.regenerate(user_id=name)
        session["name"] = name
        return {"ok": True}

    @app.get("/hello")
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def hello(request: Request) -> dict[str, Any]:
        session = await load_session(request)
        return {"hello": session.get("name"), "call": counter.bump()}

    @app.get("/token")
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def token(request: Request) -> dict[str, Any]:
        return {"auth": request.headers.get("authorization"), "call": counter.bump()}

    @app.get("/negotiated")
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def negotiated() -> Response:
        return JSONResponse({"call": counter.bump()}, headers={"Vary": "Cookie"})

    @app.get("/side-cookie", dependencies=[Depends(RateLimit(limiter))])
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def side_cookie(response: Response) -> dict[str, Any]:
        response.set_cookie("visitor", "v1")
        return {"call": counter.bump()}

    @app.get("/limited", dependencies=[Depends(RateLimit(limiter))])
    @asgi_cache.cache_response(cache, ttl="5 m")
    async def limited() -> dict[str, Any]:
        return {"call": counter.bump()}

    with (
        serve_asgi(app, conn) as url,
        httpx.Client(base_url=url) as alice,
        httpx.Client(base_url=url) as bob,
    ):
        alice.post("/login", params={"name": "alice"})
        bob.post("/login", params={"name": "bob"})
        assert alice.get("/hello").json()["hello"] == "alice"
        assert bob.get("/hello").json()["hello"] == "bob"  # not alice's page
        assert "x-cache" not in bob.get("/hello").headers
        assert bob.get("/token", headers={"Authorization": "Bearer b"}).json()["auth"] == "Bearer b"
        assert (
            alice.get("/token", headers={"Authorization": "Bearer a"}).json()["auth"] == "Bearer a"
        )
        assert [alice.get("/negotiated").json()["call"] for _ in range(2)] == [6, 7]
        cookies = [alice.get("/side-cookie") for _ in range(2)]
        assert all("visitor=v1" in r.headers["set-cookie"] for r in cookies)
        assert [r.json()["call"] for r in cookies] == [8, 9]
        assert all("x-ratelimit-limit" in r.headers for r in cookies)
        first, second = httpx.get(url + "/limited"), httpx.get(url + "/limited")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    # The limit's headers reach a cached answer too, each with this request's count.
    assert second.headers["x-ratelimit-limit"] == "100"
    assert int(second.headers["x-ratelimit-remaining"]) < int(
        first.headers["x-ratelimit-remaining"]
    )
    assert counter.calls == 10


def test_the_wrong_cache_or_another_librarys_ttl_is_refused_at_decoration(conn: Connection) -> None:
    from redkit.cache import AsyncCache, Cache
    from redkit.core.errors import InvalidArgumentError
    from redkit.web.asgi import cache as asgi_cache
    from redkit.web.flask import cache as flask_cache

    with pytest.raises(InvalidArgumentError, match="needs an AsyncCache") as raised:
        asgi_cache.cache_response(Cache(conn), ttl="1 m")  # type: ignore[arg-type]
    assert "AsyncCache(redis" in str(raised.value)
    with pytest.raises(InvalidArgumentError, match="needs a blocking Cache"):
        flask_cache.cache_response(AsyncCache(conn), ttl="1 m")  # type: ignore[arg-type]
    for decorate, cache in (
        (asgi_cache.cache_response, AsyncCache(conn)),
        (flask_cache.cache_response, Cache(conn)),
    ):
        for spelling in ("expire", "timeout"):
            with pytest.raises(InvalidArgumentError, match=r"ttl=") as raised:
                decorate(cache, **{spelling: 60})  # type: ignore[arg-type]
            assert f"keyword {spelling}=" in str(raised.value)
        with pytest.raises(InvalidArgumentError, match="needs ttl="):
            decorate(cache)  # type: ignore[arg-type]
