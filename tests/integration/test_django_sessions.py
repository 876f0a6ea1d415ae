"""The Django session engine on a standalone Redis and a 3-master cluster: Django's test client,
and real HTTP (uvicorn serving Django's ASGI app, werkzeug its WSGI app), sync and async views,
through ``django.contrib.auth``'s login and logout."""

from __future__ import annotations

import concurrent.futures
import json
import pickle
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from support.django_setup import configure

configure()

from django.contrib.auth.models import AnonymousUser, User  # noqa: E402  (needs the settings above)
from django.contrib.sessions.backends.base import CreateError, UpdateError  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis  # noqa: E402
from redkit.errors import BackendError, ConfigurationError, InvalidArgumentError  # noqa: E402
from redkit.web.django.connection import close_connections  # noqa: E402
from redkit.web.django.sessions import SessionStore, revoke_user_sessions  # noqa: E402
from support.backends import REST_TOKEN  # noqa: E402
from support.django_web import HOW, app_base, ensure_users, redkit_settings  # noqa: E402
from support.probes import closed_port  # noqa: E402

COOKIE = "sessionid"
Server = EmbeddedRedis | EmbeddedCluster


class PickleSerializer:
    """A serializer of the project's own (Django 5 has no pickle one): any picklable value."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


@contextmanager
def django_settings(server: Server, **extra: Any) -> Iterator[None]:
    """Sessions on ``server`` (``REDKIT_SESSIONS=`` adds to their settings), the tests' views."""
    with redkit_settings(server.url, sessions=extra.pop("REDKIT_SESSIONS", None), **extra):
        yield


@pytest.fixture
def users(server: Server) -> Server:
    ensure_users(server.url, "alice", "bob")
    return server


class Browser:
    """One user agent: Django's test client or httpx against a served app, with its cookie."""

    def __init__(self, base: str | None) -> None:
        self._http = httpx.Client(base_url=base, timeout=30) if base else None
        self._client = None if base else Client()

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body or {})
        if self._http is not None:
            reply = self._http.post(path, content=data)
            return reply.status_code, reply.json() if reply.status_code < 300 else reply.text
        assert self._client is not None
        response = self._client.post(path, data, content_type="application/json")
        payload = json.loads(response.content) if response.status_code < 300 else response.content
        return response.status_code, payload

    @property
    def sid(self) -> str | None:
        if self._http is not None:
            return self._http.cookies.get(COOKIE)
        assert self._client is not None
        morsel = self._client.cookies.get(COOKIE)
        return morsel.value if morsel is not None and morsel.value else None

    @sid.setter
    def sid(self, value: str) -> None:
        if self._http is not None:
            self._http.cookies.set(COOKIE, value)
        else:
            assert self._client is not None
            self._client.cookies[COOKIE] = value

    def close(self) -> None:
        if self._http is not None:
            self._http.close()


@contextmanager
def served(how: str) -> Iterator[Callable[[], Browser]]:
    """``how``: "client" (Django's test client), "asgi" (uvicorn) or "wsgi" (werkzeug)."""
    opened: list[Browser] = []
    with app_base(how) as base:

        def browser() -> Browser:
            opened.append(Browser(base))
            return opened[-1]

        try:
            yield browser
        finally:
            for each in opened:
                each.close()


def whoami(browser: Browser, view: str) -> Any:
    return browser.post(f"/{view}/whoami")[1]["user"]


def data(browser: Browser, view: str) -> Any:
    return browser.post(f"/{view}/data")[1]["data"]


def redis_dump(server: Server) -> bytes:
    """Every key and value in ``server`` (a standalone one), as one blob to search."""
    with server.client() as admin:  # type: ignore[union-attr]
        parts = []
        for key in admin.scan_iter("dj-test*"):
            parts.append(key)
            if admin.type(key) == b"hash":
                for field, value in admin.hgetall(key).items():
                    parts += [field, value]
        return b"|".join(parts)


VIEWS = ["s", "a"]  # sync views, async views


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("how", HOW)
def test_login_rotates_the_id_keeps_the_data_and_logout_ends_it(
    users: Server, how: str, view: str
) -> None:
    with django_settings(users), served(how) as browser:
        alice = browser()
        assert alice.post(f"/{view}/set", {"key": "cart", "value": [1, 2]})[0] == 200
        anonymous_sid = alice.sid
        assert anonymous_sid is not None
        assert "." in anonymous_sid

        assert alice.post(f"/{view}/login", {"username": "alice", "password": "pw-alice"}) == (
            200,
            {"ok": True},
        )
        signed_in_sid = alice.sid
        assert signed_in_sid not in (None, anonymous_sid)  # cycle_key on login
        assert whoami(alice, view) == "alice"
        assert data(alice, view)["cart"] == [1, 2]  # the data survived the rotation

        # The id from before the login is worthless now (session fixation).
        fixer = browser()
        fixer.sid = anonymous_sid
        assert whoami(fixer, view) is None
        assert data(fixer, view) == {}

        if isinstance(users, EmbeddedRedis):  # Redis holds digests, never an id
            dump = redis_dump(users)
            assert dump
            assert signed_in_sid.split(".")[1].encode() not in dump

        assert alice.post(f"/{view}/logout")[0] == 200
        assert whoami(alice, view) is None
        stale = browser()
        stale.sid = signed_in_sid
        assert whoami(stale, view) is None


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("how", HOW)
def test_log_out_everywhere_from_request_user(users: Server, how: str, view: str) -> None:
    with django_settings(users), served(how) as browser:
        devices = [browser() for _ in range(3)]
        for device in devices:
            device.post(f"/{view}/login", {"username": "alice", "password": "pw-alice"})
        bob = browser()
        bob.post(f"/{view}/login", {"username": "bob", "password": "pw-bob"})
        assert [whoami(d, view) for d in devices] == ["alice"] * 3

        assert devices[0].post(f"/{view}/revoke", {"keep": True}) == (200, {"ended": 2})
        assert [whoami(d, view) for d in devices] == ["alice", None, None]
        assert whoami(bob, view) == "bob"  # another user's sessions are theirs

        assert revoke_user_sessions(User.objects.get(username="alice")) == 1
        assert whoami(devices[0], view) is None
        with pytest.raises(InvalidArgumentError, match="signed-in user"):
            revoke_user_sessions(AnonymousUser())


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("how", ["asgi", "wsgi"])
def test_concurrent_requests_changing_different_keys_both_keep_theirs(
    users: Server, how: str, view: str
) -> None:
    with django_settings(users), served(how) as browser:
        first = browser()
        first.post(f"/{view}/set", {"key": "start", "value": 0})
        second = browser()
        second.sid = first.sid or ""
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            replies = list(
                pool.map(
                    lambda args: args[0].post(f"/{view}/set", args[1]),
                    [
                        (first, {"key": "a", "value": 1, "delay": 0.4}),
                        (second, {"key": "b", "value": 2, "delay": 0.4}),
                    ],
                )
            )
        assert [status for status, _ in replies] == [200, 200]
        assert data(first, view) == {"start": 0, "a": 1, "b": 2}


def race_on_one_key(browser: Callable[[], Browser]) -> tuple[list[tuple[int, Any]], Browser]:
    """Two requests of one session change key "k": the slower one read it first.

    Returns both replies, ordered by status, and the first browser.
    """
    first = browser()
    first.post("/s/set", {"key": "start", "value": 0})
    second = browser()
    second.sid = first.sid or ""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one = pool.submit(first.post, "/s/set", {"key": "k", "value": "one", "delay": 0.5})
        time.sleep(0.1)
        two = pool.submit(second.post, "/s/set", {"key": "k", "value": "two", "delay": 0})
        replies = sorted([one.result(), two.result()], key=lambda reply: reply[0])
    return replies, first


@pytest.mark.parametrize("how", ["asgi", "wsgi"])
def test_concurrent_requests_changing_the_same_key_lose_nothing_silently(
    users: Server, how: str
) -> None:
    with django_settings(users), served(how) as browser:
        replies, first = race_on_one_key(browser)
        # The later save of a key read before the other's change is refused (Django answers
        # an interrupted session, 400), never stored over it.
        assert [status for status, _ in replies] == [200, 400]
        assert data(first, "s")["k"] == "two"


def test_idle_and_absolute_timeouts(users: Server) -> None:
    options = {"REDKIT_SESSIONS": {"IDLE_TIMEOUT": 1, "ABSOLUTE_TIMEOUT": 2}}
    with django_settings(users, **options), served("client") as browser:
        idle = browser()
        idle.post("/s/set", {"key": "x", "value": 1})
        time.sleep(1.3)
        assert data(idle, "s") == {}  # unused for longer than the idle timeout

        busy = browser()
        busy.post("/s/set", {"key": "x", "value": 1})
        started = time.monotonic()
        while time.monotonic() - started < 1.6:
            assert data(busy, "s") == {"x": 1}  # each use extends the idle time...
            time.sleep(0.4)
        time.sleep(max(0.0, 2.3 - (time.monotonic() - started)))
        assert data(busy, "s") == {}  # ...never past the absolute one


def test_the_session_base_contract(users: Server) -> None:
    with django_settings(users):
        store = SessionStore()
        assert store.session_key is None
        assert not store.exists(None)
        store["a"] = 1
        store.save()
        key = store.session_key
        assert key is not None
        assert store.exists(key)
        with pytest.raises(CreateError):
            store.save(must_create=True)  # the session exists already
        assert SessionStore(key).load() == {"a": 1}

        # A cookie that is no id of ours is never looked up; a gone one loads as empty.
        assert SessionStore("x" * 40).session_key is None
        gone = SessionStore(key.split(".")[0] + "." + "A" * 43)
        assert gone.load() == {}
        assert gone.session_key is None

        store.cycle_key()
        assert store.session_key != key
        assert not store.exists(key)
        assert store.exists(store.session_key)
        assert dict(store.items()) == {"a": 1}

        store.set_expiry(300)
        assert store.get_expiry_age() == 300
        store.set_expiry(0)
        assert store.get_expire_at_browser_close()
        store.set_expiry(timezone.now() + timedelta(seconds=60))
        assert 0 < store.get_expiry_age() <= 60
        store.save()
        reloaded = SessionStore(store.session_key)
        assert reloaded["a"] == 1

        # set_expiry(<a date>) is kept by the server too, not only by the cookie.
        reloaded.set_expiry(timezone.now() - timedelta(seconds=1))
        reloaded.save()
        assert SessionStore(reloaded.session_key).load() == {}

        other = SessionStore(store.session_key)
        other.delete()
        store["b"] = 2
        with pytest.raises(UpdateError):  # ended by another request meanwhile
            store.save()

        flushed = SessionStore()
        flushed["x"] = 1
        flushed.save()
        old = flushed.session_key
        flushed.flush()
        assert flushed.session_key is None
        assert not flushed.exists(old)
        SessionStore.clear_expired()  # Redis expires sessions itself: nothing to do


def test_session_serializer_is_honoured(users: Server) -> None:
    with django_settings(users):
        store = SessionStore()
        store["when"] = timezone.now()
        with pytest.raises(TypeError, match="JSON"):  # JSON by default, as Django's
            store.save()
    serializer = f"{__name__}.PickleSerializer"
    with django_settings(users, SESSION_SERIALIZER=serializer):
        when = timezone.now()
        store = SessionStore()
        store["when"] = when
        store["tags"] = {"x", "y"}
        store.save()
        again = SessionStore(store.session_key)
        assert again["when"] == when
        assert again["tags"] == {"x", "y"}
        again["more"] = 1  # a change of one key is still a change of that key alone
        again.save()
        assert dict(SessionStore(store.session_key).items()) == {
            "when": when,
            "tags": {"x", "y"},
            "more": 1,
        }


def test_over_upstash_rest(redis_server: EmbeddedRedis, rest_gateway: str) -> None:
    """The engine on the REST API (redkit's gateway in front of the standalone server)."""
    ensure_users(redis_server.url, "alice")
    rest = {"LOCATION": rest_gateway, "OPTIONS": {"token": REST_TOKEN}}
    with redkit_settings(rest_gateway, sessions=rest), served("client") as browser:
        alice = browser()
        alice.post("/s/set", {"key": "cart", "value": [1]})
        before = alice.sid
        alice.post("/s/login", {"username": "alice", "password": "pw-alice"})
        assert alice.sid not in (None, before)
        assert whoami(alice, "s") == "alice"
        assert data(alice, "s")["cart"] == [1]
        other = browser()
        other.post("/s/login", {"username": "alice", "password": "pw-alice"})
        assert revoke_user_sessions(User.objects.get(username="alice"), keep=alice.sid) == 1
        assert whoami(other, "s") is None
        assert whoami(alice, "s") == "alice"
        alice.post("/s/logout")
        assert whoami(alice, "s") is None


def test_redis_down_fails_closed(users: Server) -> None:
    down = {"LOCATION": f"redis://127.0.0.1:{closed_port()}", "TIMEOUT": 0.5}
    with redkit_settings(users.url, sessions=down):
        store = SessionStore()
        store["x"] = 1
        with pytest.raises(BackendError):  # never a session the request was not given
            store.save()
        with pytest.raises(BackendError):
            SessionStore("A" * 22 + "." + "B" * 43).load()


@pytest.mark.parametrize("use_tz", [True, False])
def test_an_expiry_date_is_kept_by_the_server(users: Server, use_tz: bool) -> None:
    with django_settings(users, USE_TZ=use_tz):
        store = SessionStore()
        store["a"] = 1
        store.set_expiry(timedelta(seconds=60))
        store.save()
        assert SessionStore(store.session_key)["a"] == 1
        store.set_expiry(timedelta(seconds=-1))  # a date already past
        store.save()
        assert SessionStore(store.session_key).load() == {}
        assert not store.exists(store.session_key)  # and it is gone from Redis


REDKIT_MIDDLEWARE = [
    "redkit.web.django.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]


@pytest.mark.parametrize("how", HOW)
def test_redkits_middleware_answers_redis_down_503(users: Server, how: str) -> None:
    down = {"LOCATION": f"redis://127.0.0.1:{closed_port()}", "TIMEOUT": 0.3}
    options = {"REDKIT_SESSIONS": down, "MIDDLEWARE": REDKIT_MIDDLEWARE}
    with django_settings(users, **options), served(how) as browser:
        client = browser()
        status, body = client.post("/s/set", {"key": "a", "value": 1})  # the save fails
        assert status == 503
        assert json.loads(body)["error"] == "session_unavailable"
        client.sid = "A" * 22 + "." + "B" * 43
        for view in VIEWS:  # the load fails, in a sync and an async view
            status, body = client.post(f"/{view}/data")
            assert status == 503
            assert json.loads(body)["error"] == "session_unavailable"


@pytest.mark.parametrize("how", ["asgi", "wsgi"])
def test_redkits_middleware_answers_a_conflict_409(users: Server, how: str) -> None:
    with django_settings(users, MIDDLEWARE=REDKIT_MIDDLEWARE), served(how) as browser:
        replies, first = race_on_one_key(browser)
        assert replies[0] == (200, {"ok": True})
        assert replies[1][0] == 409
        assert json.loads(replies[1][1])["keys"] == ["k"]
        assert data(first, "s")["k"] == "two"


def test_using_names_a_cache_alias_and_bad_settings_say_what_to_do(users: Server) -> None:
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sessions": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": users.url,
        },
    }
    cases: list[tuple[dict[str, Any], str | None]] = [
        ({"USING": "sessions"}, None),
        ({"USING": "nope"}, "does not define"),
        ({"USING": "default"}, "no single Redis URL"),
        ({"USING": "sessions", "LOCATION": users.url}, "not both"),
        ({"IDLE": 5}, "unknown keys"),
    ]
    for config, error in cases:
        with override_settings(
            CACHES=caches,
            SESSION_ENGINE="redkit.web.django.sessions",
            REDKIT_SESSIONS=config,
        ):
            try:
                if error is None:
                    store = SessionStore()
                    store["a"] = 1
                    store.save()
                    assert SessionStore(store.session_key)["a"] == 1
                else:
                    with pytest.raises(ConfigurationError, match=error):
                        SessionStore().save()
            finally:
                close_connections()


def test_using_a_redkit_cache_takes_its_connection_options_as_the_backend_reads_them() -> None:
    from redkit.web.django.connection import _location_of

    caches = {
        "redkit": {
            "BACKEND": "redkit.web.django.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"TOKEN": "t", "CONNECTION": {"socket_timeout": 2.5}, "SERIALIZER": "json"},
        },
        "django": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_timeout": 1.5, "db": 3},
        },
    }
    with override_settings(CACHES=caches):
        assert _location_of("redkit", "REDKIT_SESSIONS") == (
            "redis://127.0.0.1:1/0",
            {"socket_timeout": 2.5, "token": "t"},  # not the cache's own SERIALIZER
        )
        assert _location_of("django", "REDKIT_SESSIONS")[1] == {"socket_timeout": 1.5}
