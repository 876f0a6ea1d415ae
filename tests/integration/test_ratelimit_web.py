"""Rate limits in web apps, over real HTTP: Starlette middleware, FastAPI, Flask.

Every test runs on a standalone Redis and on a 3-master cluster. Apps are served on loopback
(uvicorn / werkzeug, in a thread) and driven with httpx, so requests come from 127.0.0.1.
The limit is an exact sliding log of 10 per minute: the 11th request is refused whatever the
clock does meanwhile.
"""

from __future__ import annotations

import functools
import re
import time
from typing import Annotated, Any

import flask
import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import PlainTextResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from redkit import (
    AsyncRatelimit,
    AsyncTieredRatelimit,
    Connection,
    Ratelimit,
    SlidingLog,
    TieredRatelimit,
)
from redkit.core.keys import escape
from redkit.errors import InvalidArgumentError
from redkit.web import TrustedProxies, by_api_key, by_client_ip, tier_by_api_key
from redkit.web.asgi import RateLimitMiddleware, RequestSession, load_session
from redkit.web.fastapi import RateLimit, rate_limit
from redkit.web.flask import Redkit
from support.probes import closed_port
from support.web import serve_asgi, serve_wsgi

#: An endpoint's session, loaded by the endpoint's own dependency.
LoadedSession = Annotated[RequestSession, Depends(load_session)]

LIMIT = 10
WINDOW = 60
TIERS = {
    "free": SlidingLog(2, "60 s"),
    "pro": SlidingLog(4, "60 s"),
    "enterprise": SlidingLog(7, "60 s"),
}
API_KEYS = {"key-free-1": "free", "key-pro-1": "pro", "key-ent-1": "enterprise"}


# -- what every response must say ---------------------------------------------------------------


def ratelimit_field(value: str) -> tuple[str, int, int | None]:
    match = re.fullmatch(r'"([^"]*)";r=(\d+)(?:;t=(\d+))?', value)
    assert match, value
    t = match.group(3)
    return match.group(1), int(match.group(2)), int(t) if t is not None else None


def check_allowed(
    response: httpx.Response, remaining: int, *, limit: int = LIMIT, name: str = "default"
) -> None:
    assert response.status_code == 200, response.text
    headers = response.headers
    assert headers["RateLimit-Policy"] == f'"{name}";q={limit};w={WINDOW}'
    policy, r, t = ratelimit_field(headers["RateLimit"])
    assert (policy, r) == (name, remaining)
    assert t is not None
    assert 0 < t <= WINDOW
    assert headers["X-RateLimit-Limit"] == str(limit)
    assert headers["X-RateLimit-Remaining"] == str(remaining)
    # Reset is epoch seconds, the same moment as t (generous: the machine is noisy).
    assert abs(int(headers["X-RateLimit-Reset"]) - time.time() - t) <= 5
    assert "Retry-After" not in headers


def check_refused(response: httpx.Response, *, limit: int = LIMIT, name: str = "default") -> int:
    assert response.status_code == 429, response.text
    headers = response.headers
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= WINDOW
    assert response.content == b'{"error":"Too many requests","retryAfter":%d}' % retry
    assert response.json() == {"error": "Too many requests", "retryAfter": retry}
    assert headers["content-type"] == "application/json"
    assert headers["RateLimit-Policy"] == f'"{name}";q={limit};w={WINDOW}'
    assert ratelimit_field(headers["RateLimit"]) == (name, 0, retry)
    assert headers["X-RateLimit-Limit"] == str(limit)
    assert headers["X-RateLimit-Remaining"] == "0"
    assert abs(int(headers["X-RateLimit-Reset"]) - time.time() - retry) <= 5
    return retry


def exhaust(client: httpx.Client, path: str, **kwargs: Any) -> None:
    """Ten admitted requests with the right headers, then a refused eleventh."""
    for sent in range(1, LIMIT + 1):
        check_allowed(client.get(path, **kwargs), LIMIT - sent)
    check_refused(client.get(path, **kwargs))


# -- Starlette: the pure ASGI middleware --------------------------------------------------------


def starlette_app(conn: Connection, calls: list[str] | None = None, **options: Any) -> Starlette:
    async def home(request: Request) -> Response:
        if calls is not None:
            calls.append(request.url.path)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/", home), Route("/health", home)])
    limiter = options.pop("ratelimit", None) or AsyncRatelimit(conn, SlidingLog(LIMIT, "60 s"))
    app.add_middleware(RateLimitMiddleware, ratelimit=limiter, **options)
    return app


def test_starlette_middleware_refuses_the_11th_request_without_calling_the_app(
    conn: Connection,
) -> None:
    calls: list[str] = []
    with (
        serve_asgi(starlette_app(conn, calls, exempt={"/health"}), conn) as url,
        httpx.Client(base_url=url) as client,
    ):
        exhaust(client, "/")
        assert len(calls) == LIMIT  # the refusal never reached the app
        # An exempt path is neither counted nor refused, and carries no headers.
        health = client.get("/health")
        assert health.status_code == 200
        assert "RateLimit" not in health.headers
        assert "X-RateLimit-Limit" not in health.headers


def test_starlette_middleware_takes_a_blocking_limiter_too(conn: Connection) -> None:
    limiter = Ratelimit(conn, SlidingLog(LIMIT, "60 s"))
    with (
        serve_asgi(starlette_app(conn, ratelimit=limiter), conn) as url,
        httpx.Client(base_url=url) as client,
    ):
        exhaust(client, "/")


def test_header_switches_turn_each_set_off(conn: Connection) -> None:
    app = starlette_app(conn, ietf=False)
    with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
        first = client.get("/")
        assert "RateLimit" not in first.headers
        assert "RateLimit-Policy" not in first.headers
        assert first.headers["X-RateLimit-Remaining"] == str(LIMIT - 1)
    app = starlette_app(conn, legacy=False, scope="legacy-off")
    with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
        first = client.get("/")
        assert ratelimit_field(first.headers["RateLimit"])[1] == LIMIT - 1
        assert not any(name.startswith("x-ratelimit") for name in first.headers)
    app = starlette_app(conn, ietf=False, legacy=False, scope="both-off")
    with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
        for _ in range(LIMIT):
            ok = client.get("/")
            assert ok.status_code == 200
            assert not any("ratelimit" in name for name in ok.headers)
        refused = client.get("/")
        assert refused.status_code == 429
        # Retry-After is HTTP's own, not a rate-limit header set: it always comes with a 429.
        retry = int(refused.headers["Retry-After"])
        assert refused.json() == {"error": "Too many requests", "retryAfter": retry}
        assert not any("ratelimit" in name for name in refused.headers)


def test_an_untrusted_forwarded_for_cannot_choose_the_bucket(conn: Connection) -> None:
    # No trusted proxies: the socket peer (127.0.0.1) is the client, whatever it claims.
    with serve_asgi(starlette_app(conn), conn) as url, httpx.Client(base_url=url) as client:
        for sent in range(1, LIMIT + 1):
            spoofed = {
                "X-Forwarded-For": f"203.0.113.{sent}",
                "Forwarded": f"for=198.51.100.{sent}",
            }
            check_allowed(client.get("/", headers=spoofed), LIMIT - sent)
        check_refused(client.get("/", headers={"X-Forwarded-For": "192.0.2.99"}))


def test_a_trusted_proxy_forwarded_for_picks_the_bucket(conn: Connection) -> None:
    proxies = TrustedProxies(["127.0.0.1/32"])
    app = starlette_app(conn, key=by_client_ip(proxies))
    with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
        exhaust(client, "/", headers={"X-Forwarded-For": "203.0.113.7"})
        # A client may prepend anything: the proxy appended the real address, which counts.
        check_refused(client.get("/", headers={"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}))
        # Another client behind the same proxy has a bucket of its own.
        check_allowed(client.get("/", headers={"X-Forwarded-For": "203.0.113.8"}), LIMIT - 1)
        # IPv6 clients of one /64 share a bucket; garbage never becomes a bucket.
        check_allowed(client.get("/", headers={"X-Forwarded-For": "2001:db8::1"}), LIMIT - 1)
        check_allowed(client.get("/", headers={"X-Forwarded-For": "2001:db8::2"}), LIMIT - 2)
        # An entry that is no address stops the walk at the proxy that reported it.
        check_allowed(client.get("/", headers={"X-Forwarded-For": "<script>"}), LIMIT - 1)
        check_allowed(client.get("/", headers={"X-Forwarded-For": "unknown"}), LIMIT - 2)
    keys = all_keys_of(conn)
    for identifier in ["ip:203.0.113.7", "ip:203.0.113.8", "ip:2001:db8::/64", "ip:127.0.0.1"]:
        assert any(escape(identifier) in key or identifier in key for key in keys), identifier
    assert not any("script" in key or "unknown" in key for key in keys)


def test_forwarded_rfc_7239_through_a_trusted_proxy(conn: Connection) -> None:
    proxies = TrustedProxies(["127.0.0.1/32"], header="forwarded")
    app = starlette_app(conn, key=by_client_ip(proxies))
    with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
        forwarded = 'for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.1'
        exhaust(client, "/", headers={"Forwarded": forwarded})
        other = client.get("/", headers={"Forwarded": "for=198.51.100.4"})
        check_allowed(other, LIMIT - 1)


def all_keys_of(conn: Connection) -> list[str]:
    client: Any = conn.sync_driver().client
    if hasattr(client, "get_primaries"):
        return [k.decode() for n in client.get_primaries() for k in client.keys(target_nodes=n)]
    return [k.decode() for k in client.keys("*")]


# -- FastAPI: the dependency and the decorator ---------------------------------------------


def fastapi_app(conn: Connection) -> FastAPI:
    limiter = AsyncRatelimit(conn, SlidingLog(LIMIT, "60 s"))
    app = FastAPI()

    @app.get("/route", dependencies=[Depends(RateLimit(limiter, scope="route"))])
    async def route() -> dict[str, str]:
        return {"at": "route"}

    router = APIRouter(prefix="/api", dependencies=[Depends(RateLimit(limiter, scope="api"))])

    @router.get("/a")
    async def router_a() -> dict[str, str]:
        return {"at": "a"}

    @router.get("/b")
    def router_b() -> dict[str, str]:
        return {"at": "b"}

    app.include_router(router)

    @app.get("/items/{item_id}")
    @rate_limit(limiter, scope="items")
    async def item(item_id: int, q: str = "none") -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.get("/plain")
    @rate_limit(limiter, scope="plain")
    def plain(name: str) -> PlainTextResponse:  # sync, returns a Response of its own
        return PlainTextResponse(f"hello {name}")

    return app


def test_fastapi_dependency_on_a_route(conn: Connection) -> None:
    with serve_asgi(fastapi_app(conn), conn) as url, httpx.Client(base_url=url) as client:
        exhaust(client, "/route")
        assert client.get("/route").status_code == 429


def test_fastapi_dependency_on_a_router_counts_its_routes_together(conn: Connection) -> None:
    with serve_asgi(fastapi_app(conn), conn) as url, httpx.Client(base_url=url) as client:
        for sent in range(1, LIMIT + 1):
            response = client.get("/api/a" if sent % 2 else "/api/b")
            check_allowed(response, LIMIT - sent)
        check_refused(client.get("/api/b"))
        check_refused(client.get("/api/a"))
        check_allowed(client.get("/route"), LIMIT - 1)  # another scope, another count


def test_fastapi_decorator_needs_no_request_parameter(conn: Connection) -> None:
    with serve_asgi(fastapi_app(conn), conn) as url, httpx.Client(base_url=url) as client:
        for sent in range(1, LIMIT + 1):
            response = client.get(f"/items/{sent}", params={"q": "x"})
            check_allowed(response, LIMIT - sent)
            assert response.json() == {"item_id": sent, "q": "x"}
        check_refused(client.get("/items/1"))
        # The endpoint's own validation still works (the limit comes after it).
        assert client.get("/items/not-a-number").status_code == 422
        # A sync endpoint returning its own Response gets the headers too.
        for sent in range(1, LIMIT + 1):
            response = client.get("/plain", params={"name": "ada"})
            check_allowed(response, LIMIT - sent)
            assert response.text == "hello ada"
        check_refused(client.get("/plain", params={"name": "ada"}))
    schema = fastapi_app(conn).openapi()
    params = [p["name"] for p in schema["paths"]["/items/{item_id}"]["get"]["parameters"]]
    assert params == ["item_id", "q"]  # the injected request is not a parameter


def test_fastapi_tiers_per_api_key(conn: Connection) -> None:
    limiter = AsyncTieredRatelimit(conn, TIERS)
    app = FastAPI()
    dependency = RateLimit(
        limiter, key=by_api_key(), tier=tier_by_api_key(API_KEYS, default="free")
    )

    @app.get("/data", dependencies=[Depends(dependency)])
    async def data() -> dict[str, bool]:
        return {"ok": True}

    with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
        for api_key, tier in [*API_KEYS.items(), ("unknown-key", "free"), (None, "free")]:
            limit = TIERS[tier].limit
            headers = {"X-API-Key": api_key} if api_key else {}
            for sent in range(1, limit + 1):
                check_allowed(
                    client.get("/data", headers=headers), limit - sent, limit=limit, name=tier
                )
            check_refused(client.get("/data", headers=headers), limit=limit, name=tier)
    keys = all_keys_of(conn)
    assert keys
    assert not any(api_key in key for key in keys for api_key in API_KEYS)  # only digests


# -- Flask: the extension -------------------------------------------------------------------


def flask_app(conn: Connection, **config: Any) -> tuple[flask.Flask, Redkit]:
    app = flask.Flask(__name__)
    app.config.update(config)
    ext = Redkit(ratelimit=Ratelimit(conn, SlidingLog(LIMIT, "60 s")))
    per_view = Ratelimit(conn, SlidingLog(3, "60 s"), prefix="per-view")

    @app.get("/")
    def home() -> Any:
        return {"ok": True}

    @app.get("/other")
    def other() -> Any:
        return {"ok": True}

    @app.get("/strict")
    @ext.limit(per_view)
    def strict() -> Any:
        return {"ok": True}

    @app.get("/free")
    @ext.exempt
    def free() -> Any:
        return {"ok": True}

    ext.init_app(app)
    return app, ext


def test_flask_default_limit_and_per_view_and_exempt(conn: Connection) -> None:
    app, _ = flask_app(conn)
    assert "redkit" in app.extensions
    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        exhaust(client, "/")
        # Each route counts on its own by default: "/other" has its whole limit left.
        check_allowed(client.get("/other"), LIMIT - 1)
        # A view with a limit of its own is not under the default one.
        for sent in range(1, 4):
            check_allowed(client.get("/strict"), 3 - sent, limit=3)
        check_refused(client.get("/strict"), limit=3)
        for _ in range(3):
            free = client.get("/free")
            assert free.status_code == 200
            assert "X-RateLimit-Limit" not in free.headers


def test_flask_views_made_by_one_factory_keep_their_own_limits(conn: Connection) -> None:
    """Limits belong to the view function, not its name: a factory's views share a name."""
    app = flask.Flask(__name__)
    ext = Redkit(app, ratelimit=Ratelimit(conn, SlidingLog(LIMIT, "60 s")))
    strict = Ratelimit(conn, SlidingLog(3, "60 s"), prefix="factory-views")

    def make(name: str, *, limited: bool) -> Any:
        def view() -> Any:
            return {"view": name}

        return ext.limit(strict, scope=name)(view) if limited else ext.exempt(view)

    app.add_url_rule("/limited", "limited", make("limited", limited=True))
    app.add_url_rule("/exempt", "exempt", make("exempt", limited=False))

    def logged(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        return wrapper

    @app.get("/wrapped")
    @logged  # above the limit: functools.wraps carries the limit to the registered view
    @ext.limit(strict, scope="wrapped")
    def wrapped() -> Any:
        return {"view": "wrapped"}

    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        for path in ("/limited", "/wrapped"):
            for sent in range(1, 4):
                check_allowed(client.get(path), 3 - sent, limit=3)
            check_refused(client.get(path), limit=3)
        for _ in range(LIMIT + 2):
            free = client.get("/exempt")
            assert free.status_code == 200
            assert "X-RateLimit-Limit" not in free.headers


def test_flask_limits_of_a_wrapper_stay_off_the_wrapped_view_and_methods_work(
    conn: Connection,
) -> None:
    app = flask.Flask(__name__)
    ext = Redkit(app, ratelimit=Ratelimit(conn, SlidingLog(LIMIT, "60 s")))
    loose = Ratelimit(conn, SlidingLog(LIMIT, "60 s"), prefix="wrapped-loose")
    strict = Ratelimit(conn, SlidingLog(1, "60 s"), prefix="wrapper-strict")

    def base() -> Any:
        return {"view": "base"}

    limited_base = ext.limit(loose)(base)

    @functools.wraps(limited_base)  # copies the marks: the strict limit must not reach base
    def wrapper() -> Any:
        return limited_base()

    app.add_url_rule("/base", "base", limited_base)
    app.add_url_rule("/wrapper", "wrapper", ext.limit(strict)(wrapper))

    class Pages:
        def page(self) -> Any:
            return {"view": "method"}

    app.add_url_rule("/method", "method", ext.limit(strict, scope="method")(Pages().page))

    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        assert [client.get("/base").status_code for _ in range(3)] == [200, 200, 200]
        assert [client.get("/wrapper").status_code for _ in range(2)] == [200, 429]
        assert [client.get("/method").status_code for _ in range(2)] == [200, 429]


def test_flask_marks_only_what_can_carry_them(conn: Connection) -> None:
    ext = Redkit(ratelimit=Ratelimit(conn, SlidingLog(LIMIT, "60 s")))
    with pytest.raises(InvalidArgumentError, match="only a view function"):
        ext.exempt(len)  # a builtin has no __dict__


def test_flask_header_switches_from_config(conn: Connection) -> None:
    app, _ = flask_app(conn, REDKIT_RATELIMIT_HEADERS_IETF=False)
    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        first = client.get("/")
        assert "RateLimit" not in first.headers
        assert first.headers["X-RateLimit-Remaining"] == str(LIMIT - 1)


def test_flask_trusted_proxy_from_config(conn: Connection) -> None:
    app, _ = flask_app(conn, REDKIT_RATELIMIT_TRUSTED_PROXIES=["127.0.0.1/32"])
    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        exhaust(client, "/", headers={"X-Forwarded-For": "203.0.113.7"})
        check_allowed(client.get("/", headers={"X-Forwarded-For": "203.0.113.8"}), LIMIT - 1)
    untrusted, _ = flask_app(conn)  # no proxies: the header is the client's own word
    with serve_wsgi(untrusted) as url, httpx.Client(base_url=url) as client:
        for sent in range(1, LIMIT + 1):
            response = client.get("/", headers={"X-Forwarded-For": f"198.51.100.{sent}"})
            check_allowed(response, LIMIT - sent)
        check_refused(client.get("/", headers={"X-Forwarded-For": "198.51.100.200"}))


def test_flask_tiers_per_api_key(conn: Connection) -> None:
    app = flask.Flask(__name__)
    ext = Redkit(
        app,
        ratelimit=TieredRatelimit(conn, TIERS),
        key=by_api_key(),
        tier=tier_by_api_key(API_KEYS, default="free"),
    )
    assert app.extensions["redkit"].extension is ext

    @app.get("/")
    def home() -> Any:
        return {"ok": True}

    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        for api_key, tier in API_KEYS.items():
            limit = TIERS[tier].limit
            for sent in range(1, limit + 1):
                response = client.get("/", headers={"X-API-Key": api_key})
                check_allowed(response, limit - sent, limit=limit, name=tier)
            check_refused(client.get("/", headers={"X-API-Key": api_key}), limit=limit, name=tier)


# -- Redis down: the limiter's policy answers, never a 500 ---------------------------------


DOWN = ["redis://127.0.0.1:{port}", "redis+cluster://127.0.0.1:{port}"]


@pytest.mark.parametrize("url", DOWN)
@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_redis_down_follows_the_timeout_policy_over_asgi(url: str, policy: str) -> None:
    down = Connection(url.format(port=closed_port()))
    limiter = AsyncRatelimit(down, SlidingLog(LIMIT, "60 s"), timeout=0.5, on_timeout=policy)  # type: ignore[arg-type]
    app = starlette_app(down, ratelimit=limiter)
    with serve_asgi(app, down) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            response = client.get("/")
            if policy == "allow":
                assert response.status_code == 200
                # Nothing is known of what is left: only the static policy is told.
                assert response.headers["RateLimit-Policy"] == f'"default";q={LIMIT};w={WINDOW}'
                assert "RateLimit" not in response.headers
                assert "X-RateLimit-Remaining" not in response.headers
            else:
                assert response.status_code == 429
                assert response.headers["Retry-After"] == "1"
                assert response.json() == {"error": "Too many requests", "retryAfter": 1}
    down.close()


@pytest.mark.parametrize("url", DOWN)
@pytest.mark.parametrize("policy", ["allow", "deny"])
def test_redis_down_follows_the_timeout_policy_in_fastapi_and_flask(url: str, policy: str) -> None:
    down = Connection(url.format(port=closed_port()))
    options: Any = {"timeout": 0.5, "on_timeout": policy}
    expected = 200 if policy == "allow" else 429

    app = FastAPI()
    limiter = AsyncRatelimit(down, SlidingLog(LIMIT, "60 s"), **options)

    @app.get("/", dependencies=[Depends(RateLimit(limiter))])
    async def home() -> dict[str, bool]:
        return {"ok": True}

    with serve_asgi(app, down) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert [client.get("/").status_code for _ in range(2)] == [expected] * 2

    wsgi = flask.Flask(__name__)
    Redkit(wsgi, ratelimit=Ratelimit(down, SlidingLog(LIMIT, "60 s"), **options))
    wsgi.add_url_rule("/", "home", lambda: {"ok": True})
    with serve_wsgi(wsgi) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert [client.get("/").status_code for _ in range(2)] == [expected] * 2
    down.close()


@pytest.mark.filterwarnings("ignore::redkit.errors.InsecureCookieWarning")
def test_a_per_user_limit_counts_users_apart_whatever_the_dependency_order(
    conn: Connection,
) -> None:
    """The limit runs before the endpoint's ``load_session``: it must still see the user."""
    from redkit import AsyncSessionStore, FixedWindow
    from redkit.web import by_user
    from redkit.web.asgi import SessionMiddleware

    limiter = AsyncRatelimit(conn, FixedWindow(2, "1 h"), prefix=f"per-user-{time.time_ns()}")
    app = FastAPI()
    app.add_middleware(SessionMiddleware, store=AsyncSessionStore(conn, prefix="pu"), secure=False)

    @app.post("/login/{user_id}")
    async def login(user_id: int, session: LoadedSession) -> dict:
        session.regenerate(user_id=user_id)
        return {}

    @app.get("/me", dependencies=[Depends(RateLimit(limiter, key=by_user()))])
    async def me(session: LoadedSession) -> dict:
        return {"user_id": session.user_id}

    with serve_asgi(app, conn) as base:
        clients = [httpx.Client(base_url=base) for _ in range(2)]
        try:
            for user_id, client in enumerate(clients, start=1):
                assert client.post(f"/login/{user_id}").status_code == 200
            # Two users from one IP: each has a bucket of their own.
            statuses = [[client.get("/me").status_code for _ in range(3)] for client in clients]
        finally:
            for client in clients:
                client.close()
    assert statuses == [[200, 200, 429], [200, 200, 429]]


def test_rate_strings_as_slowapi_and_flask_limiter_users_write_them(conn: Connection) -> None:
    """Rate strings in the FastAPI dependency and decorator, the Starlette middleware and the
    Flask extension, with exempt_when= and a cost function; two routes count apart."""
    app = FastAPI()

    @app.get("/a", dependencies=[Depends(RateLimit("3/minute", redis=conn))])
    async def a() -> dict:
        return {}

    @app.get("/b")
    @rate_limit("3 per minute", redis=conn, cost=lambda request: 2)
    async def b(request: Request) -> dict:
        return {}

    exempt = RateLimit(
        "1/minute", redis=conn, exempt_when=lambda request: request.headers("x-ok") == ["1"]
    )

    @app.get("/c", dependencies=[Depends(exempt)])
    async def c() -> dict:
        return {}

    flask_app_ = flask.Flask(__name__)
    Redkit(flask_app_, default_limits=["2 per minute"], redis=conn)

    @flask_app_.get("/f")
    def f() -> str:
        return "ok"

    with serve_asgi(app, conn) as base, httpx.Client(base_url=base) as client:
        on_a = [client.get("/a").status_code for _ in range(4)]
        on_b = [client.get("/b").status_code for _ in range(2)]  # costs 2 of 3: one fits
        on_c = [client.get("/c", headers={"x-ok": "1"}).status_code for _ in range(3)]
        on_c += [client.get("/c").status_code for _ in range(2)]

    async def page(request: Request) -> Response:
        return PlainTextResponse("ok")

    plain = Starlette(routes=[Route("/s", page)])
    plain.add_middleware(RateLimitMiddleware, ratelimit="2/minute", redis=conn)
    with serve_asgi(plain, conn) as base, httpx.Client(base_url=base) as client:
        on_s = [client.get("/s").status_code for _ in range(3)]
    with serve_wsgi(flask_app_) as url, httpx.Client(base_url=url) as client:
        on_f = [client.get("/f").status_code for _ in range(3)]
    assert on_s == [200, 200, 429]
    assert on_a == [200, 200, 200, 429]
    assert on_b == [200, 429]
    assert on_c == [200, 200, 200, 200, 429]  # exempted ones count nothing
    assert on_f == [200, 200, 429]
