"""The demo service: the seed's API route, and the rest of redkit, in one FastAPI app.

Every route says in its docstring which part of redkit it shows. ``/api/stats`` counts the SQL
statements the database ran, so a cache hit is visible as a request that ran none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from redkit.cache import AsyncCache, hash_query
from redkit.core.driver import Backend
from redkit.demo.db import Database
from redkit.demo.page import index_page
from redkit.ratelimit import AsyncRatelimit, AsyncTieredRatelimit, FixedWindow, SlidingWindow
from redkit.sessions import AsyncSessionStore
from redkit.web.fastapi import (
    RateLimit,
    RequestSession,
    SessionMiddleware,
    TrustedProxies,
    by_api_key,
    by_client_ip,
    cache_response,
    load_session,
    tier_by_api_key,
)

if TYPE_CHECKING:
    from redkit.metrics import PrometheusMetrics

__all__ = ["API_KEYS", "create_app", "installed_metrics"]

#: The request's session, loaded (the only routes that read Redis for it are those that ask).
SessionDep = Annotated[RequestSession, Depends(load_session)]

#: The demo's API keys and their tiers (a real service keeps these in its database).
API_KEYS = {"demo-free-key": "free", "demo-pro-key": "pro", "demo-enterprise-key": "enterprise"}


class Login(BaseModel):
    """The body of ``POST /api/login``."""

    name: str = Field(min_length=1, max_length=120)
    password: str = Field(min_length=1, max_length=200)


class UserChanges(BaseModel):
    """The body of ``PATCH /api/users/{id}``."""

    email: str | None = Field(default=None, max_length=120)
    bio: str | None = Field(default=None, max_length=500)


def create_app(
    redis: Backend,
    db: Database,
    *,
    proxies: TrustedProxies | None = None,
    secure_cookies: bool = False,
    metrics: PrometheusMetrics | None = None,
) -> FastAPI:
    """The demo app on ``redis`` and ``db``.

    Args:
        redis: where limits, cached values and sessions live.
        db: the database the API reads and writes.
        proxies: proxies whose ``X-Forwarded-For`` may be believed (none by default: the
            client is the socket peer).
        secure_cookies: mark the session cookie ``Secure``; off by default because the demo
            serves plain HTTP on loopback (the middleware warns about it).
        metrics: served at ``/metrics`` (Prometheus' text format) when given;
            ``redkit demo`` gives one whenever prometheus-client is installed.

    """
    # The seed's limiter, in its own key layout: a JS service could share these counters.
    products_limit = AsyncRatelimit(
        redis, SlidingWindow(10, "10 s"), prefix="@upstash/ratelimit", analytics=True
    )
    tiers = AsyncTieredRatelimit(
        redis,
        {
            "free": SlidingWindow(10, "1 m"),
            "pro": SlidingWindow(100, "1 m"),
            "enterprise": SlidingWindow(1000, "1 m"),
        },
        prefix="demo:tier",
    )
    # Password guessing: 5 attempts a minute per client.
    login_limit = AsyncRatelimit(redis, FixedWindow(5, "1 m"), prefix="demo:login")
    cache = AsyncCache(redis, namespace="demo", default_ttl="5 m")
    sessions = AsyncSessionStore(redis, idle_ttl="30 m", absolute_ttl="12 h", prefix="demo:session")
    client_ip = by_client_ip(proxies)

    app = FastAPI(title="redkit demo", docs_url="/docs", redoc_url=None)
    app.add_middleware(SessionMiddleware, store=sessions, secure=secure_cookies)
    app.state.cache = cache
    if metrics is not None:
        app.mount("/metrics", metrics.asgi_app())

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index(request: Request) -> str:
        return index_page(str(request.base_url).rstrip("/"), API_KEYS)

    @app.get("/api/products", dependencies=[Depends(RateLimit(products_limit, key=client_ip))])
    async def products() -> dict[str, Any]:
        """The seed's route: 10 requests per 10 s per client IP; products cached for 5 min."""
        loaded = False

        async def load() -> list[dict[str, Any]]:
            nonlocal loaded
            loaded = True
            return await run_in_threadpool(db.products)

        items = await cache.get_or_set("products", load, ttl="5 m")
        return {"products": items, "source": "database" if loaded else "cache"}

    @cache.cached(ttl="5 m", key="user:{user_id}")
    async def read_user(user_id: int) -> dict[str, Any] | None:
        return await run_in_threadpool(db.user, user_id)

    @app.get("/api/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, Any]:
        """Cache-aside: the first read loads the user, the next ones hit the cache."""
        user = await read_user(user_id)
        if user is None:
            raise HTTPException(404, "no such user")
        return user

    @app.patch("/api/users/{user_id}")
    async def update_user(
        user_id: int, changes: UserChanges, session: SessionDep
    ) -> dict[str, Any]:
        """Write-through: the database is written first, then the cache from its result."""
        if session.user_id is None:
            raise HTTPException(401, "log in first")
        if session.user_id != user_id:
            raise HTTPException(403, "you can only change your own profile")
        wanted = changes.model_dump(exclude_none=True)
        user = await cache.write_through(
            f"user:{user_id}", lambda: run_in_threadpool(db.update_user, user_id, wanted)
        )
        if user is None:
            raise HTTPException(404, "no such user")
        return dict(user)

    @app.get("/api/search")
    async def search(q: str = "", category: str | None = None, limit: int = 10) -> dict[str, Any]:
        """Hashed query keys: the same filters give the same key, in any order."""
        limit = max(1, min(limit, 50))
        key = "search:" + hash_query({"q": q.lower(), "category": category, "limit": limit})
        results = await cache.get_or_set(
            key, lambda: run_in_threadpool(db.search, q, category, limit), ttl="1 m"
        )
        return {"query": q, "category": category, "results": results, "key": key}

    # FastAPI's @app.get answers HEAD with 405: the route asks for it, and the cache answers a
    # HEAD from the GET entry.
    @app.api_route("/api/catalog", methods=["GET", "HEAD"])
    @cache_response(cache, ttl="1 m", tags=["catalog"])
    async def catalog() -> dict[str, Any]:
        """Response caching: ETag, 304 on If-None-Match, Cache-Control, X-Cache HIT/MISS."""
        return {"products": await run_in_threadpool(db.products)}

    @app.get("/api/reports", dependencies=[Depends(RateLimit(
        tiers, key=by_api_key(known=API_KEYS), tier=tier_by_api_key(API_KEYS, default="free")
    ))])  # fmt: skip
    async def reports(request: Request) -> dict[str, Any]:
        """Tiered limits: the API key's tier decides the limit (free 10, pro 100 per minute)."""
        key = request.headers.get("x-api-key", "")
        products = await run_in_threadpool(db.products)
        return {"tier": API_KEYS.get(key, "free"), "report": {"products": len(products)}}

    @app.post("/api/login", dependencies=[Depends(RateLimit(login_limit, key=client_ip))])
    async def login(body: Login, request: Request, session: SessionDep) -> dict[str, Any]:
        """Sessions: a login gets a new session id (the old one dies), bound to the user.

        Limited to 5 attempts a minute per client IP.
        """
        # Password hashing takes a while on purpose: off the event loop.
        user_id = await run_in_threadpool(db.login, body.name, body.password)
        if user_id is None:
            raise HTTPException(401, "wrong name or password")
        session.regenerate(user_id=user_id)
        session["name"] = body.name
        return {"user_id": user_id, "name": body.name}

    @app.post("/api/logout")
    async def logout(session: SessionDep) -> dict[str, bool]:
        """Logout: the session is deleted in Redis and the cookie cleared."""
        session.invalidate()
        return {"logged_out": True}

    @app.post("/api/logout-everywhere")
    async def logout_everywhere(
        session: SessionDep,
    ) -> dict[str, int]:
        """Log out everywhere: every session of the user ends, on every device."""
        if session.user_id is None:
            raise HTTPException(401, "log in first")
        ended = await sessions.revoke_user_sessions(session.user_id)
        session.invalidate()
        return {"sessions_ended": ended}

    @app.get("/api/me")
    async def me(session: SessionDep) -> dict[str, Any]:
        """The session's user, and every session that user holds (devices, last seen)."""
        if session.user_id is None:
            return {"user_id": None}
        listed = await sessions.list_user_sessions(session.user_id)
        return {
            "user_id": session.user_id,
            "name": session.get("name"),
            "sessions": [
                {
                    "handle": info.handle,
                    "user_agent": info.user_agent,
                    "ip": info.ip,
                    "last_seen_at": info.last_seen_at,
                    "this_one": info.handle == _handle(session),
                }
                for info in listed
            ],
        }

    @app.get("/api/stats")
    async def stats() -> dict[str, Any]:
        """How many SQL statements ran, and the cache's counters."""
        counts = cache.stats
        return {
            "database_queries": db.queries,
            "cache": {"hits": counts.hits, "misses": counts.misses, "loads": counts.loads},
        }

    return app


def _handle(session: RequestSession) -> str | None:
    sid = session.id
    return None if sid is None else sid.partition(".")[0]


def installed_metrics() -> PrometheusMetrics | None:
    """Prometheus metrics of the whole process, enabled; ``None`` without prometheus-client."""
    try:
        from redkit.metrics import PrometheusMetrics
    except ModuleNotFoundError:
        return None  # an optional extra: the demo runs without /metrics
    return PrometheusMetrics().enable()
