"""Django rate limits on a standalone Redis and a 3-master cluster: the ``ratelimit`` decorator
with each key kind and the middleware, sync and async views, through Django's test client and
over real HTTP (uvicorn serving Django's ASGI app, werkzeug its WSGI app); Redis down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from support.django_setup import configure, migrate

configure()

from django.test import Client, override_settings  # noqa: E402

from redkit.core.errors import ConfigurationError, InvalidArgumentError  # noqa: E402
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis  # noqa: E402
from redkit.web.django import RatelimitMiddleware, ratelimit  # noqa: E402
from support.backends import REST_TOKEN  # noqa: E402
from support.django_web import HOW, app_base, ensure_users, redkit_settings  # noqa: E402
from support.probes import closed_port  # noqa: E402

Server = EmbeddedRedis | EmbeddedCluster
BASE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
WITH_DEFAULT = [*BASE_MIDDLEWARE, "redkit.web.django.RatelimitMiddleware"]


@contextmanager
def django_settings(
    location: str, middleware: list[str] | None = None, **limits: Any
) -> Iterator[None]:
    """Limits (and sessions) on ``location``, behind a trusted proxy at 127.0.0.1."""
    with redkit_settings(
        location,
        REDKIT_RATELIMIT={"LOCATION": location, "TRUSTED_PROXIES": ["127.0.0.1/32"], **limits},
        MIDDLEWARE=middleware or BASE_MIDDLEWARE,
    ):
        yield


@pytest.fixture
def redis_url(server: Server) -> str:
    ensure_users(server.url, "alice", "bob")
    return server.url


class Agent:
    """Requests from one client address (sent as X-Forwarded-For through the trusted proxy)."""

    def __init__(self, base: str | None, ip: str) -> None:
        self.ip = ip
        self._http = httpx.Client(base_url=base, timeout=30) if base else None
        self._client = None if base else Client()

    def call(
        self,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        sent = {"X-Forwarded-For": self.ip, **(headers or {})}
        if self._http is not None:
            reply = self._http.request(method, path, headers=sent, data=form)
            return reply.status_code, dict(reply.headers), reply.json()
        assert self._client is not None
        if method == "POST":
            response = self._client.post(path, form or {}, headers=sent)
        else:
            response = self._client.generic(method, path, headers=sent)
        headers_out = {k.lower(): v for k, v in response.items()}
        return response.status_code, headers_out, json.loads(response.content)

    def statuses(self, path: str, times: int, **options: Any) -> list[int]:
        return [self.call(path, **options)[0] for _ in range(times)]

    def login(self, name: str) -> None:
        body = json.dumps({"username": name, "password": "pw-" + name})
        if self._http is not None:
            assert self._http.post("/s/login", content=body).status_code == 200
        else:
            assert self._client is not None
            reply = self._client.post("/s/login", body, content_type="application/json")
            assert reply.status_code == 200

    def cookie(self, session_id: str) -> None:
        if self._http is not None:
            self._http.cookies.set("sessionid", session_id)
        else:
            assert self._client is not None
            self._client.cookies["sessionid"] = session_id

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


@contextmanager
def agents(how: str) -> Iterator[Any]:
    """``agent(ip)`` makes a client; ``how`` is "client", "asgi" or "wsgi"."""
    opened: list[Agent] = []
    with app_base(how) as base:

        def agent(ip: str = "203.0.113.1") -> Agent:
            opened.append(Agent(base, ip))
            return opened[-1]

        try:
            yield agent
        finally:
            for each in opened:
                each.close()


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("view", ["ip", "async_ip"])
def test_a_refusal_is_a_429_with_the_json_body_and_the_headers(
    redis_url: str, how: str, view: str
) -> None:
    with django_settings(redis_url), agents(how) as agent:
        client = agent()
        status, headers, body = client.call(f"/r/{view}")
        assert status == 200
        assert headers["ratelimit-policy"] == '"default";q=3;w=3600'
        assert headers["ratelimit"].startswith('"default";r=2;t=')
        assert headers["x-ratelimit-limit"] == "3"
        assert headers["x-ratelimit-remaining"] == "2"
        assert client.statuses(f"/r/{view}", 2) == [200, 200]
        status, headers, body = client.call(f"/r/{view}")
        assert status == 429
        assert body == {"error": "Too many requests", "retryAfter": int(headers["retry-after"])}
        assert 0 < int(headers["retry-after"]) <= 3600
        assert headers["content-type"] == "application/json"
        assert headers["ratelimit"].startswith('"default";r=0;')
        # Another client, and another view, count on their own.
        assert agent("203.0.113.2").call(f"/r/{view}")[0] == 200
        other = "ip2" if view == "ip" else "ip"
        assert client.call(f"/r/{other}")[0] == 200


@pytest.mark.parametrize("how", HOW)
def test_each_key_kind(redis_url: str, how: str) -> None:
    with django_settings(redis_url), agents(how) as agent:
        one, two = agent("198.51.100.1"), agent("198.51.100.2")

        # key="user": signed-in users count per user; anonymous requests are not limited.
        assert one.statuses("/r/user", 5) == [200] * 5
        one.login("alice")
        assert one.statuses("/r/user", 4) == [200, 200, 200, 429]
        bob = agent("198.51.100.1")
        bob.login("bob")
        assert bob.call("/r/user")[0] == 200

        # key="user_or_ip": a user on two addresses is one count; anonymous ones count by IP.
        alice_elsewhere = agent("198.51.100.9")
        alice_elsewhere.login("alice")
        assert one.statuses("/r/user_or_ip", 2) == [200, 200]
        assert alice_elsewhere.statuses("/r/user_or_ip", 2) == [200, 429]
        assert two.statuses("/r/user_or_ip", 4) == [200, 200, 200, 429]
        assert agent("198.51.100.3").call("/r/user_or_ip")[0] == 200

        # key="header:x-api-key": per key; without one, per address.
        key_a = {"headers": {"X-API-Key": "key-a"}}
        assert two.statuses("/r/header", 4, **key_a) == [200, 200, 200, 429]
        assert two.call("/r/header", headers={"X-API-Key": "key-b"})[0] == 200
        assert agent("198.51.100.4").call("/r/header", **key_a)[0] == 429  # the key, any IP
        assert two.call("/r/header")[0] == 200

        # key="get:q", key="post:username", a callable.
        assert two.statuses("/r/get?q=cats", 4) == [200, 200, 200, 429]
        assert two.call("/r/get?q=dogs")[0] == 200
        form = {"method": "POST", "form": {"username": "mallory"}}
        assert two.statuses("/r/post", 4, **form) == [200, 200, 200, 429]
        assert agent("198.51.100.5").call("/r/post", **form)[0] == 429  # per user name
        assert two.call("/r/post", method="POST", form={"username": "eve"})[0] == 200
        assert two.statuses("/r/callable?who=x", 4) == [200, 200, 200, 429]
        assert two.call("/r/callable?who=y")[0] == 200
        assert two.statuses("/r/callable", 5) == [200] * 5  # None: not limited


@pytest.mark.parametrize("how", HOW)
def test_method_block_multi_tiers_and_scope(redis_url: str, how: str) -> None:
    with django_settings(redis_url), agents(how) as agent:
        client = agent()
        assert client.statuses("/r/post_only", 5) == [200] * 5  # GET is not limited
        assert client.statuses("/r/post_only", 4, method="POST") == [200, 200, 200, 429]

        for view in ("noblock", "async_noblock"):  # block=False: the view runs, and knows
            assert [client.call(f"/r/{view}")[2]["limited"] for _ in range(4)] == [
                False, False, False, True,
            ]  # fmt: skip

        # "3/h;2/d": both limits in one decision; the daily one refuses the third.
        assert client.statuses("/r/multi", 2) == [200, 200]
        status, headers, _ = client.call("/r/multi")
        assert status == 429
        assert headers["ratelimit-policy"] == ('"default-0";q=3;w=3600, "default-1";q=2;w=86400')
        assert headers["ratelimit"].startswith('"default-1";r=0;')

        # Tiers chosen by a function of the request.
        assert client.statuses("/r/tiers", 3) == [200, 200, 429]
        pro = {"headers": {"X-Plan": "pro"}}
        assert agent("203.0.113.7").statuses("/r/tiers", 5, **pro) == [200] * 4 + [429]

        # Views share a counter only when given the same scope.
        assert client.statuses("/r/shared_a", 2) == [200, 200]
        assert client.statuses("/r/shared_b", 2) == [200, 429]


@pytest.mark.parametrize("how", HOW)
def test_the_middleware_applies_the_default_per_view(redis_url: str, how: str) -> None:
    with django_settings(redis_url, WITH_DEFAULT, DEFAULT="2/h"), agents(how) as agent:
        client = agent()
        for view in ("plain", "aplain"):
            first = client.call(f"/r/{view}")
            assert first[0] == 200
            assert first[1]["ratelimit-policy"] == '"default";q=2;w=3600'
            assert client.statuses(f"/r/{view}", 2) == [200, 429]
        assert agent("203.0.113.9").call("/r/plain")[0] == 200


@pytest.mark.parametrize("how", HOW)
def test_client_addresses_only_through_trusted_proxies(redis_url: str, how: str) -> None:
    with django_settings(redis_url, TRUSTED_PROXIES=[]), agents(how) as agent:
        # Without a trusted proxy, X-Forwarded-For is the client's own word: ignored.
        spoofers = [agent(f"192.0.2.{n}") for n in range(4)]
        assert [s.call("/r/ip")[0] for s in spoofers] == [200, 200, 200, 429]


@pytest.mark.parametrize("policy", ["allow", "deny"])
@pytest.mark.parametrize("how", HOW)
def test_redis_down_follows_the_timeout_policy(how: str, policy: str) -> None:
    migrate()
    down = f"redis://127.0.0.1:{closed_port()}"
    options = {"TIMEOUT": 0.5, "ON_TIMEOUT": policy}
    with django_settings(down, **options), agents(how) as agent:
        client = agent()
        for view in ("ip", "async_ip"):
            status, headers, _ = client.call(f"/r/{view}")
            assert status == (200 if policy == "allow" else 429)
            assert "x-ratelimit-remaining" not in headers  # nothing is known of what is left
    with django_settings(down, WITH_DEFAULT, DEFAULT="2/h", **options), agents(how) as agent:
        assert agent().call("/r/plain")[0] == (200 if policy == "allow" else 429)


@pytest.mark.parametrize("how", HOW)
def test_a_user_key_with_the_sessions_redis_down_counts_by_address(
    redis_url: str, how: str
) -> None:
    down = {"LOCATION": f"redis://127.0.0.1:{closed_port()}", "TIMEOUT": 0.3}
    with (
        redkit_settings(
            redis_url,
            sessions=down,
            REDKIT_RATELIMIT={"LOCATION": redis_url, "TRUSTED_PROXIES": ["127.0.0.1/32"]},
            MIDDLEWARE=BASE_MIDDLEWARE,
        ),
        agents(how) as agent,
    ):
        client = agent()
        client.cookie("A" * 22 + "." + "B" * 43)  # a session to load, on a Redis that is down
        assert client.statuses("/r/user_or_ip", 4) == [200, 200, 200, 429]


def test_what_cannot_work_is_refused_at_decoration() -> None:
    def view(request: Any) -> Any:
        return None

    with pytest.raises(InvalidArgumentError, match="rate"):
        ratelimit("10 per fortnight")(view)
    with pytest.raises(InvalidArgumentError, match="key="):
        ratelimit("10/m", key="cookie:x")(view)
    with pytest.raises(InvalidArgumentError, match="method="):
        ratelimit("10/m", method=[""])(view)
    with pytest.raises(InvalidArgumentError, match="tier="):
        ratelimit({"free": "1/m"})(view)
    with pytest.raises(InvalidArgumentError, match="tier="):
        ratelimit("1/m", tier="free")(view)
    with pytest.raises(InvalidArgumentError, match="cost"):
        ratelimit("1/m", cost=0)(view)
    with (
        override_settings(INSTALLED_APPS=["django.contrib.contenttypes"]),
        pytest.raises(ConfigurationError, match=r"django\.contrib\.auth"),
    ):
        ratelimit("1/m", key="user")(view)
    with (
        override_settings(REDKIT_RATELIMIT={"DEFAULT": "1/fortnight"}),
        pytest.raises(InvalidArgumentError, match="rate"),
    ):
        RatelimitMiddleware(lambda request: None)
    with (
        override_settings(REDKIT_RATELIMIT={"DEFUALT": "1/m"}),
        pytest.raises(ConfigurationError, match="unknown keys"),
    ):
        RatelimitMiddleware(lambda request: None)


def test_a_default_without_a_redis_is_refused_at_startup() -> None:
    local = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with (
        override_settings(CACHES=local, REDKIT_RATELIMIT={"DEFAULT": "1/m"}),
        pytest.raises(ConfigurationError, match="LOCATION"),
    ):
        RatelimitMiddleware(lambda request: None)


def test_over_upstash_rest(redis_server: EmbeddedRedis, rest_gateway: str) -> None:
    """The decorator on the REST API (redkit's gateway in front of the standalone server)."""
    with redis_server.client() as admin:
        admin.flushall()
    rest = {"LOCATION": rest_gateway, "OPTIONS": {"token": REST_TOKEN}}
    with (
        redkit_settings(
            redis_server.url, REDKIT_RATELIMIT={**rest, "TRUSTED_PROXIES": ["127.0.0.1"]}
        ),
        agents("client") as agent,
    ):
        client = agent()
        for view in ("ip", "async_ip", "multi"):
            statuses = client.statuses(f"/r/{view}", 4)
            assert statuses == ([200, 200, 429, 429] if view == "multi" else [200] * 3 + [429])
        assert client.call("/r/header", headers={"X-API-Key": "k"})[0] == 200
