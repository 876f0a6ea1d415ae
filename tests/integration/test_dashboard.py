"""The dashboard over real HTTP (uvicorn on loopback), on a standalone Redis and a cluster.

Each page's JSON and HTML shows what the test did through redkit's facades; the tokens, the
CSRF token and the origin check refuse what they must; the actions really act.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from markupsafe import escape
from starlette.applications import Starlette
from starlette.routing import Mount

import redkit
from redkit import Cache, Ratelimit, SessionStore
from redkit.core.errors import InvalidArgumentError, InvalidKeyError
from redkit.dashboard import Dashboard
from redkit.dashboard.server import serve
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.drivers.rest import RestConnection
from support.backends import REST_TOKEN, BackendCase
from support.dashboard import (
    ADMIN,
    HOSTILE,
    LIMIT,
    READ,
    csrf_of,
    fill,
    fill_fleet,
    keys_and_no_ttl,
    logged_in,
    running_dashboard,
)  # fmt: skip
from support.probes import closed_port
from support.web import serve_asgi

BEARER = {"authorization": f"Bearer {READ}"}
#: The hostile identifier as the pages must show it: every special character escaped.
ESCAPED = str(escape(HOSTILE))


def masters(server: EmbeddedRedis | EmbeddedCluster) -> int:
    return 3 if isinstance(server, EmbeddedCluster) else 1


def total_keys(server: EmbeddedRedis | EmbeddedCluster) -> int:
    clients = server.node_clients() if isinstance(server, EmbeddedCluster) else [server.client()]
    try:
        return sum(int(client.dbsize()) for client in clients)
    finally:
        for client in clients:
            client.close()


def test_each_page_shows_what_redkit_did(
    server: EmbeddedRedis | EmbeddedCluster, conn: Connection
) -> None:
    filled = fill(conn)
    with running_dashboard(conn) as base, httpx.Client(base_url=base, headers=BEARER) as web:
        overview = web.get("/api/overview").json()
        assert len(overview["servers"]) == masters(server)
        assert sum(s["keys"] for s in overview["servers"]) == total_keys(server)
        assert all(s["version"].count(".") == 2 for s in overview["servers"])

        (report,) = web.get("/api/ratelimits").json()["prefixes"]
        assert report["prefix"] == "rl"
        for outcome in ("allowed", "blocked", "denied"):
            expected = getattr(filled, outcome)
            rows = report["identifiers"]
            shown = {row["identifier"]: row[outcome] for row in rows if row[outcome]}
            assert shown == expected
            assert report["totals"][outcome] == sum(expected.values())
        assert report["top"]["blocked"] == [{"identifier": "alice", "count": 1}]
        assert report["deny_list"] == ["bad-actor"]
        assert report["identifier_limits"] == [{"identifier": "bob", "limit": 7}]

        (sessions,) = web.get("/api/sessions").json()["prefixes"]
        assert sessions["active"] == sum(len(ids) for ids in filled.sessions.values())
        shown_users = {u["user"]: u["sessions"] for u in sessions["users"]}
        assert shown_users == {user: len(ids) for user, ids in filled.sessions.items()}

        page = web.get("/ratelimits").text
        assert "<script>" not in page  # no script at all, and no identifier unescaped
        assert ESCAPED in page
        totals = re.search(r'class="allowed">(\d+)</span> allowed', page)
        assert totals is not None
        assert int(totals.group(1)) == sum(filled.allowed.values())
        sessions_page = web.get("/sessions").text
        assert "<script>" not in sessions_page
        assert ESCAPED in sessions_page


def test_reading_needs_a_token(conn: Connection) -> None:
    with running_dashboard(conn) as base, httpx.Client(base_url=base) as web:
        for path in ("/api/overview", "/api/ratelimits", "/api/sessions", "/api/caches"):
            refused = web.get(path)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
        assert (
            web.get("/api/overview", headers={"authorization": "Bearer wrong"}).status_code == 401
        )
        to_login = web.get("/sessions")
        assert to_login.status_code == 303
        assert to_login.headers["location"].endswith("/login")
        wrong = web.post("/login", data={"token": "x" * 20}, headers={"origin": base})
        assert wrong.status_code == 401
        assert "dashboard" not in wrong.cookies
        assert web.get("/api/overview", headers=BEARER).status_code == 200


def test_login_cookie_is_httponly_and_strict(conn: Connection) -> None:
    with running_dashboard(conn) as base, httpx.Client(base_url=base) as web:
        reply = web.post("/login", data={"token": READ}, headers={"origin": base})
        assert reply.status_code == 303
        cookie = reply.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/" in cookie
        assert READ not in cookie  # the cookie is signed, it never holds the token
        assert web.get("/api/sessions").status_code == 200
        forged = web.cookies["redkit_dashboard"].replace("read.", "admin.", 1)
        web.cookies.set("redkit_dashboard", forged)
        assert web.get("/api/sessions").status_code == 401


def test_security_headers(conn: Connection) -> None:
    with running_dashboard(conn) as base, httpx.Client(base_url=base, headers=BEARER) as web:
        for path in ("/", "/api/overview", "/login"):
            headers = web.get(path).headers
            assert "script-src" not in headers["content-security-policy"]
            assert "default-src 'none'" in headers["content-security-policy"]
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-frame-options"] == "DENY"
            assert headers["cache-control"] == "no-store"
            assert headers["x-content-type-options"] == "nosniff"


def test_reset_needs_admin_csrf_and_the_own_origin(
    conn: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    fill(conn)
    limiter = Ratelimit(conn, LIMIT, prefix="rl", ephemeral_cache=False)
    assert not limiter.limit("alice")  # used up by fill()
    with running_dashboard(conn) as base:
        form = {"prefix": "rl", "identifier": "alice"}
        with logged_in(base, READ) as reader:
            form["csrf"] = csrf_of(reader.get("/keyspace").text)
            refused = reader.post("/actions/reset", data=form, headers={"origin": base})
            assert refused.status_code == 403
            assert "admin token" in refused.text
        with logged_in(base, ADMIN) as admin:
            csrf = csrf_of(admin.get("/ratelimits").text)
            no_csrf = admin.post("/actions/reset", data=form | {"csrf": ""})
            assert no_csrf.status_code == 403
            assert "CSRF" in no_csrf.text
            wrong_csrf = admin.post("/actions/reset", data=form | {"csrf": "0" * 64})
            assert wrong_csrf.status_code == 403
            foreign = admin.post(
                "/actions/reset",
                data=form | {"csrf": csrf},
                headers={"origin": "http://evil.example"},
            )
            assert foreign.status_code == 403
            assert "origin" in foreign.text
            cross = admin.post(
                "/actions/reset",
                data=form | {"csrf": csrf},
                headers={"sec-fetch-site": "cross-site"},
            )
            assert cross.status_code == 403
            assert not limiter.limit("alice")  # nothing was reset by the refused requests
            with caplog.at_level(logging.INFO, logger="redkit.dashboard.audit"):
                done = admin.post(
                    "/actions/reset", data=form | {"csrf": csrf}, headers={"origin": base}
                )
            assert done.status_code == 200
            assert "reset alice under rl" in done.text
        bearer_reader = httpx.post(f"{base}/api/actions/reset", data=form, headers=BEARER)
        assert bearer_reader.status_code == 403
    assert limiter.limit("alice")  # its window starts again
    limiter.close()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "redkit.dashboard.audit"]
    assert "action=ratelimit.reset" in line
    assert "target='rl alice'" in line
    assert "who=admin (cookie session" in line
    assert ADMIN not in line


def test_bump_and_tag_invalidate_a_namespace(server: object, conn: Connection) -> None:
    writer = Cache(conn, namespace="ns")
    writer.set("a", 1)
    writer.set("b", 2, tags=["t"])
    writer.set("c", 3, tags=["u"])
    admin = {"authorization": f"Bearer {ADMIN}"}
    with running_dashboard(conn) as base, httpx.Client(base_url=base, headers=admin) as web:
        tagged = web.post("/api/actions/tag", data={"namespace": "ns", "tag": "t"})
        assert tagged.status_code == 200, tagged.text
        reader = Cache(conn, namespace="ns")
        assert (reader.get("a"), reader.get("b"), reader.get("c")) == (1, None, 3)
        bumped = web.post("/api/actions/bump", data={"namespace": "ns"}).json()
        assert bumped["count"] == 1  # the new generation
        fresh = Cache(conn, namespace="ns")
        assert (fresh.get("a"), fresh.get("c")) == (None, None)
        (ns,) = web.get("/api/caches").json()["namespaces"]
        assert ns["generations"] == [{"version": None, "generation": 1}]
        for cache in (writer, reader, fresh):
            cache.close()


def test_revoke_ends_every_session_of_the_user(conn: Connection) -> None:
    filled = fill(conn)
    store = SessionStore(conn)
    with running_dashboard(conn) as base, logged_in(base, ADMIN) as admin:
        page = admin.get("/sessions").text
        assert page.count("Revoke all") == 3
        form = {"prefix": "session", "user": "42", "csrf": csrf_of(page)}
        done = admin.post("/actions/revoke", data=form, headers={"origin": base})
        assert done.status_code == 200
        assert "3 session(s) of user 42 revoked" in done.text
        assert [r.status_code for r in done.history] == [303]  # redirected after the POST
        assert str(done.url) == f"{base}/sessions"
        again = admin.get("/sessions")  # a reload: the outcome is gone, nothing acts again
        assert 'class="done"' not in again.text
        forged = base64.urlsafe_b64encode(b"all sessions revoked").decode() + ".00"
        admin.cookies.set("redkit_dashboard_done", forged)
        assert 'class="done"' not in admin.get("/sessions").text
        hostile = {"prefix": "session", "user": '"' + HOSTILE.replace('"', '\\"') + '"'}
        done = admin.post("/actions/revoke", data=hostile | {"csrf": form["csrf"]})
        assert done.status_code == 200, done.text
    assert all(store.get(sid) is None for sid in filled.sessions[42] + filled.sessions[HOSTILE])
    assert all(store.get(sid) is not None for sid in filled.sessions["carol"])


def test_mounted_under_a_path(conn: Connection) -> None:
    fill(conn)
    dashboard = Dashboard(conn, token=READ, admin_token=ADMIN, ratelimit_prefixes=["rl"])
    app = Starlette(routes=[Mount("/redkit", app=dashboard)])
    with serve_asgi(app, conn) as base, httpx.Client(base_url=base) as web:
        assert web.get("/redkit/sessions").headers["location"] == f"{base}/redkit/login"
        reply = web.post("/redkit/login", data={"token": ADMIN}, headers={"origin": base})
        assert reply.status_code == 303
        assert "Path=/redkit" in reply.headers["set-cookie"]
        page = web.get("/redkit/ratelimits").text
        assert f'href="{base}/redkit/static/dashboard.css"' in page
        assert f'action="{base}/redkit/actions/reset"' in page
        assert (
            web.get("/redkit/static/dashboard.css").headers["content-type"].startswith("text/css")
        )


def test_without_tokens_only_loopback_is_served(conn: Connection) -> None:
    with running_dashboard(conn, token=None, admin_token=None, no_auth=True) as base:
        page = httpx.get(f"{base}/keyspace")
        assert page.status_code == 200
        assert csrf_of(page.text)
        assert "redkit_dashboard=" in page.headers["set-cookie"]
        rebound = httpx.get(f"{base}/sessions", headers={"host": "evil.example"})
        assert rebound.status_code == 421


def test_bad_settings_are_refused(conn: Connection) -> None:
    with pytest.raises(InvalidArgumentError, match="REDKIT_DASHBOARD_TOKEN"):
        Dashboard(conn, token=None)
    with pytest.raises(InvalidArgumentError, match="at least 16"):
        Dashboard(conn, token="short")
    with pytest.raises(InvalidArgumentError, match="differ"):
        Dashboard(conn, token=READ, admin_token=READ)
    with pytest.raises(InvalidArgumentError, match="list of prefixes"):
        Dashboard(conn, token=READ, ratelimit_prefixes="rl")
    with pytest.raises(InvalidArgumentError, match="at most a day"):
        Dashboard(conn, token=READ, stats_since="2 d")
    with pytest.raises(InvalidArgumentError, match="stats_since"):
        Dashboard(conn, token=READ, stats_since="soon")
    with pytest.raises(InvalidArgumentError, match="hours must be"):
        Dashboard(conn, token=READ, hours=0)
    with pytest.raises(InvalidArgumentError, match="scan_count"):
        Dashboard(conn, token=READ, scan_count=0)
    with pytest.raises(InvalidArgumentError, match="timeout"):
        Dashboard(conn, token=READ, timeout=-1)
    with pytest.raises(InvalidKeyError, match="must not contain"):
        Dashboard(conn, token=READ, cache_namespaces=["a*"])
    with pytest.raises(InvalidArgumentError, match="REDKIT_DASHBOARD_TOKEN"):
        serve("redis://127.0.0.1:1", token=None, admin_token=None)
    with pytest.raises(InvalidArgumentError, match="loopback only"):
        serve("redis://127.0.0.1:1", host="0.0.0.0", token=None, admin_token=None, no_auth=True)


@pytest.mark.parametrize(
    "origins",
    ["https://admin.example.com", ["https://admin.example.com/"], ["admin.example.com"], [5]],
)
def test_an_allowed_origin_that_could_never_match_is_refused(
    conn: Connection, origins: Any
) -> None:
    # A str was taken letter by letter, and a path or a missing scheme never equals the
    # Origin header a browser sends: the POSTs it meant to allow were refused, silently.
    with pytest.raises(InvalidArgumentError, match="allowed_origins"):
        Dashboard(conn, token=READ, allowed_origins=origins)


def wait_for_scan(web: httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        scan = web.get("/api/keyspace").json()["scan"]
        if not scan["running"]:
            return dict(scan)
        time.sleep(0.05)
    raise AssertionError("the keyspace scan did not end")


def test_keyspace_scan_runs_in_the_background(
    server: EmbeddedRedis | EmbeddedCluster, conn: Connection
) -> None:
    pytest.importorskip("redkit.ops.keyspace", reason="redkit.ops (the keyspace report) is absent")
    fill(conn)
    cache = Cache(conn, namespace="ns")
    cache.set_many({f"k{i}": i for i in range(25)}, ttl=600)
    cache.close()
    total, no_ttl = keys_and_no_ttl(server)
    with running_dashboard(conn) as base, httpx.Client(base_url=base, headers=BEARER) as web:
        started = web.post("/api/keyspace/scan").json()
        assert started["started"] is True
        scan = wait_for_scan(web)
        assert scan["error"] is None
        report = scan["report"]
        assert (report["scanned"], report["total_keys"]) == (total, total)
        assert report["keys_without_ttl"] == no_ttl
        assert len(report["masters"]) == masters(server)
        assert scan["scanned"] == total  # the progress reached the end
        (ns,) = web.get("/api/caches").json()["namespaces"]
        assert ns["keyspace"]["scanned"] == 25
        assert ns["keyspace"]["ttl"]["<1h"] == 25
        page = web.get("/keyspace").text
        assert f'<span id="scanned">{total}</span>' in page
        assert f'<span id="no-ttl">{no_ttl}</span>' in page


def test_fleet_statistics_show_on_the_overview_and_caches(conn: Connection) -> None:
    pytest.importorskip("redkit.stats", reason="redkit.stats (the fleet statistics) is absent")
    fill_fleet(conn)
    with running_dashboard(conn) as base, httpx.Client(base_url=base, headers=BEARER) as web:
        namespaces = {ns["namespace"]: ns for ns in web.get("/api/caches").json()["namespaces"]}
        assert set(namespaces) == {"ns", "fleet"}  # the configured one, and the reporting one
        fleet = namespaces["fleet"]
        assert fleet["totals"]["hits"] == 5
        assert fleet["totals"]["misses"] == 3
        assert fleet["totals"]["loads"] == 3
        assert fleet["hit_ratio"] == 5 / 8
        assert sum(v for _, v in fleet["series"]["hits"]) == 5
        overview = web.get("/api/overview").json()["fleet"]
        assert overview["hit_ratio"] == 5 / 8
        assert sum(v for _, v in overview["decisions"]["allowed"]) == 1
        assert sum(v for _, v in overview["decisions"]["blocked"]) == 1
        assert sum(v for _, v in overview["decisions"]["cache_block"]) == 1  # the ephemeral cache
        prefixes = [p["prefix"] for p in web.get("/api/ratelimits").json()["prefixes"]]
        assert prefixes == ["rl", "frl"]
        (sessions,) = web.get("/api/sessions").json()["prefixes"]
        assert (sessions["fleet"]["created"], sessions["fleet"]["revoked"]) == (1, 1)
        page = web.get("/").text
        assert '<strong id="fleet-hit-ratio">62.5%</strong>' in page
        assert page.count('<img src="data:image/svg+xml;base64,') == 2
        caches_page = web.get("/caches").text
        assert '<strong class="hit-ratio">62.5%</strong>' in caches_page


def test_over_rest_through_the_gateway(redis_server: EmbeddedRedis, rest_gateway: str) -> None:
    """On Upstash's REST protocol (redkit's gateway in front of the standalone server)."""
    with redis_server.client() as admin:
        admin.flushall()
    conn = RestConnection(rest_gateway, token=REST_TOKEN, key_locking=True)
    filled = fill(conn)
    dashboard = Dashboard(conn, token=READ, admin_token=ADMIN, ratelimit_prefixes=["rl"])
    with serve_asgi(dashboard, conn) as base, httpx.Client(base_url=base, headers=BEARER) as web:
        (server,) = web.get("/api/overview").json()["servers"]
        assert server["version"].count(".") == 2  # INFO as text over REST, read all the same
        assert server["keys"] == keys_and_no_ttl(redis_server)[0]
        (report,) = web.get("/api/ratelimits").json()["prefixes"]
        assert report["totals"]["allowed"] == sum(filled.allowed.values())
        assert report["deny_list"] == ["bad-actor"]
        (sessions,) = web.get("/api/sessions").json()["prefixes"]
        assert {u["user"]: u["sessions"] for u in sessions["users"]} == {
            user: len(ids) for user, ids in filled.sessions.items()
        }
        done = web.post(
            "/api/actions/revoke",
            data={"prefix": "session", "user": "42"},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert done.json()["count"] == 3
    conn.close()


def test_redis_out_of_reach_is_a_503_not_a_traceback() -> None:
    unreachable = redkit.connect(f"redis://127.0.0.1:{closed_port()}", socket_timeout=0.5)
    dashboard = Dashboard(unreachable, token=READ, timeout=0.5)
    with (
        serve_asgi(dashboard, unreachable) as base,
        httpx.Client(base_url=base, headers=BEARER) as web,
    ):
        api = web.get("/api/sessions")
        assert api.status_code == 503
        assert api.json()["error"].startswith("BackendUnavailable: Redis is unavailable")
        page = web.get("/sessions")
        assert page.status_code == 503
        assert "Refused (503)" in page.text
    unreachable.close()


def test_bad_action_input_is_a_400(conn: Connection) -> None:
    admin = {"authorization": f"Bearer {ADMIN}"}
    with running_dashboard(conn) as base, httpx.Client(base_url=base, headers=admin) as web:
        no_tag = web.post("/api/actions/tag", data={"namespace": "ns"})
        assert no_tag.status_code == 400
        assert "'tag'" in no_tag.json()["error"]
        bad_namespace = web.post("/api/actions/bump", data={"namespace": "a*b"})
        assert bad_namespace.status_code == 400
        assert "must not contain" in bad_namespace.json()["error"]
        unknown = web.post("/api/actions/flushall", data={})
        assert unknown.status_code == 404
        as_json = web.post("/api/actions/bump", json={"namespace": "ns"})
        assert as_json.status_code == 415


def overview_of_a_process(command: list[str], port: int, extra_env: dict[str, str]) -> Any:
    """Run ``command`` (a dashboard server on ``port``), read /api/overview, stop it (SIGINT)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **extra_env}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/api/overview", headers=BEARER)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_serve_runs_the_dashboard_until_stopped(redis_server: EmbeddedRedis) -> None:
    """``serve`` as ``redkit dashboard`` calls it, in a process of its own."""
    port = closed_port()
    code = (
        "from redkit.dashboard.server import serve; "
        f"serve({redis_server.url!r}, port={port}, token={READ!r}, admin_token=None)"
    )
    overview = overview_of_a_process([sys.executable, "-c", code], port, {})
    assert overview["servers"][0]["node"] == "standalone"


def test_the_redkit_dashboard_command(redis_server: EmbeddedRedis) -> None:
    """``redkit dashboard --redis URL`` with the token from ``REDKIT_DASHBOARD_TOKEN``."""
    help_text = subprocess.run(
        [sys.executable, "-m", "redkit", "--help"], capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout  # fmt: skip
    if "dashboard" not in help_text:
        pytest.skip("this checkout's redkit command has no dashboard command (the CLI branch)")
    port = closed_port()
    command = [sys.executable, "-m", "redkit", "dashboard", "--redis", redis_server.url]
    overview = overview_of_a_process(
        [*command, "--port", str(port)], port, {"REDKIT_DASHBOARD_TOKEN": READ}
    )
    assert overview["servers"][0]["node"] == "standalone"


def test_each_backend_sync_and_async(backend: BackendCase) -> None:
    """What each of the six backends' facades did (blocking or asyncio), the pages show."""
    filled = fill(backend.conn, backend)
    if backend.is_rest:
        own: Connection | RestConnection = RestConnection(
            backend.conn.url, token=REST_TOKEN, key_locking=True
        )
    else:
        own = Connection(backend.conn.url)
    dashboard = Dashboard(own, token=READ, ratelimit_prefixes=["rl"])
    with serve_asgi(dashboard, own) as base, httpx.Client(base_url=base, headers=BEARER) as web:
        (report,) = web.get("/api/ratelimits").json()["prefixes"]
        for outcome in ("allowed", "blocked", "denied"):
            assert report["totals"][outcome] == sum(getattr(filled, outcome).values())
        assert report["identifier_limits"] == [{"identifier": "bob", "limit": 7}]
        (sessions,) = web.get("/api/sessions").json()["prefixes"]
        assert {u["user"]: u["sessions"] for u in sessions["users"]} == {
            user: len(ids) for user, ids in filled.sessions.items()
        }
        assert len(web.get("/api/overview").json()["servers"]) == (3 if backend.is_cluster else 1)
    own.close()


def test_counts_written_by_upstash_ratelimit_show(
    server: EmbeddedRedis | EmbeddedCluster, conn: Connection
) -> None:
    """``@upstash/ratelimit``'s analytics write ``ZINCRBY <prefix>:events:<hour ms> n <event>``
    with the event ``JSON.stringify({identifier, success})``; the page reads them as its own."""
    hour = int(time.time()) // 3600 * 3600 * 1000
    client = conn.sync_driver().client
    key = f"@upstash/ratelimit:events:{hour}"
    client.zincrby(key, 4, '{"identifier":"js-user","success":true}')
    client.zincrby(key, 2, '{"identifier":"js-user","success":false}')
    client.zincrby(key, 1, '{"identifier":"1.2.3.4","success":"denied"}')
    client.zincrby(
        f"@upstash/ratelimit:events:{hour - 3600_000}", 3, '{"identifier":"js-user","success":true}'
    )
    client.sadd("@upstash/ratelimit:denyList:all", "1.2.3.4")
    client.set("@upstash/ratelimit:dynamic:global", 50)
    served = running_dashboard(conn, ratelimit_prefixes=["@upstash/ratelimit"])
    with served as base, httpx.Client(base_url=base, headers=BEARER) as web:
        (report,) = web.get("/api/ratelimits").json()["prefixes"]
    assert report["totals"] == {"allowed": 7, "blocked": 2, "denied": 1}
    assert report["per_hour"][-1] == {"time": hour, "allowed": 4, "blocked": 2, "denied": 1}
    assert report["per_hour"][-2]["allowed"] == 3
    assert report["identifiers"][0] == {
        "identifier": "js-user",
        "allowed": 7,
        "blocked": 2,
        "denied": 0,
    }
    assert (report["deny_list"], report["global_limit"]) == (["1.2.3.4"], 50)
