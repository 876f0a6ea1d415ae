"""The dashboard in tests: served by uvicorn on loopback, filled through redkit's own facades."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from redkit import (
    AsyncRatelimit,
    AsyncSessionStore,
    Cache,
    Ratelimit,
    SessionStore,
    TokenBucket,
)  # fmt: skip
from redkit.dashboard import Dashboard
from redkit.drivers.connect import Connection
from redkit.drivers.rest import RestConnection
from support.backends import BackendCase, Blocking
from support.web import serve_asgi

__all__ = [
    "ADMIN",
    "HOSTILE",
    "LIMIT",
    "READ",
    "Filled",
    "csrf_of",
    "fill",
    "logged_in",
    "running_dashboard",
]

READ = "read-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
#: What fill() limits with: 2 a caller, refilled after an hour. A bucket has no window edge
#: that a test could straddle (a fixed window's next minute would admit again).
LIMIT = TokenBucket(2, "1 h", 2)
#: Characters that would break out of HTML text, attributes or a script if not escaped.
HOSTILE = '<script>alert("x")</script>\'&'


@dataclass
class Filled:
    """What :func:`fill` did, to compare with what the dashboard shows."""

    allowed: dict[str, int] = field(default_factory=dict)
    blocked: dict[str, int] = field(default_factory=dict)
    denied: dict[str, int] = field(default_factory=dict)
    sessions: dict[str | int, list[str]] = field(default_factory=dict)


def fill(conn: Connection | RestConnection, backend: BackendCase | None = None) -> Filled:
    """Decisions with analytics (prefix ``rl``), a deny list, overrides, and sessions.

    With ``backend``, through its facades: the asyncio ones when it is an async case.
    """
    run_async = backend is not None and backend.is_async

    def made(sync: type, asyncio_: type, *args: Any, **options: Any) -> Any:
        if not run_async:
            return sync(conn, *args, **options)
        assert backend is not None
        return Blocking(asyncio_(backend.conn, *args, **options), backend)

    filled = Filled()
    limiter = made(
        Ratelimit, AsyncRatelimit, LIMIT, analytics=True, prefix="rl",
        dynamic_limits=True, enable_protection=True,
    )  # fmt: skip
    try:
        limiter.deny("bad-actor")
        for identifier, calls in (("alice", 3), (HOSTILE, 1), ("bob", 2)):
            for _ in range(calls):
                limiter.limit(identifier)
        limiter.limit("bad-actor")
        limiter.set_identifier_limit("bob", 7)
        limiter.flush()
    finally:
        limiter.close()
    filled.allowed = {"alice": 2, HOSTILE: 1, "bob": 2}
    filled.blocked = {"alice": 1}
    filled.denied = {"bad-actor": 1}
    store = made(SessionStore, AsyncSessionStore)
    for user, count in (("carol", 2), (HOSTILE, 1), (42, 3)):
        filled.sessions[user] = [store.create({"n": i}, user_id=user) for i in range(count)]
    return filled


@contextlib.contextmanager
def running_dashboard(conn: Connection, **options: Any) -> Iterator[str]:
    """Serve ``Dashboard(conn, token=READ, admin_token=ADMIN, **options)``; yield its URL."""
    options.setdefault("token", READ)
    options.setdefault("admin_token", ADMIN)
    options.setdefault("ratelimit_prefixes", ["rl"])
    options.setdefault("cache_namespaces", ["ns"])
    with serve_asgi(Dashboard(conn, **options), conn) as base:
        yield base


def csrf_of(html: str) -> str:
    """The CSRF token of a page's forms."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


@contextlib.contextmanager
def logged_in(base: str, token: str) -> Iterator[httpx.Client]:
    """An HTTP client logged in through the form (it holds the cookie); closed after."""
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        reply = client.post("/login", data={"token": token}, headers={"origin": base})
        assert reply.status_code == 200, reply.text
        yield client


def keys_and_no_ttl(server: Any) -> tuple[int, int]:
    """Every key of ``server`` (each master of a cluster), and how many have no TTL."""
    nodes = server.node_clients() if hasattr(server, "node_clients") else [server.client()]
    total = no_ttl = 0
    try:
        for node in nodes:
            for key in node.scan_iter(count=1000):
                total += 1
                no_ttl += node.pttl(key) == -1
    finally:
        for node in nodes:
            node.close()
    return total, no_ttl


def fill_fleet(conn: Connection) -> None:
    """Fleet statistics: the cache ``fleet`` 5 hits and 3 misses; ``frl`` 1 allowed, 2 refused;
    the sessions 1 created, 1 revoked."""
    cache = Cache(conn, namespace="fleet", stats="10 s")
    for key in ("a", "b", "c"):
        cache.get_or_set(key, lambda: 1)  # a miss and a load each
    for _ in range(5):
        cache.get("a")  # hits
    cache.close()  # sends what it counted
    limiter = Ratelimit(conn, TokenBucket(1, "1 h", 1), prefix="frl", stats="10 s")
    for _ in range(3):
        limiter.limit("u")  # allowed, blocked, then blocked from the ephemeral cache
    limiter.close()
    store = SessionStore(conn, stats="10 s")
    store.revoke_session("nobody", store.create(user_id="nobody").partition(".")[0])
    store.close()
