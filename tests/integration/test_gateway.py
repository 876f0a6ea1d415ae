"""The Upstash REST gateway, driven by the official Upstash SDKs and by plain HTTP.

Every test runs on a standalone Redis and on a 3-master cluster (the ``server`` fixture),
behind a gateway served by uvicorn on loopback. Keys that one command or one transaction
uses together share a hash tag, as a cluster requires.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from upstash_ratelimit import FixedWindow, Ratelimit, SlidingWindow, TokenBucket
from upstash_ratelimit.asyncio import Ratelimit as AsyncRatelimit
from upstash_redis import Redis
from upstash_redis.asyncio import Redis as AsyncRedis
from upstash_redis.errors import UpstashError

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.errors import BackendError, RedkitError, UpstreamError
from redkit.gateway import Gateway, TokenRule
from redkit.gateway.upstream import CrossSlotError, open_upstream
from support.probes import closed_port
from support.web import serve_asgi

TOKEN = "test-token-0123456789"
READ_ONLY = "test-read-only-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

KEY_LOCKING = "#!lua flags=allow-key-locking\n"


@pytest.fixture
def gateway(server: EmbeddedRedis | EmbeddedCluster) -> Iterator[tuple[Gateway, str]]:
    app = Gateway.for_redis(server.url, TOKEN, read_only_token=READ_ONLY)
    with serve_asgi(app) as base:
        yield app, base


@pytest.fixture
def url(gateway: tuple[Gateway, str]) -> str:
    return gateway[1]


@pytest.fixture
def redis(url: str) -> Iterator[Redis]:
    client = Redis(url, TOKEN, rest_retries=0, allow_telemetry=False)
    yield client
    client.close()


def post(url: str, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.post(url + path, json=body, headers=headers, timeout=30, **kwargs)


# -- the official client: commands ---------------------------------------------------------


def test_strings(redis: Redis) -> None:
    assert redis.set("s", "héllo") is True
    assert redis.get("s") == "héllo"
    assert redis.get("missing") is None
    assert redis.set("s", "x", nx=True) is False
    assert redis.append("s", "!") == 7
    assert redis.getrange("s", 0, 2) == "hé"  # byte offsets
    assert redis.incr("n") == 1
    assert redis.incrby("n", 41) == 42
    assert redis.incrbyfloat("n", 0.5) == pytest.approx(42.5)
    assert redis.mset({"{m}a": "1", "{m}b": "2"}) is True
    assert redis.mget("{m}a", "{m}b", "{m}c") == ["1", "2", None]
    assert redis.getdel("{m}a") == "1"
    assert redis.exists("{m}a", "{m}b") == 1
    assert redis.type("s") == "string"
    assert redis.delete("s") == 1
    assert redis.echo("ok?") == "ok?"
    assert redis.ping() == "PONG"
    # "OK" as a value comes back as "OK" too (the base64 rule's one exception).
    redis.set("ok", "OK")
    assert redis.get("ok") == "OK"


def test_hashes_lists_sets_sorted_sets(redis: Redis) -> None:
    assert redis.hset("h", values={"a": "1", "b": "2"}) == 2
    assert redis.hgetall("h") == {"a": "1", "b": "2"}
    assert redis.hincrby("h", "a", 10) == 11
    assert redis.hget("h", "a") == "11"
    assert sorted(redis.hkeys("h")) == ["a", "b"]
    assert redis.lpush("l", "a", "b", "c") == 3
    assert redis.lrange("l", 0, -1) == ["c", "b", "a"]
    assert redis.rpop("l") == "a"
    assert redis.llen("l") == 2
    assert redis.sadd("set", "x", "y", "z") == 3
    assert sorted(redis.smembers("set")) == ["x", "y", "z"]
    assert redis.sismember("set", "y") == 1
    assert redis.srem("set", "y") == 1
    assert redis.zadd("z", {"a": 1, "b": 2.5, "c": 3}) == 3
    assert redis.zrange("z", 0, -1) == ["a", "b", "c"]
    assert redis.zrange("z", 0, -1, withscores=True) == [("a", 1.0), ("b", 2.5), ("c", 3.0)]
    assert redis.zscore("z", "b") == pytest.approx(2.5)
    assert redis.zincrby("z", 1, "a") == pytest.approx(2.0)
    assert redis.zcard("z") == 3
    assert redis.zrem("z", "c") == 1


def test_expiry(redis: Redis) -> None:
    redis.set("e", "v", ex=100)
    assert 0 < redis.ttl("e") <= 100
    assert redis.persist("e") == 1
    assert redis.ttl("e") == -1
    assert redis.expire("e", 50) is True
    assert 0 < redis.pttl("e") <= 50_000
    assert redis.ttl("missing") == -2


def test_scan_walks_every_key(redis: Redis) -> None:
    names = {f"k{i}" for i in range(60)}
    for name in names:
        redis.set(name, "1")
    redis.set("other", "1")
    seen: set[str] = set()
    cursor = 0
    for _ in range(1000):
        cursor, keys = redis.scan(cursor, match="k*", count=10)
        seen.update(keys)
        if cursor == 0:
            break
    assert seen == names
    assert sorted(redis.keys("k1*")) == sorted(n for n in names if n.startswith("k1"))
    assert redis.dbsize() == 61


def test_scripts(redis: Redis) -> None:
    plain = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    assert redis.eval(plain, ["{c}n"], ["5"]) == 5
    sha = redis.script_load(plain)
    assert sha == hashlib.sha1(plain.encode()).hexdigest()
    assert redis.evalsha(sha, ["{c}n"], ["2"]) == 7
    with pytest.raises(UpstashError, match="NOSCRIPT"):
        redis.evalsha("0" * 40, [], [])
    assert redis.eval("return {1, 'two', false, {3}}", [], []) == [1, "two", None, [3]]
    with pytest.raises(UpstashError, match="boom"):
        redis.eval("return redis.error_reply('ERR boom')", [], [])


def test_allow_key_locking_scripts(redis: Redis) -> None:
    script = KEY_LOCKING + "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    assert redis.eval(script, ["k"], ["3"]) == 3
    # The SHA the client computes is the SHA of what it sent, flag line included.
    sent_sha = hashlib.sha1(script.encode()).hexdigest()
    assert redis.evalsha(sent_sha, ["k"], ["1"]) == 4
    assert redis.script_load(script) == sent_sha
    assert redis.script_exists(sent_sha, "0" * 40) == [1, 0]
    # Flushed from Redis: the gateway re-sends the source it remembers.
    assert redis.script_flush() is True
    assert redis.evalsha(sent_sha, ["k"], ["1"]) == 5
    # Error lines keep their numbers: the flag line becomes an empty line. Redis 6.2 says
    # "@user_script:2: @user_script: 2: Unknown Redis command", Redis 7 and Valkey 8
    # "Unknown command called from script script: <sha>, on @user_script:2.".
    with pytest.raises(UpstashError, match=r"@user_script:2\b"):
        redis.eval(KEY_LOCKING + "return redis.call('NOPE')", [], [])


def test_pipeline(redis: Redis) -> None:
    pipe = redis.pipeline()
    pipe.set("a", "1")
    pipe.incr("a")
    pipe.set("b", "x")  # another slot on a cluster: a pipeline is not a transaction
    pipe.get("b")
    pipe.hset("h", values={"f": "v"})
    pipe.hgetall("h")
    assert pipe.exec() == [True, 2, True, "x", 1, {"f": "v"}]


def test_pipeline_items_fail_alone(url: str) -> None:
    response = post(
        url,
        "/pipeline",
        [["SET", "a", "1"], ["LPUSH", "a", "x"], ["NOSUCHCOMMAND"], ["FLUSHALL"], ["GET", "a"]],
    )
    assert response.status_code == 200
    items = response.json()
    assert items[0] == {"result": "OK"}
    assert items[1]["error"].startswith("WRONGTYPE")
    assert items[2]["error"].startswith("ERR unknown command")
    assert "not allowed" in items[3]["error"]
    assert items[4] == {"result": "1"}


def test_transaction(redis: Redis) -> None:
    tx = redis.multi()
    tx.set("{t}a", "1")
    tx.incr("{t}a")
    tx.get("{t}a")
    assert tx.exec() == [True, 2, "2"]


def test_transaction_runtime_error_is_an_item(url: str) -> None:
    response = post(url, "/multi-exec", [["SET", "{t}a", "x"], ["INCR", "{t}a"], ["GET", "{t}a"]])
    assert response.status_code == 200
    items = response.json()
    assert items[0] == {"result": "OK"}
    assert "not an integer" in items[1]["error"]
    assert items[2] == {"result": "x"}


def test_discarded_transaction_is_one_error(url: str, redis: Redis) -> None:
    response = post(url, "/multi-exec", [["SET", "{t}a", "1"], ["SET", "{t}b"]])
    assert response.status_code == 400
    body = response.json()
    assert list(body) == ["error"]
    assert body["error"].startswith("EXECABORT")
    assert "wrong number of arguments" in body["error"]
    assert redis.get("{t}a") is None  # nothing applied
    # Commands the gateway refuses discard the transaction as well.
    response = post(url, "/multi-exec", [["SET", "{t}a", "1"], ["BLPOP", "{t}l", 0]])
    assert response.status_code == 400
    assert "blocking" in response.json()["error"]
    assert redis.get("{t}a") is None


def test_transaction_with_a_key_locking_script(url: str) -> None:
    script = KEY_LOCKING + "return redis.call('INCR', KEYS[1])"
    sha = hashlib.sha1(script.encode()).hexdigest()
    first = post(url, "/", ["EVAL", script, 1, "{t}n"])
    assert first.json() == {"result": 1}
    response = post(url, "/multi-exec", [["EVALSHA", sha, 1, "{t}n"], ["GET", "{t}n"]])
    assert response.json() == [{"result": 2}, {"result": "2"}]


def test_binary_values_through_base64(url: str) -> None:
    value = bytes(range(256))
    stored = httpx.post(f"{url}/set/bin", content=value, headers=AUTH)
    assert stored.json() == {"result": "OK"}
    got = httpx.get(f"{url}/get/bin", headers={**AUTH, "Upstash-Encoding": "base64"})
    assert base64.b64decode(got.json()["result"]) == value
    # Without base64 the invalid UTF-8 becomes U+FFFD.
    plain = httpx.get(f"{url}/get/bin", headers=AUTH).json()["result"]
    assert "\ufffd" in plain
    # Every string is encoded, recursively, but "OK", integers and null are not.
    response = post(
        url,
        "/pipeline",
        [["SET", "{b}x", "OK"], ["MGET", "{b}x", "{b}none"], ["INCR", "{b}n"], ["ECHO", "hé"]],
        headers={"Upstash-Encoding": "base64"},
    )
    assert response.json() == [
        {"result": "OK"},
        {"result": ["OK", None]},
        {"result": 1},
        {"result": base64.b64encode("hé".encode()).decode()},
    ]
    # Errors are never encoded.
    error = post(url, "/", ["INCR", "{b}x"], headers={"Upstash-Encoding": "base64"})
    assert error.status_code == 400
    assert "not an integer" in error.json()["error"]


def test_unicode_round_trips_through_the_client(redis: Redis) -> None:
    redis.set("u", "日本語 ✓ \u0000 end")
    assert redis.get("u") == "日本語 ✓ \u0000 end"


def test_sync_token_header(url: str, redis: Redis) -> None:
    first = post(url, "/", ["PING"])
    token = first.headers["upstash-sync-token"]
    second = post(url, "/", ["PING"], headers={"upstash-sync-token": token})
    assert second.status_code == 200
    assert second.headers["upstash-sync-token"]
    redis.set("rw", "1")  # the client sends back the token it was given
    assert redis._sync_token
    assert redis.get("rw") == "1"


# -- the official async client -------------------------------------------------------------


def test_async_client(url: str) -> None:
    async def main() -> list[Any]:
        async with AsyncRedis(url, TOKEN, rest_retries=0, allow_telemetry=False) as redis:
            out: list[Any] = [await redis.set("a", "1"), await redis.incr("a")]
            out.append(await redis.hset("h", values={"f": "v"}))
            out.append(await redis.hgetall("h"))
            pipe = redis.pipeline()
            pipe.get("a")
            pipe.lpush("l", "x")
            out.append(await pipe.exec())
            tx = redis.multi()
            tx.incr("{t}x")
            tx.incr("{t}x")
            out.append(await tx.exec())
            script = KEY_LOCKING + "return ARGV[1]"
            out.append(await redis.eval(script, [], ["hey"]))
            out.append(
                await redis.evalsha(hashlib.sha1(script.encode()).hexdigest(), [], ["again"])
            )
            with pytest.raises(UpstashError, match="WRONGTYPE"):
                await redis.lpush("a", "x")
            return out

    assert asyncio.run(main()) == [True, 2, 1, {"f": "v"}, ["2", 1], [1, 2], "hey", "again"]


# -- the official rate limiter ---------------------------------------------------------------


@pytest.mark.parametrize(
    "limiter",
    [FixedWindow(3, 60), SlidingWindow(3, 60), TokenBucket(3, 1, 3600)],
    ids=["fixed-window", "sliding-window", "token-bucket"],
)
def test_upstash_ratelimit(redis: Redis, url: str, limiter: Any) -> None:
    # Their scripts begin with the allow-key-locking line, which stock Redis rejects.
    assert "allow-key-locking" in limiter.SCRIPT
    # A hash tag on the identifier keeps a sliding window's two keys in one cluster slot.
    ratelimit = Ratelimit(redis, limiter, prefix="rl")
    results = [ratelimit.limit("{user:1}") for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.remaining for r in results] == [2, 1, 0, 0]
    assert ratelimit.get_remaining("{user:1}") == 0
    assert ratelimit.limit("{user:2}").allowed  # another identifier, its own limit

    async def run_async() -> list[bool]:
        async with AsyncRedis(url, TOKEN, rest_retries=0, allow_telemetry=False) as client:
            limits = AsyncRatelimit(client, limiter, prefix="rl-async")
            return [(await limits.limit("{user:1}")).allowed for _ in range(4)]

    assert asyncio.run(run_async()) == [True, True, True, False]


# -- auth ------------------------------------------------------------------------------------


def test_missing_and_wrong_tokens(url: str) -> None:
    missing = httpx.post(url + "/", json=["PING"])
    assert missing.status_code == 401
    assert missing.json() == {"error": "Unauthorized"}
    wrong = httpx.post(url + "/", json=["PING"], headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "error" in wrong.json()
    not_bearer = httpx.post(url + "/", json=["PING"], headers={"Authorization": f"Basic {TOKEN}"})
    assert not_bearer.status_code == 401
    assert httpx.get(f"{url}/ping?_token=nope").status_code == 401
    with Redis(url, "nope", rest_retries=0) as stranger, pytest.raises(UpstashError):
        stranger.get("x")


def test_token_in_the_query(url: str) -> None:
    assert httpx.get(f"{url}/ping?_token={TOKEN}").json() == {"result": "PONG"}
    response = httpx.post(f"{url}/?_token={TOKEN}", json=["ECHO", "hi"])
    assert response.json() == {"result": "hi"}


def test_read_only_token(url: str, redis: Redis) -> None:
    redis.set("k", "v")
    reader = Redis(url, READ_ONLY, rest_retries=0, allow_telemetry=False)
    try:
        assert reader.get("k") == "v"
        assert reader.exists("k") == 1
        for write in (
            lambda: reader.set("k", "w"),
            lambda: reader.delete("k"),
            lambda: reader.eval("return 1", [], []),
            lambda: reader.scan(0),
            lambda: reader.keys("*"),
        ):
            with pytest.raises(UpstashError, match="NOPERM"):
                write()
        assert httpx.get(f"{url}/set/k/w?_token={READ_ONLY}").status_code == 400
        pipe = reader.pipeline()
        pipe.get("k")
        pipe.incr("n")
        with pytest.raises(UpstashError, match="NOPERM"):
            pipe.exec()
    finally:
        reader.close()
    assert redis.get("k") == "v"
    assert redis.get("n") is None


def test_tokens_each_with_their_own_redis(
    redis_server: EmbeddedRedis, redis_cluster: EmbeddedCluster
) -> None:
    with redis_server.client() as admin:
        admin.flushall()
    redis_cluster.flushall()
    app = Gateway(
        tokens={
            "standalone": TokenRule(redis_server.url),
            "cluster": TokenRule(redis_cluster.url),
            "cluster-reader": TokenRule(redis_cluster.url, read_only=True),
        }
    )
    with serve_asgi(app) as base:
        one = Redis(base, "standalone", rest_retries=0)
        two = Redis(base, "cluster", rest_retries=0)
        reader = Redis(base, "cluster-reader", rest_retries=0)
        one.set("where", "standalone")
        two.set("where", "cluster")
        assert one.get("where") == "standalone"
        assert two.get("where") == "cluster"
        assert reader.get("where") == "cluster"
        for client in (one, two, reader):
            client.close()
    with redis_server.client() as admin:
        assert admin.get("where") == b"standalone"
    # The clients were closed by the lifespan's shutdown.
    assert app._upstreams == {}


def test_an_unreachable_redis_is_an_upstream_error_and_a_503() -> None:
    url = f"redis://127.0.0.1:{closed_port()}"

    async def ping() -> UpstreamError:
        upstream = open_upstream(url)
        try:
            with pytest.raises(UpstreamError, match="unavailable") as caught:
                await upstream.run([[b"PING"]])
        finally:
            await upstream.aclose()
        return caught.value

    error = asyncio.run(ping())
    # One of redkit's errors: code that catches the core's BackendError catches it too.
    assert isinstance(error, BackendError)
    assert isinstance(error, RedkitError)
    with serve_asgi(Gateway.for_redis(url, TOKEN)) as base:
        for path, body in [("/", ["GET", "k"]), ("/pipeline", [["GET", "k"]])]:
            refused = post(base, path, body)
            assert refused.status_code == 503
            # The address stays in the gateway's log, out of the answer.
            assert refused.json() == {"error": "ERR the database is not reachable from the gateway"}
        assert post(base, "/multi-exec", [["GET", "k"]]).status_code == 503


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/", b"{not json", "malformed JSON"),
        ("/", b"", "empty request body"),
        ("/", b'{"command": "GET"}', "must be a JSON array"),
        ("/", b"[]", "is empty"),
        ("/", b'["SET", "k", null]', "got null"),
        ("/", b'["SET", "k", {"a": 1}]', "got object"),
        ("/", b'["SET", "k", ["v"]]', "got array"),
        ("/pipeline", b'["GET", "k"]', "command 1 must be a JSON array"),
        ("/pipeline", b"[]", "non-empty JSON array"),
        ("/pipeline", b'[["GET", "k"], "GET"]', "command 2"),
        ("/multi-exec", b'[["GET", "k"], [1.5, []]]', "got array"),
        ("/multi-exec", b"[[]]", "is empty"),
    ],
)
def test_malformed_requests(url: str, path: str, body: bytes, fragment: str) -> None:
    response = httpx.post(url + path, content=body, headers=AUTH)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_booleans_are_stored_as_words_as_upstash_does(url: str) -> None:
    assert post(url, "/", ["SET", "k", True]).json() == {"result": "OK"}
    assert post(url, "/", ["GET", "k"]).json() == {"result": "true"}
    # One boolean fails no command of a pipeline or a transaction (auto-pipelining SDKs).
    piped = post(url, "/pipeline", [["HSET", "h", "f", False], ["HGET", "h", "f"]]).json()
    assert piped == [{"result": 1}, {"result": "false"}]
    atomic = post(url, "/multi-exec", [["SET", "b", True], ["GET", "b"]]).json()
    assert atomic == [{"result": "OK"}, {"result": "true"}]


def test_numbers_are_arguments(url: str) -> None:
    assert post(url, "/", ["SET", "n", 10]).json() == {"result": "OK"}
    assert post(url, "/", ["INCRBYFLOAT", "n", 0.25]).json() == {"result": "10.25"}
    assert post(url, "/", ["SET", "e", "v", "EX", 100]).json() == {"result": "OK"}


def test_oversized_bodies(server: EmbeddedRedis | EmbeddedCluster) -> None:
    app = Gateway.for_redis(server.url, TOKEN, max_body=1000)
    with serve_asgi(app) as base:
        fits = httpx.post(base + "/", json=["SET", "k", "x" * 900], headers=AUTH)
        assert fits.json() == {"result": "OK"}
        big = httpx.post(base + "/", json=["SET", "k", "x" * 2000], headers=AUTH)
        assert big.status_code == 400
        assert "max request size" in big.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'["SET", "k", "'
            for _ in range(20):
                yield b"y" * 100
            yield b'"]'

        streamed = httpx.post(base + "/", content=chunks(), headers=AUTH)
        assert streamed.status_code == 400
        assert "max request size" in streamed.json()["error"]
        path_style = httpx.post(base + "/set/k", content=b"z" * 2000, headers=AUTH)
        assert path_style.status_code == 400


def test_the_default_limit_is_ten_megabytes(url: str) -> None:
    value = "x" * (10 * 1024 * 1024)
    response = httpx.post(url + "/", json=["SET", "k", value], headers=AUTH, timeout=60)
    assert response.status_code == 400
    assert "max request size" in response.json()["error"]


def test_unknown_denied_and_blocking_commands(url: str) -> None:
    unknown = post(url, "/", ["NOSUCHCOMMAND", "x"])
    assert unknown.status_code == 400
    assert unknown.json()["error"].startswith("ERR unknown command")
    for command in (["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "*"], ["SHUTDOWN"], ["DEBUG"]):
        denied = post(url, "/", command)
        assert denied.status_code == 400
        assert "not allowed" in denied.json()["error"]
    blocking = [
        ["BLPOP", "l", 0],
        ["BRPOP", "l", 0],
        ["BZPOPMIN", "z", 0],
        ["XREAD", "BLOCK", 0, "STREAMS", "s", "$"],
        ["WAIT", 1, 0],
    ]
    for command in blocking:
        refused = post(url, "/", command)
        assert refused.status_code == 400
        assert "blocking" in refused.json()["error"]
    for command in (["SUBSCRIBE", "c"], ["MONITOR"], ["SELECT", 1], ["MULTI"], ["AUTH", "x"]):
        refused = post(url, "/", command)
        assert refused.status_code == 400
        assert "not supported" in refused.json()["error"]
    # XREAD without BLOCK is an ordinary read.
    post(url, "/", ["XADD", "s", "*", "f", "v"])
    assert len(post(url, "/", ["XREAD", "STREAMS", "s", "0"]).json()["result"]) == 1


def test_allowed_commands(server: EmbeddedRedis | EmbeddedCluster) -> None:
    app = Gateway.for_redis(server.url, TOKEN, allow=["flushdb"])
    with serve_asgi(app) as base:
        post(base, "/", ["SET", "k", "v"])
        assert post(base, "/", ["FLUSHDB"]).json() == {"result": "OK"}
        assert post(base, "/", ["GET", "k"]).json() == {"result": None}
        assert post(base, "/", ["FLUSHALL"]).status_code == 400


def test_wrong_methods(url: str) -> None:
    for method in ("DELETE", "PATCH", "OPTIONS"):
        response = httpx.request(method, url + "/get/k", headers=AUTH)
        assert response.status_code == 405
        assert "error" in response.json()
    assert httpx.get(url + "/pipeline", headers=AUTH).status_code == 405
    assert httpx.get(url + "/multi-exec", headers=AUTH).status_code == 405
    assert httpx.get(url + "/", headers=AUTH).status_code == 400


# -- path style ------------------------------------------------------------------------------


def test_path_style_commands(url: str) -> None:
    assert httpx.get(f"{url}/set/k/v1", headers=AUTH).json() == {"result": "OK"}
    assert httpx.get(f"{url}/get/k", headers=AUTH).json() == {"result": "v1"}
    assert httpx.put(f"{url}/set/k/v2", headers=AUTH).json() == {"result": "OK"}
    head = httpx.head(f"{url}/get/k", headers=AUTH)
    assert head.status_code == 200
    assert head.content == b""
    # A POST body is the last argument; query parameters come after it.
    posted = httpx.post(f"{url}/set/k?EX=100", content=b"from the body", headers=AUTH)
    assert posted.json() == {"result": "OK"}
    assert httpx.get(f"{url}/get/k", headers=AUTH).json() == {"result": "from the body"}
    assert 0 < httpx.get(f"{url}/ttl/k", headers=AUTH).json()["result"] <= 100
    # Flags without a value, and percent-encoded separators inside an argument.
    assert httpx.get(f"{url}/set/k/v3?NX", headers=AUTH).json() == {"result": None}
    assert httpx.get(f"{url}/set/a%2Fb/x%20y", headers=AUTH).json() == {"result": "OK"}
    assert post(url, "/", ["GET", "a/b"]).json() == {"result": "x y"}
    failed = httpx.get(f"{url}/incr/k", headers=AUTH)
    assert failed.status_code == 400
    assert "not an integer" in failed.json()["error"]


# -- cluster ---------------------------------------------------------------------------------


def test_cluster_transactions_need_one_slot(redis_cluster: EmbeddedCluster) -> None:
    redis_cluster.flushall()
    with serve_asgi(Gateway.for_redis(redis_cluster.url, TOKEN)) as base:
        spread = post(base, "/multi-exec", [["SET", "a", "1"], ["SET", "b", "2"]])
        assert spread.status_code == 400
        assert "CROSSSLOT" in spread.json()["error"]
        assert post(base, "/", ["EXISTS", "a"]).json() == {"result": 0}
        keyless = post(base, "/multi-exec", [["PING"], ["ECHO", "x"]])
        assert keyless.json() == [{"result": "PONG"}, {"result": "x"}]
        # A pipeline may spread over slots; one multi-key command may not.
        spread_pipe = post(base, "/pipeline", [["SET", "a", "1"], ["SET", "b", "2"]])
        assert spread_pipe.json() == [{"result": "OK"}, {"result": "OK"}]
        assert "CROSSSLOT" in post(base, "/", ["MGET", "a", "b"]).json()["error"]


def test_a_spread_transaction_is_a_cross_slot_error_of_the_upstream(
    redis_cluster: EmbeddedCluster,
) -> None:
    redis_cluster.flushall()

    async def spread() -> tuple[CrossSlotError, list[Any]]:
        upstream = open_upstream(redis_cluster.url)
        try:
            with pytest.raises(CrossSlotError, match="CROSSSLOT") as caught:
                await upstream.transaction([[b"SET", b"a", b"1"], [b"SET", b"b", b"2"]])
            # Refused before anything was sent: neither key was written.
            return caught.value, await upstream.run([[b"EXISTS", b"a"], [b"EXISTS", b"b"]])
        finally:
            await upstream.aclose()

    error, exists = asyncio.run(spread())
    assert isinstance(error, RedkitError)
    assert exists == [0, 0]
