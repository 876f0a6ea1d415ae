"""The demo service (``redkit demo``, the README's first command), served for real.

The app runs under uvicorn on loopback, on a standalone server and on a cluster, and is driven
with httpx; ``/api/stats`` counts the SQL statements the database ran, so a cache hit shows as
a request that ran none. The command itself is run as a process, stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from redkit.demo.app import create_app
from redkit.demo.db import Database
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedRedis
from redkit.web import TrustedProxies
from support.backends import REST_TOKEN
from support.demo import running_demo
from support.probes import process_alive
from support.web import serve_asgi
from support.windows import early_in_window

ALICE = {"name": "alice", "password": "wonderland"}
# The demo serves plain HTTP, so its session cookie is not Secure: the middleware warns.
pytestmark = pytest.mark.filterwarnings("ignore::redkit.errors.InsecureCookieWarning")


@pytest.fixture
def demo(conn: Connection) -> Iterator[tuple[str, Database]]:
    db = Database()
    with serve_asgi(create_app(conn, db), conn) as url:
        yield url, db


def queries(client: httpx.Client) -> int:
    count: int = client.get("/api/stats").json()["database_queries"]
    return count


def test_the_seed_route_limits_by_ip_and_serves_from_cache(demo: tuple[str, Database]) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as client:
        before = queries(client)
        early_in_window(10)
        replies = [client.get("/api/products") for _ in range(11)]
        after = queries(client)
    assert [r.status_code for r in replies] == [200] * 10 + [429]
    assert [r.json()["source"] for r in replies[:3]] == ["database", "cache", "cache"]
    assert after - before == 1  # ten answers, one query
    allowed, refused = replies[9], replies[10]
    assert allowed.headers["ratelimit-policy"] == '"default";q=10;w=10'
    assert allowed.headers["x-ratelimit-limit"] == "10"
    assert allowed.headers["x-ratelimit-remaining"] == "0"
    retry = int(refused.headers["retry-after"])
    assert 1 <= retry <= 10
    assert refused.json() == {"error": "Too many requests", "retryAfter": retry}
    assert refused.headers["ratelimit"] == f'"default";r=0;t={retry}'
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert int(refused.headers["x-ratelimit-reset"]) >= int(time.time())


def test_cache_aside_and_write_through_of_a_user(demo: tuple[str, Database]) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as client:
        start = queries(client)
        first = client.get("/api/users/2").json()
        assert client.get("/api/users/2").json() == first
        assert queries(client) - start == 1  # the second read was a hit
        assert client.get("/api/users/99").status_code == 404
        assert client.patch("/api/users/1", json={"bio": "x"}).status_code == 401
        assert client.post("/api/login", json=ALICE).status_code == 200
        assert client.patch("/api/users/2", json={"bio": "x"}).status_code == 403
        client.get("/api/users/1")  # cached before the write
        before_write = queries(client)
        updated = client.patch("/api/users/1", json={"bio": "Curiouser"}).json()
        assert updated["bio"] == "Curiouser"
        after_write = queries(client)
        assert after_write > before_write  # the database was written
        assert client.get("/api/users/1").json() == updated  # the cache holds the new value
        assert queries(client) == after_write  # and that read ran no query


def test_search_keys_are_hashed_queries(demo: tuple[str, Database]) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as client:
        start = queries(client)
        one = client.get("/api/search", params={"q": "kettle", "category": "kitchen"}).json()
        two = client.get("/api/search?category=kitchen&q=KETTLE").json()
        other = client.get("/api/search", params={"q": "lamp"}).json()
        assert queries(client) - start == 2
    assert one["key"] == two["key"] != other["key"]
    assert re.fullmatch(r"search:[0-9a-f]{32}", one["key"])
    assert [p["name"] for p in one["results"]] == ["Kettle"]
    assert [p["name"] for p in other["results"]] == ["Desk lamp"]


def test_the_catalog_response_is_cached_with_an_etag(demo: tuple[str, Database]) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as client:
        first = client.get("/api/catalog")
        second = client.get("/api/catalog")
        unchanged = client.get("/api/catalog", headers={"If-None-Match": first.headers["etag"]})
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert unchanged.status_code == 304
    assert unchanged.content == b""


def test_head_is_served_from_the_get_entry_and_any_id_is_a_user_or_404(
    demo: tuple[str, Database],
) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as client:
        head = client.head("/api/catalog")
        get = client.get("/api/catalog")
        statuses = [
            client.get(f"/api/users/{user_id}").status_code
            for user_id in (2**63 - 1, 2**63, -(2**63) - 1, 10**30)
        ]
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert get.headers["x-cache"] == "HIT"  # the HEAD stored the GET entry
    assert statuses == [404] * 4


def test_api_keys_pick_their_tier(demo: tuple[str, Database]) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as client:
        early_in_window(60)
        free = [client.get("/api/reports", headers={"X-API-Key": "demo-free-key"})
                for _ in range(11)]  # fmt: skip
        pro = client.get("/api/reports", headers={"X-API-Key": "demo-pro-key"})
        enterprise = client.get("/api/reports", headers={"X-API-Key": "demo-enterprise-key"})
    assert [r.status_code for r in free] == [200] * 10 + [429]
    assert free[0].headers["ratelimit-policy"] == '"free";q=10;w=60'
    assert pro.status_code == 200
    assert pro.json()["tier"] == "pro"
    assert pro.headers["ratelimit-policy"] == '"pro";q=100;w=60'
    assert enterprise.headers["x-ratelimit-limit"] == "1000"


def test_sessions_login_rotation_logout_and_everywhere(demo: tuple[str, Database]) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as laptop, httpx.Client(base_url=url) as phone:
        assert laptop.get("/api/me").json() == {"user_id": None}
        assert laptop.post("/api/login", json={**ALICE, "password": "no"}).status_code == 401
        first = laptop.post("/api/login", json=ALICE)
        first_id = laptop.cookies["session"]
        again = laptop.post("/api/login", json=ALICE)  # a second login rotates the id again
        assert "session=" in first.headers["set-cookie"]
        assert "HttpOnly" in again.headers["set-cookie"]
        assert laptop.cookies["session"] != first_id
        stale = httpx.get(f"{url}/api/me", cookies={"session": first_id}).json()
        assert stale == {"user_id": None}  # the pre-rotation id is dead
        phone.post("/api/login", json=ALICE)
        me = laptop.get("/api/me").json()
        assert me["user_id"] == 1
        assert [s["this_one"] for s in me["sessions"]] == [True, False]
        ended = phone.post("/api/logout-everywhere").json()
        assert ended == {"sessions_ended": 2}
        assert laptop.get("/api/me").json() == {"user_id": None}
        assert phone.get("/api/me").json() == {"user_id": None}
        laptop.post("/api/login", json=ALICE)
        logout = laptop.post("/api/logout")
        assert "Max-Age=0" in logout.headers["set-cookie"]
        assert laptop.get("/api/me").json() == {"user_id": None}


def test_only_a_trusted_proxy_moves_the_client_to_another_bucket(conn: Connection) -> None:
    def exhaust(app: Any) -> tuple[int, int]:
        with serve_asgi(app, conn) as url, httpx.Client(base_url=url) as client:
            early_in_window(10)
            for _ in range(10):
                client.get("/api/products", headers={"X-Forwarded-For": "203.0.113.7"})
            spoofed = client.get("/api/products", headers={"X-Forwarded-For": "198.51.100.1"})
            plain = client.get("/api/products")
            return spoofed.status_code, plain.status_code

    untrusted = create_app(conn, Database())
    trusting = create_app(conn, Database(), proxies=TrustedProxies(["127.0.0.1/32"]))
    # Without trust the header is ignored: every request counts against 127.0.0.1.
    assert exhaust(untrusted) == (429, 429)
    _flush(conn)
    # Behind a trusted proxy each forwarded client has its own bucket, and the proxy's own.
    assert exhaust(trusting) == (200, 200)


def _flush(conn: Connection) -> None:
    from redkit.core.ops import Masters, OnNode, command

    driver = conn.sync_driver()
    for node in driver.execute(Masters()):
        driver.execute(OnNode(node, command("FLUSHALL")))


def test_the_command_serves_until_ctrl_c_and_stops_its_redis() -> None:
    with running_demo({k: v for k, v in os.environ.items() if k != "REDIS_URL"}) as demo:
        pid = int(re.search(r"\(pid (\d+)\)", demo.first_line).group(1))  # type: ignore[union-attr]
        page = httpx.get(demo.url + "/", timeout=30)
        assert page.status_code == 200
        assert "curl" in page.text
        assert httpx.get(demo.url + "/api/products", timeout=30).json()["source"] == "database"
        assert process_alive(pid)
    assert demo.returncode == 0, demo.err
    assert "Stopped the embedded redis-server" in demo.out
    assert not process_alive(pid)


def test_the_command_uses_redis_url_when_set(redis_server: EmbeddedRedis) -> None:
    with redis_server.client() as admin:
        admin.flushall()
    with running_demo({**os.environ, "REDIS_URL": redis_server.url}) as demo:
        assert "Using the Redis at REDIS_URL" in demo.first_line
        httpx.get(demo.url + "/api/products", timeout=30)
    assert demo.returncode == 0, demo.err
    with redis_server.client() as admin:
        assert admin.dbsize() > 0  # the demo wrote there, and left the server running


def test_made_up_api_keys_and_password_guessing_are_limited(demo: tuple[str, Database]) -> None:
    url, _db = demo
    with httpx.Client(base_url=url) as client:
        early_in_window(60)
        made_up = [client.get("/api/reports", headers={"X-API-Key": f"guess-{n}"})
                   for n in range(11)]  # fmt: skip
        guesses = [client.post("/api/login", json={**ALICE, "password": f"guess-{n}"})
                   for n in range(6)]  # fmt: skip
    # Unknown keys count as no key: the client's address, on the free tier.
    assert [r.status_code for r in made_up] == [200] * 10 + [429]
    assert [r.status_code for r in guesses] == [401] * 5 + [429]


def test_the_command_runs_on_upstash_variables(
    redis_server: EmbeddedRedis, rest_gateway: str
) -> None:
    """With Upstash's variables the demo talks REST (here to redkit's own gateway)."""
    with redis_server.client() as admin:
        admin.flushall()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env |= {"UPSTASH_REDIS_REST_URL": rest_gateway, "UPSTASH_REDIS_REST_TOKEN": REST_TOKEN}
    with running_demo(env) as demo:
        assert "Upstash's REST API" in demo.first_line
        with httpx.Client(base_url=demo.url, timeout=30) as client:
            sources = [client.get("/api/products").json()["source"] for _ in range(2)]
            assert client.post("/api/login", json=ALICE).status_code == 200
            assert client.get("/api/me").json()["user_id"] == 1
    assert demo.returncode == 0, demo.err
    assert sources == ["database", "cache"]
    with redis_server.client() as admin:
        # The seed's limiter wrote its counter in @upstash/ratelimit's layout, no hash tag
        # (the identifier is the route's, then the client's).
        assert list(admin.scan_iter("@upstash/ratelimit:/api/products:ip:127.0.0.1:*"))
