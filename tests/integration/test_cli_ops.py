"""The operations commands through click's CliRunner, on a real standalone server and a real
cluster that each test filled through redkit; and the real ``redkit`` console script once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from redkit.cache import Cache
from redkit.cli.app import redkit_group
from redkit.core.keys import glob_escape
from redkit.core.ops import Pipeline, command
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.ops import count_keys
from redkit.ratelimit import FixedWindow, Ratelimit, SlidingWindow
from redkit.sessions import SessionStore
from support.backends import REST_TOKEN

SRC = Path(__file__).resolve().parents[2] / "src"


def invoke(*args: str, code: int = 0, env: Mapping[str, str | None] | None = None) -> Result:
    result = CliRunner().invoke(redkit_group, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, (result.stdout, result.stderr)
    return result


def as_json(*args: str) -> Any:
    return json.loads(invoke(*args, "--json").stdout)


@pytest.fixture
def url(server: EmbeddedRedis | EmbeddedCluster) -> str:
    return server.url


def fill_keys(conn: Connection) -> None:
    """120 keys with a 10 min TTL under ``shop:``, 31 without under ``job:`` (one with glob
    characters in its name). Written with redkit's driver; not a Cache's, whose entries
    come with 5 s leases that could expire during a test."""
    driver = conn.sync_driver()
    driver.execute(
        Pipeline(tuple(command("SET", f"shop:item:{i}", "x", "EX", 600) for i in range(120)))
    )
    driver.execute(Pipeline(tuple(command("SET", f"job:{i}", "x") for i in range(30))))
    driver.execute(command("SET", "job:[weird]*", "x"))


def test_inspect_counts_what_was_written(url: str, conn: Connection) -> None:
    fill_keys(conn)
    data = as_json("inspect", "--redis", url, "--sample-memory", "1", "--pause", "0")
    assert data["total_keys"] == data["scanned"] == 151
    children = {child["prefix"]: child["keys"] for child in data["tree"]["children"]}
    assert children["job:"] == 31
    assert children["shop:"] == 120
    assert data["ttl"]["<1h"] == 120
    assert data["keys_without_ttl"] == 31
    assert data["types"] == {"string": 151}
    assert data["memory_bytes"] > 0
    shown = invoke("inspect", "--redis", url)
    assert shown.stderr == ""  # no progress bar off a terminal
    text = shown.stdout
    assert "151 keys scanned" in text
    assert "job:" in text
    assert "shop:" in text
    assert "keys without TTL: 31" in text


def test_keys_count_and_delete(url: str, conn: Connection) -> None:
    fill_keys(conn)
    assert as_json("keys", "count", "job:*", "--redis", url) == {"pattern": "job:*", "count": 31}
    assert (
        "1 keys match"
        in invoke("keys", "count", glob_escape("job:[weird]*"), "--redis", url).stdout
    )
    dry = invoke("keys", "delete", "job:*", "--redis", url).stdout
    assert "dry run: 31 keys match" in dry
    assert "add --yes" in dry
    assert count_keys(conn, "job:*") == 31
    done = invoke("keys", "delete", "job:*", "--yes", "--batch", "7", "--redis", url).stdout
    assert "deleted 31 keys matching job:*" in done
    assert count_keys(conn, "job:*") == 0
    assert count_keys(conn, "shop:*") == 120


def test_keys_delete_refuses_every_key_without_all(url: str, conn: Connection) -> None:
    fill_keys(conn)
    refused = invoke("keys", "delete", "*", "--yes", "--redis", url, code=2)
    assert "--all" in refused.stderr
    assert refused.stderr.startswith("redkit: error: ")
    assert count_keys(conn, "*") == 151
    done = json.loads(
        invoke("keys", "delete", "*", "--yes", "--all", "--json", "--redis", url).stdout
    )
    assert done["deleted"] == 151
    assert count_keys(conn, "*") == 0


def test_ratelimit_usage_reset_deny_allow(url: str, conn: Connection) -> None:
    limiter = Ratelimit(conn, SlidingWindow(3, "1 m"), prefix="api", analytics=True)
    try:
        outcomes = [limiter.limit("alice").success for _ in range(5)]
        outcomes += [limiter.limit("bob").success]
        limiter.flush()
    finally:
        limiter.close()
    assert outcomes == [True, True, True, False, False, True]
    data = as_json(
        "ratelimit", "usage", "--prefix", "api", "--redis", url,
        "--rate", "3/minute", "--identifier", "alice",
    )  # fmt: skip
    assert data["identifiers"]["alice"] == {"allowed": 3, "blocked": 2, "denied": 0}
    assert data["identifiers"]["bob"] == {"allowed": 1, "blocked": 0, "denied": 0}
    assert sum(row["allowed"] for row in data["per_hour"]) == 4
    assert data["remaining"]["alice"]["remaining"] == 0
    text = invoke("ratelimit", "usage", "--prefix", "api", "--redis", url).stdout
    assert "alice" in text
    assert "bob" in text
    reset = invoke(
        "ratelimit", "reset", "alice", "--prefix", "api", "--rate", "3/minute", "--redis", url
    ).stdout
    assert "reset alice under api" in reset
    again = Ratelimit(conn, SlidingWindow(3, "1 m"), prefix="api")
    try:
        assert again.get_remaining("alice").remaining == 3
        denied = invoke("ratelimit", "deny", "mallory", "--prefix", "api", "--redis", url).stdout
        assert denied.startswith("added 1 of 1 to the deny list of api")
        assert "enable_protection=True" in denied  # the list binds only limiters that read it
        assert again.denied() == {"mallory"}
        assert as_json("ratelimit", "usage", "--prefix", "api", "--redis", url)["deny_list"] == [
            "mallory"
        ]
        out = invoke("ratelimit", "allow", "mallory", "--prefix", "api", "--redis", url).stdout
        assert out.startswith("removed 1 of 1 from the deny list of api")
        assert again.denied() == set()
    finally:
        again.close()


def test_cache_bump_and_invalidate_tag(url: str, conn: Connection) -> None:
    cache = Cache(conn, namespace="shop")
    try:
        cache.set("a", 1, tags=["red"])
        cache.set("b", 2, tags=["blue"])
        cache.set("c", 3)
        out = invoke("cache", "invalidate-tag", "shop", "red", "--redis", url).stdout
        assert "invalidated" in out
        assert "red" in out
        assert cache.get("a") is None
        assert cache.get("b") == 2
        out = invoke("cache", "bump", "shop", "--redis", url).stdout
        assert out.startswith("bumped shop to generation ")
        fresh = Cache(conn, namespace="shop")
        try:
            assert fresh.get("b") is None
            assert fresh.get("c") is None
        finally:
            fresh.close()
    finally:
        cache.close()


def test_sessions_list_and_revoke_user(url: str, conn: Connection) -> None:
    store = SessionStore(conn)
    made = [store.create({"n": i}, user_id="alice", ip="10.0.0.1") for i in range(3)]
    store.create({"n": 9}, user_id="bob")
    data = as_json("sessions", "list", "alice", "--redis", url)
    assert data["count"] == 3
    assert {s["ip"] for s in data["sessions"]} == {"10.0.0.1"}
    assert {s["handle"] for s in data["sessions"]} == {
        i.handle for i in store.list_user_sessions("alice")
    }
    assert "3 sessions of alice" in invoke("sessions", "list", "alice", "--redis", url).stdout
    out = invoke("sessions", "revoke-user", "alice", "--redis", url).stdout
    assert "revoked 3 sessions of alice" in out
    assert store.list_user_sessions("alice") == []
    assert all(store.get(session_id) is None for session_id in made)
    assert len(store.list_user_sessions("bob")) == 1


def test_a_user_is_named_as_json_as_on_the_dashboard(url: str, conn: Connection) -> None:
    # user_id=42 (an int) and user_id="42" (a str) are two users; 42 names the int, as the
    # dashboard's form reads it, and '"42"' the str.
    store = SessionStore(conn)
    store.create({}, user_id=42)
    store.create({}, user_id=42)
    store.create({}, user_id="42")
    listed = as_json("sessions", "list", "42", "--redis", url)
    assert (listed["user"], listed["count"]) == (42, 2)
    assert as_json("sessions", "list", '"42"', "--redis", url)["count"] == 1
    out = invoke("sessions", "revoke-user", "42", "--redis", url).stdout
    assert "revoked 2 sessions of 42" in out
    assert store.list_user_sessions(42) == []
    assert len(store.list_user_sessions("42")) == 1


def test_redis_url_from_the_environment(url: str, conn: Connection) -> None:
    fill_keys(conn)
    result = invoke("keys", "count", "shop:*", "--json", env={"REDIS_URL": url})
    assert json.loads(result.stdout)["count"] == 120


def test_no_redis_named_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "UPSTASH_REDIS_REST_URL", "KV_REST_API_URL"):
        monkeypatch.delenv(name, raising=False)
    result = invoke("keys", "count", "x:*", code=2)  # a setting missing: a usage error
    assert result.stderr.startswith("redkit: error: REDIS_URL is not set")
    assert result.stderr.count("\n") == 1


def test_a_bad_url_or_an_empty_identifier_exits_2_as_a_bad_argument(url: str) -> None:
    bad_url = invoke("keys", "count", "x:*", "--redis", "http//nowhere", code=2)
    assert bad_url.stderr.startswith("redkit: error: the URL is not a usable Redis URL")
    empty = invoke("ratelimit", "reset", "", "--redis", url, "--rate", "10/minute", code=2)
    assert empty.stderr.startswith("redkit: error: ")
    assert "must not be empty" in empty.stderr


def test_key_names_are_printed_escaped(redis_server: EmbeddedRedis) -> None:
    with redis_server.client() as admin:
        admin.flushall()
        admin.set(b"evil:\x1b[31mred\x1b[0m", b"x")
        admin.set(b"bin:\xff", b"x")
    out = invoke("inspect", "--redis", redis_server.url, "--sample-memory", "1").stdout
    assert "\x1b" not in out
    assert "\\x1b[31mred" in out
    assert "bin:" in out
    dry = invoke("keys", "delete", "evil:*", "--redis", redis_server.url).stdout
    assert "\x1b" not in dry


def test_the_console_script_runs(redis_server: EmbeddedRedis) -> None:
    with redis_server.client() as admin:
        admin.flushall()
        admin.set("one:1", "x")
        admin.set("one:2", "x")
    script = shutil.which("redkit", path=str(Path(sys.executable).parent))
    assert script is not None, "the redkit console script is not installed in this venv"
    env = {**os.environ, "PYTHONPATH": str(SRC), "REDIS_URL": redis_server.url}
    done = subprocess.run(
        [script, "keys", "count", "one:*", "--json"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"pattern": "one:*", "count": 2}
    bad = subprocess.run(
        [script, "keys", "delete", "", "--yes"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.startswith("redkit: error: the pattern is empty")


def test_without_click_the_command_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['click'] = None; "
        "from redkit.cli import main; sys.exit(main(['--help']))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    assert (
        done.stderr
        == "redkit: error: the command line needs click and rich: pip install 'redkit[cli]'\n"
    )


def test_a_usage_error_exits_2() -> None:
    result = CliRunner().invoke(redkit_group, ["keys", "count"])
    assert result.exit_code == 2
    assert "Missing argument 'PATTERN'" in result.stderr


def test_fixed_window_reset_names_its_keys(url: str, conn: Connection) -> None:
    limiter = Ratelimit(conn, FixedWindow(2, "1 m"), prefix="fw", ephemeral_cache=False)
    try:
        assert [limiter.limit("carol").success for _ in range(3)] == [True, True, False]
        out = invoke(
            "ratelimit", "reset", "carol", "--prefix", "fw", "--algorithm", "fixed-window",
            "--rate", "2/minute", "--redis", url,
        ).stdout  # fmt: skip
        assert "1 keys deleted" in out
        assert limiter.limit("carol").success
    finally:
        limiter.close()


def test_over_rest_through_the_gateway(redis_server: EmbeddedRedis, rest_gateway: str) -> None:
    with redis_server.client() as admin:
        admin.flushall()
        for i in range(25):
            admin.set(f"r:{i}", "x", ex=600)
    env = {"UPSTASH_REDIS_REST_TOKEN": REST_TOKEN}
    counted = invoke("keys", "count", "r:*", "--json", "--redis", rest_gateway, env=env)
    assert json.loads(counted.stdout)["count"] == 25
    report = json.loads(invoke("inspect", "--json", "--redis", rest_gateway, env=env).stdout)
    assert report["scanned"] == 25
    assert report["ttl"]["<1h"] == 25
    from_env: dict[str, str | None] = {
        "UPSTASH_REDIS_REST_URL": rest_gateway,
        "UPSTASH_REDIS_REST_TOKEN": REST_TOKEN,
        "REDIS_URL": None,  # unset: the Upstash variables come next
    }
    done = invoke("keys", "delete", "r:1*", "--yes", "--json", env=from_env)
    assert json.loads(done.stdout)["deleted"] == 11


def test_stats_show_what_the_fleet_counted(url: str, conn: Connection) -> None:
    cache = Cache(conn, namespace="products", stats="10 s")
    limiter = Ratelimit(conn, FixedWindow(2, "1 m"), prefix="api", stats="10 s")
    try:
        for _ in range(3):
            cache.get_or_set("p:1", lambda: {"name": "lamp"})  # a miss, then 2 hits
        outcomes = [limiter.limit("u").success for _ in range(3)]
    finally:
        cache.close()  # sends what is pending
        limiter.close()
    assert outcomes == [True, True, False]
    data = as_json("stats", "--redis", url, "--since", "1 h")
    entries = {(e["feature"], e["name"]): e for e in data["entries"]}
    assert entries["cache", "products"]["totals"]["hits"] == 2
    assert entries["cache", "products"]["totals"]["misses"] == 1
    assert entries["ratelimit", "api"]["totals"]["allowed"] == 2
    assert entries["ratelimit", "api"]["totals"]["blocked"] == 1
    assert entries["cache", "products"]["processes"] == 1
    only = as_json("stats", "--redis", url, "--feature", "ratelimit")
    assert {e["feature"] for e in only["entries"]} == {"ratelimit"}
    text = invoke("stats", "--redis", url).stdout
    assert "products" in text
    assert "66.7%" in text  # the hit ratio
    assert "api" in text


def test_stats_with_nothing_counted_says_so(url: str) -> None:
    assert "no fleet statistics" in invoke("stats", "--redis", url).stdout


def test_names_given_are_printed_as_text_not_markup(url: str) -> None:
    out = invoke("sessions", "list", "[bold red]mallory[/]", "--redis", url).stdout
    assert "0 sessions of [bold red]mallory[/]" in out
    out = invoke("ratelimit", "usage", "--identifier", "[blink]x", "--redis", url).stdout
    assert "[blink]x: 10 of 10 left" in out
