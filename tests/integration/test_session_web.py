"""The session middleware over real HTTP: Starlette, FastAPI (the dependency) and Flask apps
served on 127.0.0.1, driven by httpx, on a standalone Redis and on a 3-master cluster."""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from redkit.drivers.connect import Connection
from redkit.sessions.flows import new_session_id, valid_session_id
from support.probes import closed_port
from support.session_web import (
    KINDS,
    Browser,
    Site,
    all_keys,
    commands_run,
    running_site,
    script_calls,
    session_cookies,
)

COOKIE = re.compile(r"session=([^;]*); Path=/; HttpOnly; Secure; SameSite=Lax")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


StartSite = Callable[..., Site]


@pytest.fixture
def start(kind: str, conn: Connection) -> Iterator[StartSite]:
    """``start(idle_ttl=..., absolute_ttl=..., **cookie_options)`` runs the app; stopped after."""
    with ExitStack() as stack:

        def run(*, idle_ttl: Any = "1 h", absolute_ttl: Any = "1 d", **options: Any) -> Site:
            store_options = {"idle_ttl": idle_ttl, "absolute_ttl": absolute_ttl}
            return stack.enter_context(
                running_site(kind, conn, store_options=store_options, **options)
            )

        yield run


@pytest.fixture
def browsers() -> Iterator[Callable[[Site], Browser]]:
    opened: list[Browser] = []

    def open_one(site: Site) -> Browser:
        opened.append(site.browser())
        return opened[-1]

    yield open_one
    for browser in opened:
        browser.close()


def handle(session_id: str) -> str:
    return session_id.partition(".")[0]


def anonymous(me: dict[str, Any]) -> bool:
    return me == {"user": None, "data": {}, "new": True}


# -- login, fixation, logout -----------------------------------------------------------------


def test_login_rotates_the_id_and_kills_the_old_one(start: StartSite, browsers: Any) -> None:
    site = start()
    browser = browsers(site)
    assert browser.post("/set", params={"key": "cart", "value": "book"}).status_code == 200
    before_login = browser.cookie
    assert before_login is not None
    assert valid_session_id(before_login)

    response = browser.post("/login", params={"user": "alice"})
    assert response.status_code == 200
    after_login = browser.cookie
    assert after_login is not None
    assert after_login != before_login
    assert len(session_cookies(response)) == 1
    assert browser.me() == {"user": "alice", "data": {"cart": "book"}, "new": False}

    # The pre-login id no longer opens anything.
    thief = browsers(site)
    thief.cookie = before_login
    assert anonymous(thief.me())
    assert [s.user_id for s in site.store.list_user_sessions("alice")] == ["alice"]


def test_login_of_a_fresh_visitor_creates_the_session(start: StartSite, browsers: Any) -> None:
    site = start()
    browser = browsers(site)
    assert browser.post("/login", params={"user": "bob"}).status_code == 200
    assert browser.cookie is not None
    assert browser.me() == {"user": "bob", "data": {}, "new": False}


def test_a_client_chosen_id_is_never_adopted(
    start: StartSite, browsers: Any, conn: Connection
) -> None:
    site = start()
    chosen = new_session_id()  # well-formed, but never issued by the server
    victim = browsers(site)
    victim.cookie = chosen
    assert anonymous(victim.me())

    response = victim.post("/set", params={"key": "x", "value": "1"})
    assert response.status_code == 200
    issued = victim.cookie
    assert issued is not None
    assert handle(issued) != handle(chosen)

    victim.cookie = chosen
    victim.post("/login", params={"user": "alice"})
    assert victim.cookie not in (None, chosen)
    assert not any(handle(chosen) in key for key in all_keys(conn))

    attacker = browsers(site)
    attacker.cookie = chosen
    assert anonymous(attacker.me())


def test_logout_deletes_the_record_and_clears_the_cookie(
    start: StartSite, browsers: Any, conn: Connection
) -> None:
    site = start()
    browser = browsers(site)
    browser.post("/login", params={"user": "alice"})
    session_id = browser.cookie
    assert session_id is not None
    assert any(handle(session_id) in key for key in all_keys(conn))

    response = browser.post("/logout")
    assert response.status_code == 200
    [cleared] = session_cookies(response)
    assert cleared.startswith("session=;")
    for flag in ("Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT", "HttpOnly", "Secure"):
        assert flag in cleared.split("; ")
    assert browser.cookie is None
    assert not any(handle(session_id) in key for key in all_keys(conn))
    assert site.store.list_user_sessions("alice") == []

    replay = browsers(site)
    replay.cookie = session_id
    assert anonymous(replay.me())


def test_logout_everywhere(start: StartSite, browsers: Any) -> None:
    site = start()
    alices = [browsers(site) for _ in range(3)]
    for browser in alices:
        browser.post("/login", params={"user": "alice"})
    bob = browsers(site)
    bob.post("/login", params={"user": "bob"})
    assert len({b.cookie for b in [*alices, bob]}) == 4

    response = alices[0].post("/logout-everywhere")
    assert response.json() == {"revoked": 3}
    for browser in alices:
        assert anonymous(browser.me())
    assert bob.me()["user"] == "bob"


# -- timeouts (real sleeps; generous margins) ------------------------------------------------


def test_idle_expiry(start: StartSite, browsers: Any) -> None:
    site = start(idle_ttl="1 s", absolute_ttl="1 h")
    browser = browsers(site)
    browser.post("/set", params={"key": "x", "value": "1"})
    time.sleep(2.5)
    assert anonymous(browser.me())


def test_absolute_expiry_despite_activity(start: StartSite, browsers: Any) -> None:
    site = start(idle_ttl="1 s", absolute_ttl="2 s")
    browser = browsers(site)
    browser.post("/set", params={"key": "x", "value": "1"})
    # The session was created before the reply came back: dead by began + 2 s, however long
    # the request took on a busy machine.
    began = time.monotonic()
    samples: list[tuple[float, bool]] = []
    while time.monotonic() - began < 3.5:
        sent = time.monotonic() - began
        samples.append((sent, not browser.me()["new"]))
        time.sleep(0.2)
    # Reads kept it alive past the idle timeout...
    assert any(alive for sent, alive in samples if sent > 1.2)
    # ...but never past the absolute one.
    assert not any(alive for sent, alive in samples if sent > 2.05)


# -- concurrency -----------------------------------------------------------------------------


def _interleave(site: Site, browser: Browser, slow: dict[str, str], fast: dict[str, str]) -> tuple[
    httpx.Response, httpx.Response
]:  # fmt: skip
    """The slow request reads the session, the fast one writes and ends, then the slow one
    writes: the slow one's save comes second, on data it read before the fast one's."""
    cookie = f"session={browser.cookie}"
    site.gate.loaded.clear()
    site.gate.release.clear()
    with (
        concurrent.futures.ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=site.url, timeout=60) as other,
    ):
        pending = pool.submit(other.post, "/wait-set", params=slow, headers={"Cookie": cookie})
        assert site.gate.loaded.wait(30)
        fast_response = browser.post("/set", params=fast)
        site.gate.release.set()
        slow_response = pending.result(60)
    return fast_response, slow_response


def test_concurrent_writes_of_different_keys_both_survive(start: StartSite, browsers: Any) -> None:
    site = start()
    browser = browsers(site)
    browser.post("/set", params={"key": "a", "value": "0"})
    fast, slow = _interleave(site, browser, {"key": "x", "value": "1"}, {"key": "y", "value": "2"})
    assert (fast.status_code, slow.status_code) == (200, 200)
    assert browser.me()["data"] == {"a": "0", "x": "1", "y": "2"}


def test_concurrent_writes_of_one_key_conflict(start: StartSite, browsers: Any) -> None:
    site = start()
    browser = browsers(site)
    browser.post("/set", params={"key": "a", "value": "0"})
    fast, slow = _interleave(site, browser, {"key": "x", "value": "1"}, {"key": "x", "value": "2"})
    assert fast.status_code == 200
    assert slow.status_code == 409
    assert slow.headers["content-type"].startswith("application/json")
    assert slow.json()["error"] == "session_conflict"
    assert slow.json()["keys"] == ["x"]
    assert session_cookies(slow) == []
    assert browser.me()["data"] == {"a": "0", "x": "2"}


def test_a_login_whose_save_conflicts_still_hands_out_the_new_id(
    start: StartSite, browsers: Any
) -> None:
    site = start()
    browser = browsers(site)
    browser.post("/set", params={"key": "a", "value": "0"})
    before = browser.cookie
    slow = {"key": "x", "value": "2", "login": "ada"}
    fast, refused = _interleave(site, browser, slow, {"key": "x", "value": "1"})
    assert fast.status_code == 200
    assert refused.status_code == 409
    # The rotation happened before the conflicting save: the old id is dead, so the 409 must
    # carry the new one, or the client would be left with no session at all.
    [raw] = session_cookies(refused)
    match = COOKIE.fullmatch(raw)
    assert match is not None, raw
    assert match.group(1) != before
    browser.cookie = match.group(1)
    assert browser.me()["user"] == "ada"


# -- the cookie on the wire --------------------------------------------------------------------


def test_cookie_flags_on_the_wire(start: StartSite, browsers: Any) -> None:
    site = start()
    browser = browsers(site)
    response = browser.post("/set", params={"key": "x", "value": "1"})
    [raw] = session_cookies(response)
    match = COOKIE.fullmatch(raw)
    assert match is not None, raw
    assert valid_session_id(match.group(1))
    assert "domain" not in raw.lower()
    assert "max-age" not in raw.lower()
    assert response.headers["cache-control"] == "no-store"
    assert "cookie" in response.headers["vary"].lower()

    # The id did not change: no cookie again, and a plain request gets no Vary either.
    again = browser.post("/set", params={"key": "x", "value": "2"})
    assert session_cookies(again) == []
    assert "cookie" in again.headers["vary"].lower()
    plain = browser.get("/plain")
    assert session_cookies(plain) == []
    assert "vary" not in plain.headers


def test_cookie_options(start: StartSite, browsers: Any) -> None:
    site = start(cookie_name="__Host-sid", same_site="strict", max_age=600)
    browser = site.browser("__Host-sid")
    try:
        response = browser.post("/set", params={"key": "x", "value": "1"})
        [raw] = session_cookies(response, "__Host-sid")
        assert re.fullmatch(
            r"__Host-sid=[\w.-]+; Max-Age=600; Path=/; HttpOnly; Secure; SameSite=Strict", raw
        ), raw
        assert browser.me()["data"] == {"x": "1"}
    finally:
        browser.close()


def test_insecure_cookies_warn_and_work_with_a_standard_cookie_jar(
    kind: str, conn: Connection
) -> None:
    store_options = {"idle_ttl": "1 h", "absolute_ttl": "1 d"}
    with ExitStack() as stack:
        with pytest.warns(UserWarning, match="plain HTTP"):
            site = stack.enter_context(
                running_site(kind, conn, store_options=store_options, secure=False)
            )
        client = stack.enter_context(httpx.Client(base_url=site.url, timeout=30))  # its own jar
        response = client.post("/login", params={"user": "carol"})
        assert "Secure" not in session_cookies(response)[0].split("; ")
        assert client.get("/me").json() == {"user": "carol", "data": {}, "new": False}
        client.post("/logout")
        assert not client.cookies
        assert client.get("/me").json()["user"] is None


# -- laziness and bad input ------------------------------------------------------------------


def test_untouched_sessions_cost_no_redis_call(
    start: StartSite, browsers: Any, conn: Connection
) -> None:
    if conn.is_cluster:
        pytest.skip("counted on the standalone server")
    site = start()
    browser = browsers(site)
    browser.post("/login", params={"user": "alice"})
    admin = conn.sync_driver().client
    admin.config_resetstat()
    for _ in range(3):
        assert browser.get("/plain").status_code == 200  # carries a cookie, never reads it
    assert anonymous(browsers(site).me())  # no cookie: an empty session, no lookup
    assert commands_run(admin) == 0
    assert browser.me()["user"] == "alice"  # and the counting does count
    assert commands_run(admin) >= 1


def test_autoload_reads_for_requests_with_a_cookie(
    kind: str, start: StartSite, browsers: Any, conn: Connection
) -> None:
    if kind == "flask" or conn.is_cluster:
        pytest.skip("ASGI option (Flask loads on first use); counted on standalone")
    site = start(autoload=True)
    browser = browsers(site)
    browser.post("/set", params={"key": "x", "value": "1"})
    admin = conn.sync_driver().client
    admin.config_resetstat()
    assert browsers(site).get("/plain").status_code == 200  # no cookie: nothing to load
    assert commands_run(admin) == 0
    assert browser.get("/unloaded").json() == {"value": "1"}  # loaded before the app ran
    assert script_calls(admin) == 1


def test_using_an_unloaded_session_says_how_to_load_it(
    kind: str, start: StartSite, browsers: Any
) -> None:
    if kind == "flask":
        pytest.skip("Flask sessions load on first use")
    site = start()
    browser = browsers(site)
    # Refused for everyone, at the first request: not only once a visitor has a session.
    first = browser.get("/unloaded").json()["error"]  # no cookie yet
    browser.post("/set", params={"key": "x", "value": "1"})
    error = browser.get("/unloaded").json()["error"]
    assert first == error
    assert "await load_session(request)" in error
    assert "autoload=True" in error


def test_bad_cookies_are_anonymous_and_never_looked_up(
    start: StartSite, browsers: Any, conn: Connection
) -> None:
    site = start()
    owner = browsers(site)
    owner.post("/login", params={"user": "alice"})
    real = owner.cookie
    assert real is not None
    bad: list[str | bytes] = [
        "session=garbage",
        "session=" + "a" * 10_000,
        b"session=\xc3\xa9t\xe9\xff" + b"A" * 60,
        "session=" + real.replace(".", "_"),  # wrong shape
        "session=" + real + "x",  # one character too many
        f'session="{real}"',  # quoted
        f"session={real}; session={real}",  # twice: trust neither
        f"session={new_session_id()}; session={real}",
        "session",
        "=;;=",
    ]
    admin = None if conn.is_cluster else conn.sync_driver().client
    if admin is not None:
        admin.config_resetstat()
    for cookie in bad:
        response = browsers(site).get("/me", cookie=cookie)
        assert response.status_code == 200, cookie
        assert anonymous(response.json()), cookie
        assert session_cookies(response) == []
    if admin is not None:
        assert commands_run(admin) == 0
    # A write under a bad cookie starts a fresh session.
    visitor = browsers(site)
    response = visitor.post("/set", params={"key": "x", "value": "1"}, cookie="session=garbage")
    assert response.status_code == 200
    assert visitor.cookie is not None
    assert visitor.cookie != real


# -- Redis down --------------------------------------------------------------------------------


def test_redis_down_answers_503(kind: str) -> None:
    down = Connection(f"redis://127.0.0.1:{closed_port()}", connect_timeout=0.5)
    options = {"idle_ttl": "1 h", "absolute_ttl": "1 d", "timeout": 1.0}
    with running_site(kind, down, store_options=options) as site:
        browser = site.browser()
        try:
            assert browser.get("/plain").status_code == 200  # no session used: no Redis needed
            assert anonymous(browser.me())  # no cookie: nothing to read

            browser.cookie = new_session_id()
            response = browser.get("/me")  # a cookie to look up: refused, not let in
            assert response.status_code == 503
            assert response.json()["error"] == "session_unavailable"
            assert response.headers["retry-after"] == "1"

            browser.cookie = None
            response = browser.post("/set", params={"key": "x", "value": "1"})  # create fails
            assert response.status_code == 503
            assert response.json()["error"] == "session_unavailable"
            assert session_cookies(response) == []
        finally:
            browser.close()
    down.close()
