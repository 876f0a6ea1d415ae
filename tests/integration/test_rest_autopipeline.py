"""The asyncio REST driver's auto-pipelining, against redkit's gateway on a real Redis.

Concurrent tasks' requests go as one ``POST /pipeline``; every test counts the HTTP requests
that really left (a real transport that records them) and checks that each caller still gets
exactly its own reply, or its own error.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from redkit.core.clock import VirtualClock
from redkit.core.errors import (
    BackendTimeout,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
    InvalidArgumentError,
)
from redkit.core.ops import Pipeline, ScriptCall, command
from redkit.core.scripts import Script
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.drivers.rest import BATCH_BYTES, BATCH_OPS, RestConnection
from support.backends import REST_TOKEN
from support.loop import LoopThread
from support.probes import closed_port
from support.web import serve_asgi

COUNTER = Script("ap-counter", "return {KEYS[1], redis.call('INCRBY', KEYS[1], ARGV[1])}")


class Recording(httpx.AsyncHTTPTransport):
    """A real transport that keeps every request it sent, with the reply's headers."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []
        self.tokens: list[str | None] = []
        #: Set while a request is out, for tests that act during one.
        self.in_flight = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        self.in_flight.set()
        response = await super().handle_async_request(request)
        self.tokens.append(response.headers.get("upstash-sync-token"))
        return response

    def commands(self, index: int) -> list[list[str]]:
        """The commands request ``index`` carried, whichever way it was sent."""
        request = self.sent[index]
        body = json.loads(request.content)
        return body if request.url.path.endswith(("/pipeline", "/multi-exec")) else [body]

    def paths(self) -> list[str]:
        return [request.url.path for request in self.sent]


@pytest.fixture
def server(redis_server: EmbeddedRedis) -> EmbeddedRedis:
    with redis_server.client() as admin:
        admin.flushall()
        admin.script_flush()
    return redis_server


def recorded(url: str, **options: Any) -> tuple[RestConnection, Recording]:
    transport = Recording()
    return RestConnection(url, token=REST_TOKEN, transport=transport, **options), transport


def run(loop_thread: LoopThread, conn: RestConnection, body: Any) -> Any:
    """Run ``body(driver)`` on the test loop, then close the connection's asyncio drivers."""

    async def main() -> Any:
        try:
            return await body(conn.async_driver())
        finally:
            await conn.aclose()

    return loop_thread.run(main())


def test_it_is_on_by_default_and_must_be_a_bool(rest_gateway: str) -> None:
    assert RestConnection(rest_gateway, token=REST_TOKEN).autopipeline is True
    assert RestConnection(rest_gateway, token=REST_TOKEN, autopipeline=False).autopipeline is False
    with pytest.raises(ConfigurationError, match="autopipeline must be True or False") as info:
        RestConnection(rest_gateway, token=REST_TOKEN, autopipeline=1)  # type: ignore[arg-type]
    assert info.value.variable == "autopipeline"


def test_concurrent_commands_go_as_one_pipeline_request(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    with server.client() as admin:
        for n in range(50):
            admin.set(f"k{n}", f"v{n}")
    conn, transport = recorded(rest_gateway)

    async def body(driver: Any) -> list[Any]:
        return await asyncio.gather(*(driver.execute(command("GET", f"k{n}")) for n in range(50)))

    assert run(loop_thread, conn, body) == [f"v{n}".encode() for n in range(50)]
    assert transport.paths() == ["/pipeline"]
    assert transport.commands(0) == [["GET", f"k{n}"] for n in range(50)]


def test_a_lone_command_is_sent_as_it_would_be_without_batching(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)

    async def body(driver: Any) -> list[Any]:
        return [await driver.execute(command("INCR", "n")) for _ in range(3)]

    assert run(loop_thread, conn, body) == [1, 2, 3]
    assert transport.paths() == ["/", "/", "/"]


def test_many_tasks_each_get_their_own_sequence(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)
    tasks = 300
    # A script call and a pipeline of two INCRs share the batches with plain INCRs.
    kinds = ["incr", "pipeline", "script", "incr", "incr", "script"] * 2
    steps = len(kinds)
    shuffler = random.Random(16)

    async def one(driver: Any, task: int) -> list[Any]:
        seen = []
        for kind in kinds:
            if shuffler.random() < 0.3:
                await asyncio.sleep(0)  # tasks drift apart: batches mix different steps
            if kind == "script":
                reply = await driver.execute(ScriptCall(COUNTER, (f"c{task}",), (1,)))
                assert reply[0] == f"c{task}".encode()
                seen.append(reply[1])
            elif kind == "pipeline":
                pair = await driver.execute(
                    Pipeline((command("INCR", f"c{task}"), command("GET", f"c{task}")))
                )
                assert int(pair[1]) == pair[0]
                seen.append(pair[0])
            else:
                seen.append(await driver.execute(command("INCR", f"c{task}")))
        return seen

    async def body(driver: Any) -> list[list[Any]]:
        return await asyncio.gather(*(one(driver, task) for task in range(tasks)))

    sequences = run(loop_thread, conn, body)
    assert sequences == [list(range(1, steps + 1))] * tasks
    sent = sum(len(transport.commands(i)) for i in range(len(transport.sent)))
    # Each command once (a pipeline step is two), and at most each script call again, as
    # EVAL after its first EVALSHA missed...
    commands = tasks * (steps + kinds.count("pipeline"))
    script_calls = tasks * kinds.count("script")
    assert commands <= sent <= commands + script_calls
    # ... in far fewer requests than commands, none over the bound.
    assert len(transport.sent) < commands / 5
    assert max(len(transport.commands(i)) for i in range(len(transport.sent))) <= BATCH_OPS


def test_one_wrongtype_fails_only_its_caller(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    with server.client() as admin:
        admin.hset("h", "f", "v")
    conn, transport = recorded(rest_gateway)

    async def body(driver: Any) -> list[Any]:
        ops = [command("INCR", f"n{k}") for k in range(10)]
        ops.insert(4, command("INCR", "h"))
        ops.insert(7, ScriptCall(COUNTER, ("h",), (1,)))
        return await asyncio.gather(*(driver.execute(op) for op in ops), return_exceptions=True)

    replies = run(loop_thread, conn, body)
    for index in (4, 7):
        assert isinstance(replies[index], CommandError)
        assert "WRONGTYPE" in str(replies[index])
    assert [r for i, r in enumerate(replies) if i not in (4, 7)] == [1] * 10
    # The script went EVALSHA, missed, then EVAL alone: no other command was sent twice.
    assert transport.paths()[0] == "/pipeline"
    assert len(transport.commands(0)) == 12
    assert [c[0] for c in transport.commands(1)] == ["EVAL"]


def test_noscript_after_a_flush_is_rerun_for_those_calls_only(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    # Without key locking the gateway passes EVALSHA through as it is: Redis's own NOSCRIPT
    # reaches the driver (with it, the gateway would run the text it remembers itself).
    conn, transport = recorded(rest_gateway, key_locking=False)
    with server.client() as admin:
        admin.set("plain", "x")

    async def mixed(driver: Any) -> list[Any]:
        ops: list[Any] = []
        for k in range(8):
            ops.append(ScriptCall(COUNTER, (f"s{k}",), (k,)))
            ops.append(command("GET", "plain"))
        return await asyncio.gather(*(driver.execute(op) for op in ops))

    async def body(driver: Any) -> list[list[Any]]:
        first = await mixed(driver)  # never loaded: every call misses once
        known = await mixed(driver)  # loaded now: EVALSHA answers
        await loop_thread_admin_flush()
        flushed = await mixed(driver)
        return [first, known, flushed]

    async def loop_thread_admin_flush() -> None:
        # The admin connection is blocking: flush from a thread, off the event loop.
        def flush() -> None:
            with server.client() as admin:
                admin.script_flush()

        await asyncio.to_thread(flush)

    first, known, flushed = run(loop_thread, conn, body)
    for round_number, replies in enumerate((first, known, flushed), start=1):
        assert replies[1::2] == [b"x"] * 8
        assert replies[0::2] == [[f"s{k}".encode(), k * round_number] for k in range(8)]
    # first: a batch of 16 (8 misses), then the 8 EVALs alone in one more batch;
    # known: one batch; after the flush: 16 again, then only the 8 scripts as EVAL.
    assert transport.paths() == ["/pipeline"] * 5
    assert [len(transport.commands(i)) for i in range(5)] == [16, 8, 16, 16, 8]
    for rerun in (1, 4):
        assert [c[0] for c in transport.commands(rerun)] == ["EVAL"] * 8
        assert sorted(c[3] for c in transport.commands(rerun)) == [f"s{k}" for k in range(8)]
    assert [c[0] for c in transport.commands(2)] == ["EVALSHA", "GET"] * 8


def test_bad_arguments_fail_only_their_caller_before_anything_is_sent(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)

    async def body(driver: Any) -> list[Any]:
        ops = [
            command("SET", "a", "1"),
            command("SET", "b", b"\xff\xfe"),  # not UTF-8: JSON cannot carry it
            command("SET", "c", True),  # a bool: which of 1, True, true?
            command("SET", "d", "4"),
            command("NOSUCHCOMMAND", "x"),  # well-formed, refused by the server
        ]
        return await asyncio.gather(*(driver.execute(op) for op in ops), return_exceptions=True)

    replies = run(loop_thread, conn, body)
    assert replies[0] is True
    assert replies[3] is True
    assert isinstance(replies[1], InvalidArgumentError)
    assert "not UTF-8" in str(replies[1])
    assert isinstance(replies[2], InvalidArgumentError)
    assert isinstance(replies[4], CommandError)
    assert transport.paths() == ["/pipeline"]
    assert [c[1] for c in transport.commands(0)] == ["a", "d", "x"]
    with server.client() as admin:
        assert sorted(admin.keys("*")) == [b"a", b"d"]


def test_a_batch_refused_as_a_whole_is_sent_again_request_by_request(
    redis_server: EmbeddedRedis, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    from redkit.gateway import Gateway

    # Each SET fits the gateway's body limit alone, ten of them together do not.
    gateway = Gateway.for_redis(redis_server.url, REST_TOKEN, max_body=3000)
    with serve_asgi(gateway) as url:
        conn, transport = recorded(url)

        async def body(driver: Any) -> list[Any]:
            ops = [command("SET", f"big{k}", str(k) * 1000) for k in range(10)]
            ops.append(command("SET", "huge", "h" * 5000))  # too large even alone
            return await asyncio.gather(*(driver.execute(op) for op in ops), return_exceptions=True)

        replies = run(loop_thread, conn, body)
    assert replies[:10] == [True] * 10
    assert isinstance(replies[10], CommandError)
    assert "max request size" in str(replies[10])
    assert transport.paths() == ["/pipeline"] + ["/"] * 11
    with server.client() as admin:
        assert admin.get("big3") == b"3" * 1000
        assert admin.exists("huge") == 0


def test_reads_see_the_writes_of_earlier_batches(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)

    async def body(driver: Any) -> list[Any]:
        await asyncio.gather(*(driver.execute(command("SET", f"w{k}", k)) for k in range(20)))
        token_after_writes = conn.sync_token
        reads = await asyncio.gather(*(driver.execute(command("GET", f"w{k}")) for k in range(20)))
        return [token_after_writes, reads]

    token_after_writes, reads = run(loop_thread, conn, body)
    assert reads == [str(k).encode() for k in range(20)]
    assert transport.paths() == ["/pipeline", "/pipeline"]
    # The first batch had no token to send; the second sent the one the first's reply carried,
    # and the connection keeps the second's.
    assert "upstash-sync-token" not in transport.sent[0].headers
    assert token_after_writes == transport.tokens[0]
    assert transport.sent[1].headers["upstash-sync-token"] == transport.tokens[0]
    assert conn.sync_token == transport.tokens[1] != transport.tokens[0]


def test_a_cancelled_caller_only_drops_its_reply(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)

    async def body(driver: Any) -> list[Any]:
        # Cancelled before its batch leaves: never sent.
        early = asyncio.ensure_future(driver.execute(command("INCR", "early")))
        await asyncio.sleep(0)  # it is queued now
        early.cancel()
        tasks = [asyncio.ensure_future(driver.execute(command("INCR", f"t{k}"))) for k in range(5)]
        await transport.in_flight.wait()  # their batch is out
        tasks[2].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        # The same keys once more: every reply lands with its own caller.
        again = await asyncio.gather(*(driver.execute(command("INCR", f"t{k}")) for k in range(5)))
        return [early.cancelled(), done, again]

    early_cancelled, done, again = run(loop_thread, conn, body)
    assert early_cancelled
    assert isinstance(done[2], asyncio.CancelledError)
    assert [done[k] for k in (0, 1, 3, 4)] == [1, 1, 1, 1]
    assert again == [2, 2, 2, 2, 2]  # t2's first INCR ran: its reply was dropped
    assert all("early" not in json.dumps(transport.commands(i)) for i in range(2))
    with server.client() as admin:
        assert admin.exists("early") == 0


def test_a_transaction_is_sent_alone(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)
    transaction = Pipeline((command("INCR", "tx"), command("INCR", "tx")), transaction=True)

    async def body(driver: Any) -> list[Any]:
        ops = [command("INCR", "a"), transaction, command("INCR", "b")]
        return await asyncio.gather(*(driver.execute(op) for op in ops))

    assert run(loop_thread, conn, body) == [1, [1, 2], 1]
    assert sorted(transport.paths()) == ["/multi-exec", "/pipeline"]
    multi = transport.paths().index("/multi-exec")
    assert transport.commands(multi) == [["INCR", "tx"], ["INCR", "tx"]]
    assert transport.commands(1 - multi) == [["INCR", "a"], ["INCR", "b"]]


def test_pipelines_join_a_batch_and_keep_their_per_item_errors(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)
    pipeline = Pipeline(
        (command("SET", "s", "x"), command("INCR", "s"), command("HSET", "h", "f", "1"))
    )

    async def body(driver: Any) -> list[Any]:
        return await asyncio.gather(
            driver.execute(command("INCR", "n")),
            driver.execute(pipeline),
            driver.execute(Pipeline(())),
            driver.execute(command("HGETALL", "h2")),
        )

    counted, items, empty, missing = run(loop_thread, conn, body)
    assert counted == 1
    assert items[0] is True
    assert isinstance(items[1], CommandError)
    assert "not an integer" in str(items[1])
    assert items[2] == 1
    assert empty == []
    assert missing == {}  # shaped by redis-py's callback, as alone
    assert transport.paths() == ["/pipeline"]
    assert len(transport.commands(0)) == 5


def test_batches_are_bounded_in_commands_and_bytes(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway)
    value = "v" * (BATCH_BYTES // 3)  # three of them overflow one batch

    async def body(driver: Any) -> list[Any]:
        small = [driver.execute(command("INCR", f"i{k}")) for k in range(2 * BATCH_OPS + 10)]
        large = [driver.execute(command("SET", f"big{k}", value)) for k in range(3)]
        return await asyncio.gather(*small, *large)

    replies = run(loop_thread, conn, body)
    assert replies == [1] * (2 * BATCH_OPS + 10) + [True] * 3
    counts = [len(transport.commands(i)) for i in range(len(transport.sent))]
    assert sum(counts) == 2 * BATCH_OPS + 13
    assert max(counts) <= BATCH_OPS
    assert len(transport.sent) >= 4  # 256 + 256 + the rest, and the third large one apart
    assert max(len(request.content) for request in transport.sent) <= BATCH_BYTES


def test_autopipeline_off_sends_one_request_per_command(
    rest_gateway: str, server: EmbeddedRedis, loop_thread: LoopThread
) -> None:
    conn, transport = recorded(rest_gateway, autopipeline=False)

    async def body(driver: Any) -> list[Any]:
        return await asyncio.gather(*(driver.execute(command("INCR", f"o{k}")) for k in range(10)))

    assert run(loop_thread, conn, body) == [1] * 10
    assert transport.paths() == ["/"] * 10


def test_a_hung_server_times_out_every_caller_of_the_batch(
    hung_port: int, loop_thread: LoopThread
) -> None:
    conn = RestConnection(f"http://127.0.0.1:{hung_port}", token="t", socket_timeout=0.3)

    async def body(driver: Any) -> list[Any]:
        ops = [driver.execute(command("GET", f"k{k}")) for k in range(5)]
        return await asyncio.gather(*ops, return_exceptions=True)

    errors = run(loop_thread, conn, body)
    assert all(isinstance(error, BackendTimeout) for error in errors)
    assert len({id(error) for error in errors}) == 5  # each caller its own instance


def test_a_server_that_is_down_is_unavailable_to_every_caller_after_the_retries(
    loop_thread: LoopThread,
) -> None:
    conn = RestConnection(
        f"http://127.0.0.1:{closed_port()}", token="t", retries=2, retry_backoff=0.01
    )

    async def body(driver: Any) -> list[Any]:
        ops = [driver.execute(command("GET", f"k{k}")) for k in range(5)]
        return await asyncio.gather(*ops, return_exceptions=True)

    errors = run(loop_thread, conn, body)
    assert all(isinstance(error, BackendUnavailable) for error in errors)
    assert all("tried 3 times" in str(error) for error in errors)


@pytest.fixture
def facade_conn(rest_gateway: str, server: EmbeddedRedis) -> Iterator[RestConnection]:
    conn = RestConnection(rest_gateway, token=REST_TOKEN, key_locking=True)
    yield conn
    conn.close()


def test_rate_limit_decisions_of_many_tasks_add_up(
    facade_conn: RestConnection, loop_thread: LoopThread
) -> None:
    """A facade over the batching driver: 100 concurrent decisions on one limit of 60."""
    from redkit import AsyncRatelimit, FixedWindow

    async def body(_driver: Any) -> list[bool]:
        limiter = AsyncRatelimit(facade_conn, FixedWindow(60, "60 s"), ephemeral_cache=False)
        results = await asyncio.gather(*(limiter.limit("shared") for _ in range(100)))
        return [result.success for result in results]

    decisions = run(loop_thread, facade_conn, body)
    assert decisions.count(True) == 60


@pytest.fixture
def cluster_gateway(redis_cluster: EmbeddedCluster) -> Iterator[str]:
    """The gateway in front of the 3-master cluster, emptied; its base URL."""
    from redkit.gateway import Gateway

    redis_cluster.flushall()
    with serve_asgi(Gateway.for_redis(redis_cluster.url, REST_TOKEN)) as base:
        yield base


def test_batches_through_a_gateway_in_front_of_a_cluster(
    cluster_gateway: str, loop_thread: LoopThread
) -> None:
    """Keys of every slot in one batch; a multi-key script's CROSSSLOT still names the fix."""
    from redkit import AsyncRatelimit, SlidingWindow

    plain, plain_transport = recorded(cluster_gateway)

    async def refused(_driver: Any) -> list[Any]:
        limiter = AsyncRatelimit(plain, SlidingWindow(5, "10 s"), ephemeral_cache=False)
        return await asyncio.gather(
            *(limiter.limit(f"u{k}") for k in range(10)), return_exceptions=True
        )

    errors = run(loop_thread, plain, refused)
    assert all(isinstance(error, CommandError) for error in errors)
    assert all("connect with cluster=True" in str(error) for error in errors)
    assert "/pipeline" in plain_transport.paths()

    conn, transport = recorded(cluster_gateway, cluster=True)

    async def served(driver: Any) -> list[Any]:
        # A clock standing still mid-window: the decisions cannot straddle a window's end.
        clock = VirtualClock(1_700_000_005_000)
        limiter = AsyncRatelimit(conn, SlidingWindow(2, "10 s"), ephemeral_cache=False, clock=clock)
        counts = await asyncio.gather(
            *(driver.execute(command("INCR", f"n{k}")) for k in range(60))
        )
        decisions = await asyncio.gather(*(limiter.limit(f"v{k % 10}") for k in range(30)))
        return [counts, [d.success for d in decisions]]

    counts, decisions = run(loop_thread, conn, served)
    assert counts == [1] * 60
    for user in range(10):  # 2 of each user's 3 calls pass
        assert [decisions[k] for k in range(user, 30, 10)].count(True) == 2
    assert transport.paths()[0] == "/pipeline"
    assert len(transport.commands(0)) == 60
