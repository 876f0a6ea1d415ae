"""The keyspace report and keys by pattern (redkit.ops) on real servers: standalone, cluster,
sync and async, and over REST through the gateway."""

from __future__ import annotations

from typing import Any

import pytest
import redis.cluster

from redkit.core.errors import BackendUnavailable, InvalidArgumentError
from redkit.core.keys import glob_escape
from redkit.core.ops import Pipeline, command
from redkit.drivers.embedded import EmbeddedRedis
from redkit.ops import (
    KeyspaceReport,
    acount_keys,
    adelete_keys,
    ascan_keyspace,
    count_keys,
    delete_keys,
    scan_keyspace,
)
from redkit.sessions import AsyncSessionStore, SessionStore
from support.backends import BackendCase

#: A key that is not UTF-8 (not sent over REST, whose JSON carries text only).
BINARY = b"bin:\xff\xfe:k"
#: Keys whose names hold glob characters, which a pattern must escape to match literally.
GLOBBY = ["odd:*:1", "odd:?:2", "odd:[x]:3", "odd:\\:4"]


def masters(backend: BackendCase) -> list[Any]:
    """A plain client of each master (binary key names work there on a cluster too)."""
    admin: Any = backend.admin
    if isinstance(admin, redis.cluster.RedisCluster):
        return [node.redis_connection for node in admin.get_primaries()]
    return [admin]


def memory_by_key(backend: BackendCase) -> dict[bytes, int]:
    """``MEMORY USAGE`` of every key, asked of the master that holds it."""
    return {
        key: int(client.memory_usage(key, samples=5))
        for client in masters(backend)
        for key in client.scan_iter(count=1000)
    }


def scan(backend: BackendCase, **options: Any) -> KeyspaceReport:
    if backend.is_async:
        return backend.loop.run(ascan_keyspace(backend.conn, **options))
    return scan_keyspace(backend.conn, **options)


def fill(backend: BackendCase) -> dict[str, int]:
    """Write a known keyspace through redkit; return what each prefix holds."""
    many = [command("SET", f"user:{i}:profile", "p" * (10 + i % 50)) for i in range(300)]
    many += [command("SET", f"tmp:{i}", "t", "EX", 600) for i in range(40)]  # < 1 h
    many += [command("HSET", f"user:{i}:prefs", "theme", "dark") for i in range(20)]
    many += [command("SADD", "tags:all", "a", "b", "c"), command("EXPIRE", "tags:all", 2 * 86400)]
    many += [command("SET", name, "g") for name in GLOBBY]
    many.append(command("SET", "plain", "no separator"))
    backend.execute(Pipeline(tuple(many)))
    store = (AsyncSessionStore if backend.is_async else SessionStore)(backend.conn)
    for _ in range(3):  # each session: its record and the user's index, both with a TTL
        backend.call(store.create, {"n": 1}, user_id="alice")
    counts = {"user:": 320, "tmp:": 40, "tags:": 1, "odd:": 4, "plain": 1}
    counts["session:"] = len([k for k in backend.all_keys() if k.startswith("session:")])
    if not backend.is_rest:
        backend.admin.set(BINARY, b"raw")
        counts["bin:"] = 1
    return counts


def test_the_report_counts_every_key_exactly(backend: BackendCase) -> None:
    counts = fill(backend)
    calls: list[tuple[int, int]] = []
    report = scan(backend, count=50, pause=0, sample_memory=1, progress=lambda *a: calls.append(a))
    total = sum(counts.values())
    assert report.total_keys == report.scanned == report.tree.keys == total
    assert sum(m.dbsize for m in report.masters) == total
    assert len(report.masters) == (3 if backend.is_cluster else 1)
    children = {child.prefix: child.keys for child in report.tree.children}
    for prefix, number in counts.items():
        if prefix != "plain":
            assert children[prefix] == number, prefix
    user = next(child for child in report.tree.children if child.prefix == "user:")
    assert user.keys == 320
    assert len(user.children) == 21
    assert user.children[-1].prefix == "user:(other)"
    assert user.children[-1].keys == 280
    assert sum(c.keys for c in user.children) == 320
    sessions = counts["session:"]
    assert report.ttl["<1h"] == 40
    assert report.ttl["<7d"] == 1  # tags:all
    session_keys = [(c, k) for c in masters(backend) for k in c.scan_iter(match="session:*")]
    no_ttl = sum(1 for client, key in session_keys if client.pttl(key) == -1)
    assert sessions == len(session_keys)
    assert report.keys_without_ttl == total - 40 - 1 - sessions + no_ttl
    assert sum(report.ttl.values()) == total
    assert report.types["hash"] == 20 + 3  # the prefs, and the sessions' records
    assert report.types["set"] == 1
    assert sum(report.types.values()) == total
    # Progress: after each batch, rising, ending at (scanned, total).
    assert calls == sorted(calls)
    assert calls[-1] == (total, total)
    if not backend.is_rest:
        assert any(child.prefix == "bin:" for child in report.tree.children)
        binary = next(child for child in report.tree.children if child.prefix == "bin:")
        assert binary.children[0].prefix == "bin:\\xff\\xfe:"


def test_memory_every_key_is_the_sum_of_memory_usage(backend: BackendCase) -> None:
    fill(backend)
    report = scan(backend, sample_memory=1, pause=0)
    memory = memory_by_key(backend)
    assert report.memory_unavailable is None
    assert report.memory_sampled == len(memory)
    assert report.memory_bytes == sum(memory.values())
    sizes = sorted(memory.values(), reverse=True)
    assert [big.memory_bytes for big in report.biggest] == sizes[:20]


def test_sampled_memory_is_within_a_quarter_of_the_sum(backend: BackendCase) -> None:
    # Sampling every 5th key scales each prefix's sampled bytes by its key count: on these
    # similar keys the estimate stays within 25 % of the sum of MEMORY USAGE (the stated
    # tolerance, docs/operations.md).
    fill(backend)
    memory = memory_by_key(backend)
    report = scan(backend, sample_memory=5, pause=0)
    exact = sum(memory.values())
    assert report.memory_sampled == len(memory) // 5
    assert report.memory_bytes is not None
    assert abs(report.memory_bytes - exact) <= 0.25 * exact
    user = next(child for child in report.tree.children if child.prefix == "user:")
    user_exact = sum(size for key, size in memory.items() if key.startswith(b"user:"))
    assert user.memory_bytes is not None
    assert abs(user.memory_bytes - user_exact) <= 0.25 * user_exact


def test_match_reports_part_of_the_keyspace_with_glob_characters_literal(
    backend: BackendCase,
) -> None:
    fill(backend)
    report = scan(backend, match=glob_escape("odd:[x]:") + "*", pause=0)
    assert report.scanned == 1
    assert report.tree.keys == 1
    assert report.match == "odd:\\[x\\]:*"
    assert report.total_keys > 1  # DBSIZE is the whole keyspace


def test_count_and_delete_by_pattern(backend: BackendCase) -> None:
    fill(backend)
    sync = not backend.is_async

    def count(pattern: str) -> int:
        return (
            count_keys(backend.conn, pattern)
            if sync
            else backend.loop.run(acount_keys(backend.conn, pattern))
        )

    def delete(pattern: str, **options: Any) -> Any:
        if sync:
            return delete_keys(backend.conn, pattern, **options)
        return backend.loop.run(adelete_keys(backend.conn, pattern, **options))

    assert count("user:*") == 320
    assert count("user:*:prefs") == 20
    assert count(glob_escape("odd:*:1")) == 1
    assert count("odd:*") == 4
    dry = delete("tmp:*", batch=7)
    assert dry.dry_run
    assert dry.matched == 40
    assert dry.deleted == 0
    assert len(dry.examples) == 20
    assert all(key.startswith("tmp:") for key in dry.examples)
    assert count("tmp:*") == 40  # a dry run deletes nothing
    progress: list[tuple[int, int]] = []
    done = delete("tmp:*", dry_run=False, batch=7, progress=lambda *a: progress.append(a))
    assert (done.matched, done.deleted, done.dry_run) == (40, 40, False)
    assert progress[-1] == (40, 40)
    assert count("tmp:*") == 0
    assert count("user:*") == 320  # nothing else went
    literal = delete(glob_escape("odd:*:1"), dry_run=False)
    assert literal.deleted == 1
    assert count("odd:*") == 3


@pytest.mark.parametrize("pattern", ["", "*", "**", "?*", "*?*", "[a-z]*", "[*]*", "?"])
def test_a_pattern_of_every_key_is_refused_without_everything(pattern: str) -> None:
    # A pattern of wildcards alone ("?*" is every key but the empty one) may match them all.
    with pytest.raises(InvalidArgumentError, match="pattern"):
        delete_keys("redis://127.0.0.1:1", pattern, dry_run=False)
    with pytest.raises(InvalidArgumentError, match="pattern"):
        delete_keys("redis://127.0.0.1:1", pattern)


@pytest.mark.parametrize("pattern", ["a*", "*:1", "[a-z]x*", "\\**", "\\?"])
def test_a_pattern_with_a_literal_character_is_accepted(pattern: str) -> None:
    # Accepted: it goes on to the server, which is out of reach here.
    with pytest.raises(BackendUnavailable):
        delete_keys("redis://127.0.0.1:1", pattern)


@pytest.mark.parametrize("pause", [-1, float("nan"), 61, "1"])
def test_a_bad_pause_is_refused(pause: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="pause"):
        delete_keys("redis://127.0.0.1:1", "tmp:*", dry_run=False, pause=pause)


@pytest.mark.parametrize("flag", ["dry_run", "everything"])
def test_a_flag_that_is_not_a_bool_is_refused(flag: str) -> None:
    # everything="no" is truthy: it would have deleted every key.
    options: dict[str, Any] = {"dry_run": False, flag: "no"}
    with pytest.raises(InvalidArgumentError, match=flag):
        delete_keys("redis://127.0.0.1:1", "*", **options)


def test_a_pattern_that_is_not_a_string_is_refused_as_such() -> None:
    with pytest.raises(InvalidArgumentError, match="must be a string"):
        count_keys("redis://127.0.0.1:1", b"tmp:*")  # type: ignore[arg-type]


def test_everything_deletes_every_key(backend: BackendCase) -> None:
    total = sum(fill(backend).values())
    if backend.is_async:
        done = backend.loop.run(adelete_keys(backend.conn, "*", dry_run=False, everything=True))
    else:
        done = delete_keys(backend.conn, "*", dry_run=False, everything=True)
    assert done.deleted == total
    assert backend.all_keys() == set()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("count", 0),
        ("pause", -1),
        ("sample_memory", -1),
        ("separator", ""),
        ("depth", -1),
        ("match", ""),  # would scan the empty key alone: the whole keyspace is None
        ("match", 5),
    ],
)
def test_bad_options_are_refused_before_any_round_trip(option: str, value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=option):
        scan_keyspace("redis://127.0.0.1:1", **{option: value})


def test_memory_refused_by_an_acl_degrades_with_the_reason(redis_server: EmbeddedRedis) -> None:
    import redkit

    with redis_server.client() as admin:
        admin.flushall()
        admin.set("a:1", "x")
        admin.set("a:2", "y", px=30_000)
        admin.acl_setuser(
            "nomemory", enabled=True, passwords=["+pw"], keys=["~*"], commands=["+@all", "-memory"]
        )
        try:
            host, port = redis_server.url.removeprefix("redis://").split(":")
            with redkit.connect(f"redis://nomemory:pw@{host}:{port}") as conn:
                report = scan_keyspace(conn, sample_memory=1)
        finally:
            admin.acl_deluser("nomemory")
    assert report.scanned == 2
    assert report.ttl["<1m"] == 1
    assert report.memory_bytes is None
    assert report.tree.memory_bytes is None
    assert report.memory_unavailable is not None
    assert "MEMORY" in report.memory_unavailable
    assert report.to_dict()["memory_unavailable"] == report.memory_unavailable


def test_the_report_is_json_ready(backend: BackendCase) -> None:
    import json

    fill(backend)
    data = scan(backend, pause=0).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["keys_without_ttl"] == data["ttl"]["none"]
    assert {"total_keys", "scanned", "masters", "tree", "ttl", "types", "biggest"} <= set(data)


def test_a_url_gets_a_connection_of_its_own_closed_after(redis_server: EmbeddedRedis) -> None:
    with redis_server.client() as admin:
        admin.flushall()
        admin.set("u:1", "x")
    assert scan_keyspace(redis_server.url).scanned == 1
    assert count_keys(redis_server.url, "u:*") == 1
    assert delete_keys(redis_server.url, "u:*", dry_run=False).deleted == 1


def test_each_page_is_one_script_call_on_every_topology(backend: BackendCase) -> None:
    # Standalone and REST declare the page's keys; a cluster node's page spans slots, so its
    # keys go as arguments to the node that holds them. Either way: one call a page, and no
    # TYPE sent outside it.
    total = sum(fill(backend).values())
    backend.reset_command_stats()
    report = scan(backend, count=100, pause=0)
    assert report.scanned == total
    scripted = backend.command_calls("evalsha")
    assert scripted >= total // 100
    assert backend.command_calls("type") == total  # the script's own calls count here too
    pages = backend.command_calls("scan")
    # Failed tries (NOSCRIPT, then CROSSSLOT on a cluster) are a few calls, once.
    assert pages <= scripted + backend.command_calls("eval") <= pages + 6
