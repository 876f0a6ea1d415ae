"""The REST driver against redkit's gateway in front of a real Redis.

Its replies must be the redis-py driver's, command for command, so that every flow runs the
same over both; its failures must map to the same typed errors.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from redkit import FixedWindow, Ratelimit, SlidingWindow
from redkit.core.clock import VirtualClock
from redkit.core.errors import (
    BackendTimeout,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
    InvalidArgumentError,
)
from redkit.core.ops import Masters, OnNode, Pipeline, ScriptCall, command
from redkit.core.scripts import Script
from redkit.drivers.connect import Connection
from redkit.drivers.connect import connect as redkit_connect
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.drivers.rest import RestConnection
from redkit.drivers.rest_protocol import KEY_LOCKING_LINE
from support.backends import REST_TOKEN
from support.loop import LoopThread
from support.probes import closed_port
from support.web import serve_asgi

SCRIPT = Script("rest-test", "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}")


@pytest.fixture
def server(redis_server: EmbeddedRedis) -> EmbeddedRedis:
    with redis_server.client() as admin:
        admin.flushall()
        admin.script_flush()
    return redis_server


class Recording(httpx.HTTPTransport):
    """A real transport that keeps every request it sent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return super().handle_request(request)


@pytest.fixture
def recorded(
    rest_gateway: str, server: EmbeddedRedis
) -> Iterator[tuple[RestConnection, Recording]]:
    transport = Recording()
    with RestConnection(
        rest_gateway, token=REST_TOKEN, key_locking=True, transport=transport
    ) as conn:
        yield conn, transport


# Each a list of commands run in order on an empty database; their replies are compared.
SEQUENCES: dict[str, list[tuple[Any, ...]]] = {
    "strings": [
        ("SET", "k", "v"),
        ("SET", "k", "w", "NX"),
        ("SET", "k", "x", "XX", "GET"),
        ("GET", "k"),
        ("GET", "missing"),
        ("GETDEL", "k"),
        ("SET", "n", 5, "PX", 60_000),
        ("INCR", "n"),
        ("INCRBY", "n", 10),
        ("DECRBY", "n", 3),
        ("INCRBYFLOAT", "n", 1.5),
        ("MSET", "a", "1", "b", "2"),
        ("MGET", "a", "b", "nope"),
        ("EXISTS", "a", "b", "c"),
        ("STRLEN", "a"),
        ("APPEND", "a", "é"),
        ("GET", "a"),
        ("TYPE", "a"),
        ("TYPE", "zz"),
        ("SETEX", "e", 100, "v"),
        ("PSETEX", "p", 100_000, "v"),
        ("PERSIST", "p"),
        ("EXPIRE", "a", 100),
        ("PEXPIRE", "b", 100_000, "NX"),
        ("TTL", "missing"),
        ("PTTL", "p"),
        ("DEL", "a", "b", "missing"),
        ("UNLINK", "e"),
        ("GETSET", "k", "1"),
    ],
    "hashes": [
        ("HSET", "h", "f", "1", "g", "2"),
        ("HGET", "h", "f"),
        ("HMGET", "h", "f", "x", "g"),
        ("HGETALL", "h"),
        ("HGETALL", "none"),
        ("HINCRBY", "h", "f", 5),
        ("HDEL", "h", "g"),
        ("HEXISTS", "h", "f"),
        ("HLEN", "h"),
        ("HKEYS", "h"),
        ("HVALS", "h"),
        ("HSETNX", "h", "f", "0"),
        ("HINCRBYFLOAT", "h", "f", 0.5),
    ],
    "sets": [
        ("SADD", "s", "a", "b", "c"),
        ("SREM", "s", "c", "zz"),
        ("SMEMBERS", "s"),
        ("SISMEMBER", "s", "a"),
        ("SMISMEMBER", "s", "a", "x"),
        ("SCARD", "s"),
        ("SMEMBERS", "none"),
    ],
    "sorted sets": [
        ("ZADD", "z", 1, "a", 2.5, "b", 3, "c"),
        ("ZINCRBY", "z", 1, "a"),
        ("ZSCORE", "z", "b"),
        ("ZSCORE", "z", "none"),
        ("ZRANGE", "z", 0, -1),
        ("ZRANGE", "z", 0, -1, "WITHSCORES"),
        ("ZREVRANGE", "z", 0, 0),
        ("ZRANGEBYSCORE", "z", "(1", "+inf", "WITHSCORES"),
        ("ZREVRANGE", "z", 0, -1, "WITHSCORES"),
        ("ZREVRANGEBYSCORE", "z", 9, 0, "WITHSCORES"),
        ("ZCOUNT", "z", 2, "+inf"),
        ("ZCARD", "z"),
        ("ZRANK", "z", "c"),
        ("ZMSCORE", "z", "a", "x"),
        ("ZREMRANGEBYSCORE", "z", "-inf", 2),
        ("ZPOPMAX", "z"),
        ("ZPOPMIN", "z", 5),
        ("ZADD", "z", "NX", 1, "a"),
        ("ZREM", "z", "a"),
    ],
    "lists and server": [
        ("RPUSH", "l", "a", "b"),
        ("LPUSH", "l", "z"),
        ("LRANGE", "l", 0, -1),
        ("LLEN", "l"),
        ("LPOP", "l"),
        ("PING",),
        ("ECHO", "hi"),
        ("DBSIZE",),
        ("SCAN", 0, "COUNT", 100),
        ("SCAN", 0, "MATCH", "l*"),
        ("KEYS", "l*"),
    ],
    "scripts": [
        ("EVAL", "return {1, 'two', {3}, false, redis.status_reply('FINE')}", 0),
        ("EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", 1, "k", "v"),
        ("EVAL", "return 3.9", 0),
        ("EVAL", "return nil", 0),
    ],
}


def replies_of(driver: Any, sequence: list[tuple[Any, ...]]) -> list[Any]:
    replies: list[Any] = []
    for args in sequence:
        try:
            replies.append(driver.execute(command(*args)))
        except CommandError as exc:
            replies.append(("error", type(exc)))
    return replies


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_replies_are_shaped_as_the_redis_py_drivers(
    name: str, server: EmbeddedRedis, rest_conn: RestConnection, standalone_conn: Connection
) -> None:
    sequence = SEQUENCES[name]
    over_resp = replies_of(standalone_conn.sync_driver(), sequence)
    with server.client() as admin:
        admin.flushall()
    over_rest = replies_of(rest_conn.sync_driver(), sequence)
    # The TTLs ran on two different clocks' moments; they only need to be in range.
    for index, args in enumerate(sequence):
        if args[0] in ("PTTL", "TTL") and isinstance(over_resp[index], int):
            assert abs(over_resp[index] - over_rest[index]) < 5_000
            over_rest[index] = over_resp[index]
    assert over_rest == over_resp
    assert [type(r) for r in over_rest] == [type(r) for r in over_resp]


def test_time_and_info_have_the_redis_py_shapes(
    server: EmbeddedRedis, rest_conn: RestConnection, standalone_conn: Connection
) -> None:
    rest, resp = rest_conn.sync_driver(), standalone_conn.sync_driver()
    seconds, micros = rest.execute(command("TIME"))
    assert isinstance(seconds, int)
    assert isinstance(micros, int)
    assert type(resp.execute(command("TIME"))) is tuple
    assert rest.execute(Masters()) == [None]
    cursor, keys = rest.execute(OnNode(None, command("SCAN", 0)))
    assert (cursor, keys) == (0, [])


def test_the_async_driver_gives_the_same_replies(
    server: EmbeddedRedis,
    rest_conn: RestConnection,
    standalone_conn: Connection,
    loop_thread: LoopThread,
) -> None:
    sequence = SEQUENCES["hashes"] + SEQUENCES["sorted sets"]
    over_resp = replies_of(standalone_conn.sync_driver(), sequence)
    with server.client() as admin:
        admin.flushall()

    async def run() -> list[Any]:
        driver = rest_conn.async_driver()
        replies = []
        for args in sequence:
            replies.append(await driver.execute(command(*args)))
        return replies

    assert loop_thread.run(run()) == over_resp


def test_binary_values_come_back_intact_and_non_utf8_arguments_are_refused(
    server: EmbeddedRedis, rest_conn: RestConnection
) -> None:
    driver = rest_conn.sync_driver()
    every_byte = bytes(range(256))
    with server.client() as admin:
        admin.set("bin", every_byte)
        admin.hset("h", "f", b"\xff\x00")
    assert driver.execute(command("GET", "bin")) == every_byte
    assert driver.execute(command("HGETALL", "h")) == {b"f": b"\xff\x00"}
    assert driver.execute(command("SET", "text", "naïve ✓".encode())) is True
    assert driver.execute(command("GET", "text")) == "naïve ✓".encode()
    assert driver.execute(command("SET", "ok", "OK")) is True
    assert driver.execute(command("GET", "ok")) == b"OK"  # the status and the value alike
    with pytest.raises(InvalidArgumentError, match="not UTF-8"):
        driver.execute(command("SET", "bin", every_byte))
    with server.client() as admin:
        assert admin.get("bin") == every_byte  # nothing was sent


def test_pipelines_keep_per_item_errors(
    server: EmbeddedRedis, rest_conn: RestConnection, standalone_conn: Connection
) -> None:
    op = Pipeline(
        (
            command("SET", "s", "x"),
            command("INCR", "s"),
            command("HSET", "h", "f", "1"),
            command("HGETALL", "h"),
            command("NOSUCHCOMMAND"),
        )
    )
    resp = standalone_conn.sync_driver().execute(op)
    with server.client() as admin:
        admin.flushall()
    rest = rest_conn.sync_driver().execute(op)
    assert [type(r) for r in rest] == [type(r) for r in resp]
    assert rest[0] is True
    assert isinstance(rest[1], CommandError)
    assert "not an integer" in str(rest[1])
    assert rest[2:4] == [1, {b"f": b"1"}]
    assert isinstance(rest[4], CommandError)


def test_transactions_apply_together_and_a_discarded_one_applies_nothing(
    server: EmbeddedRedis, rest_conn: RestConnection
) -> None:
    driver = rest_conn.sync_driver()
    call = ScriptCall(SCRIPT, ("counter",), ("arg",))
    done = driver.execute(
        Pipeline((command("SET", "a", "1"), command("INCR", "a"), call), transaction=True)
    )
    assert done == [True, 2, [b"counter", b"arg", 1]]
    # A runtime error does not abort the others, as in Redis.
    mixed = driver.execute(
        Pipeline((command("INCR", "a"), command("HGET", "a", "f")), transaction=True)
    )
    assert mixed[0] == 3
    assert isinstance(mixed[1], CommandError)
    with pytest.raises(CommandError):  # a wrong arity discards the whole transaction
        driver.execute(
            Pipeline((command("INCR", "a"), command("INCR", "a", "b", "c")), transaction=True)
        )
    with server.client() as admin:
        assert admin.get("a") == b"3"


def test_scripts_carry_the_key_locking_line_and_survive_a_script_flush(
    server: EmbeddedRedis, recorded: tuple[RestConnection, Recording]
) -> None:
    conn, transport = recorded
    driver = conn.sync_driver()
    # A script of its own: neither Redis nor the gateway has seen it.
    script = Script("fresh", f"-- {time.time_ns()}\n{SCRIPT.source}")
    call = ScriptCall(script, ("k",), ("a",))
    locked = f"{KEY_LOCKING_LINE}\n{script.source}"
    locked_sha = hashlib.sha1(locked.encode(), usedforsecurity=False).hexdigest()

    assert driver.execute(call) == [b"k", b"a", 1]  # EVALSHA: unknown; then EVAL
    first = [httpx.Response(200, content=r.content).json() for r in transport.sent]
    assert [body[:2] for body in first] == [["EVALSHA", locked_sha], ["EVAL", locked]]
    transport.sent.clear()
    assert driver.execute(call) == [b"k", b"a", 2]  # known now: EVALSHA only
    assert len(transport.sent) == 1
    with server.client() as admin:
        admin.script_flush()
        admin.hset("h", "f", "v")
    # After a flush: NOSCRIPT then EVAL (or the gateway re-sends the text it knows itself).
    assert driver.execute(call) == [b"k", b"a", 3]
    with pytest.raises(CommandError, match="WRONGTYPE"):
        driver.execute(ScriptCall(script, ("h",), ("a",)))


def test_the_sync_token_is_carried_from_reply_to_request(
    recorded: tuple[RestConnection, Recording],
) -> None:
    conn, transport = recorded
    assert conn.sync_token is None
    conn.sync_driver().execute(command("SET", "a", "1"))
    first = conn.sync_token
    assert first
    conn.sync_driver().execute(command("GET", "a"))
    assert "upstash-sync-token" not in transport.sent[0].headers
    assert transport.sent[1].headers["upstash-sync-token"] == first
    assert conn.sync_token != first  # the gateway's counter moved on


def test_a_wrong_token_is_a_configuration_error(rest_gateway: str) -> None:
    conn = RestConnection(rest_gateway, token="not-the-token")
    with conn, pytest.raises(ConfigurationError, match="refused the token") as info:
        conn.sync_driver().execute(command("PING"))
    assert info.value.variable == "token"
    assert "not-the-token" not in str(info.value)


def test_a_hung_server_times_out(hung_port: int, loop_thread: LoopThread) -> None:
    conn = RestConnection(f"http://127.0.0.1:{hung_port}", token="t", socket_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        conn.sync_driver().execute(command("GET", "k"))

    async def run() -> None:
        with pytest.raises(BackendTimeout):
            await conn.async_driver(timeout=0.2).execute(command("GET", "k"))
        await conn.aclose()

    loop_thread.run(run())
    assert time.monotonic() - started < 30  # bounded, not hung (no timing precision asked)


def test_a_closed_port_is_unavailable_after_a_few_retries() -> None:
    with (
        RestConnection(
            f"http://127.0.0.1:{closed_port()}", token="t", retries=2, retry_backoff=0.01
        ) as conn,
        pytest.raises(BackendUnavailable, match="tried 3 times"),
    ):
        conn.sync_driver().execute(command("GET", "k"))


# -- the JS-compatible key layout, shared with upstash-ratelimit ---------------------------


@pytest.mark.parametrize("algorithm", ["fixed", "sliding"])
def test_redkit_and_upstash_ratelimit_share_one_counter(
    algorithm: str, rest_gateway: str, rest_conn: RestConnection, server: EmbeddedRedis
) -> None:
    upstash_ratelimit = pytest.importorskip("upstash_ratelimit")
    upstash_redis = pytest.importorskip("upstash_redis")
    window_s = 1000  # a boundary between the calls below is (almost) impossible; see below
    theirs_limiter = (
        upstash_ratelimit.FixedWindow if algorithm == "fixed" else upstash_ratelimit.SlidingWindow
    )(max_requests=6, window=window_s)
    ours_limiter = (FixedWindow if algorithm == "fixed" else SlidingWindow)(6, f"{window_s} s")
    prefix = "shared"
    client = upstash_redis.Redis(url=rest_gateway, token=REST_TOKEN, allow_telemetry=False)
    try:
        theirs = upstash_ratelimit.Ratelimit(client, theirs_limiter, prefix=prefix)
        ours = Ratelimit(rest_conn, ours_limiter, prefix=prefix, ephemeral_cache=False)
        bucket = int(time.time() * 1000) // (window_s * 1000)
        for _ in range(3):
            assert theirs.limit("user-1").allowed
            assert ours.limit("user-1").success
        assert not ours.limit("user-1").success  # the 7th request, whoever sends it
        assert not theirs.limit("user-1").allowed
        assert ours.get_remaining("user-1").remaining == 0
        if int(time.time() * 1000) // (window_s * 1000) != bucket:
            pytest.skip("a window boundary passed during the test")
        with server.client() as admin:
            keys = {k.decode() for k in admin.keys("*")}
        assert keys == {f"{prefix}:user-1:{bucket}"}  # no braces, one counter for both
    finally:
        client.close()


def test_cache_entries_written_over_rest_and_directly_read_each_other(
    server: EmbeddedRedis, rest_conn: RestConnection
) -> None:
    """Over REST the cache stores its entries as text; a direct client reads them, and back."""
    from redkit import Cache

    direct = server.connect()
    over_rest = Cache(rest_conn, namespace="both")
    plain = Cache(direct, namespace="both", serializer="msgpack")
    assert over_rest.set("a", {"from": "rest"})
    assert Cache(direct, namespace="both").get("a") == {"from": "rest"}
    with server.client() as admin:
        assert admin.get("both:g0:a").startswith(b"rk64:")  # the text form, not 0xFF...
    assert plain.set("b", [1, b"\xff\x00".hex()])  # msgpack: a binary entry, written directly
    assert Cache(rest_conn, namespace="both", serializer="msgpack").get("b") == [1, "ff00"]
    with server.client() as admin:
        admin.set("both:g0:c", b"rk64:not base64!")
    assert over_rest.get("c", default="missing") == "missing"  # a corrupt text form is a miss
    assert over_rest.stats.corrupt == 1
    direct.close()


@pytest.fixture
def cluster_gateway(redis_cluster: EmbeddedCluster) -> Iterator[str]:
    """The gateway in front of the 3-master cluster, emptied; its base URL."""
    from redkit.gateway import Gateway

    redis_cluster.flushall()
    gateway = Gateway.for_redis(redis_cluster.url, REST_TOKEN)
    with serve_asgi(gateway) as base:
        yield base


def test_a_gateway_in_front_of_a_cluster_needs_cluster_true_and_says_so(
    cluster_gateway: str, loop_thread: LoopThread
) -> None:
    """Multi-key scripts over REST to a cluster: refused naming ``cluster=True``, then served."""
    from redkit import AsyncRatelimit, SessionStore

    plain = RestConnection(cluster_gateway, token=REST_TOKEN)
    assert not plain.is_cluster
    # The sliding window reads this window's and the previous one's counters: two slots
    # unless the identifier is a hash tag.
    with pytest.raises(CommandError, match=r"CROSSSLOT.*connect with cluster=True"):
        Ratelimit(plain, SlidingWindow(5, "10 s"), ephemeral_cache=False).limit("u")

    async def refused() -> None:
        limiter = AsyncRatelimit(plain, SlidingWindow(5, "10 s"), ephemeral_cache=False)
        await limiter.limit("u")

    with pytest.raises(CommandError, match="cluster=True"):
        loop_thread.run(refused())
    loop_thread.run(plain.aclose())
    plain.close()

    conn = redkit_connect(cluster_gateway, token=REST_TOKEN, cluster=True)
    assert isinstance(conn, RestConnection)
    assert conn.is_cluster
    # A clock that stands still mid-window: on the real one the three calls could straddle a
    # window's end, where the previous window's weighted (floored) count lets a third one in.
    clock = VirtualClock(1_700_000_005_000)
    try:
        sync = Ratelimit(conn, SlidingWindow(2, "10 s"), ephemeral_cache=False, clock=clock)
        assert [sync.limit("u").success for _ in range(3)] == [True, True, False]

        async def served() -> list[bool]:
            limiter = AsyncRatelimit(
                conn, SlidingWindow(2, "10 s"), ephemeral_cache=False, clock=clock
            )
            return [(await limiter.limit("v")).success for _ in range(3)]

        assert loop_thread.run(served()) == [True, True, False]
        # Sessions keep a record and a per-user index: served over the cluster too.
        store = SessionStore(conn)
        session_id = store.create({"n": 1}, user_id="alice")
        loaded = store.get(session_id)
        assert loaded is not None
        assert loaded["n"] == 1
        handles = [info.handle for info in store.list_user_sessions("alice")]
        assert handles == [session_id.split(".")[0]]
    finally:
        loop_thread.run(conn.aclose())
        conn.close()


def test_cluster_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="cluster must be True or False"):
        RestConnection("http://127.0.0.1:1", token="t", cluster="yes")  # type: ignore[arg-type]
