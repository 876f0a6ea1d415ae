"""Auto-pipelining on the asyncio driver, standalone, on a real server (see conftest).

Round trips are counted on the server: ``total_reads_processed`` (INFO stats) counts the read
events it handled, one per request without pipelining, one per batch (or a few) with it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from redkit import AsyncCache, AsyncRatelimit, FixedWindow
from redkit.core.errors import BackendError, BackendTimeout, CommandError
from redkit.core.ops import Pipeline, ScriptCall, command
from redkit.core.scripts import Script
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedRedis
from redkit.drivers.redis import AsyncRedisDriver

T = TypeVar("T")

_counter = iter(range(1_000_000))


def fresh_script(body: str) -> Script:
    """A script the server has surely never seen (its first call misses the cache)."""
    return Script("test", f"-- autopipeline {next(_counter)}\n{body}")


@pytest.fixture
def server(redis_server: EmbeddedRedis) -> EmbeddedRedis:
    with redis_server.client() as admin:
        admin.flushall()
    return redis_server


def reads(server: EmbeddedRedis) -> int:
    with server.client() as admin:
        return int(admin.info("stats")["total_reads_processed"])


def run(
    server: EmbeddedRedis,
    body: Callable[[AsyncRedisDriver], Awaitable[T]],
    *,
    autopipeline: bool = True,
) -> T:
    """Run ``body`` on a fresh event loop with its own connection's asyncio driver."""

    async def main() -> T:
        conn = server.connect(autopipeline=autopipeline)
        try:
            return await body(conn.async_driver())
        finally:
            await conn.aclose()

    return asyncio.run(main())


async def incr_sequence(driver: AsyncRedisDriver, n: int, times: int, prefix: str) -> list[int]:
    """Add ``n + 1`` to a key of caller ``n``'s own: replies tell every caller apart."""
    key = f"{prefix}:{n}"
    return [await driver.execute(command("INCRBY", key, n + 1)) for _ in range(times)]


def sequence(n: int, times: int) -> list[int]:
    return [(n + 1) * step for step in range(1, times + 1)]


@pytest.mark.parametrize("autopipeline", [False, True])
def test_a_thousand_tasks_get_their_own_sequences(
    server: EmbeddedRedis, autopipeline: bool
) -> None:
    tasks, times = 1000, 5

    async def body(driver: AsyncRedisDriver) -> list[list[int]]:
        return await asyncio.gather(
            *(incr_sequence(driver, n, times, "ap:seq") for n in range(tasks))
        )

    before = reads(server)
    sequences = run(server, body, autopipeline=autopipeline)
    spent = reads(server) - before
    assert sequences == [sequence(n, times) for n in range(tasks)]
    ops = tasks * times
    if autopipeline:
        # Batches of up to 256: a few dozen round trips, far fewer than one per operation.
        assert spent < ops // 10, spent
    else:
        assert spent >= ops, spent  # the observable is real: one read per request


def test_a_wrongtype_fails_only_its_caller(server: EmbeddedRedis) -> None:
    with server.client() as admin:
        admin.rpush("ap:list", "x")

    async def body(driver: AsyncRedisDriver) -> list[Any]:
        calls = [driver.execute(command("INCRBY", f"ap:n:{n}", n)) for n in range(40)]
        calls.insert(20, driver.execute(command("INCR", "ap:list")))
        return await asyncio.gather(*calls, return_exceptions=True)

    before = reads(server)
    replies = run(server, body)
    # 41 operations in one batch, plus the handshakes of the new connections.
    assert reads(server) - before < 20
    wrong = replies.pop(20)
    assert isinstance(wrong, CommandError)
    assert "WRONGTYPE" in str(wrong)
    assert replies == list(range(40))


def test_a_pipeline_in_a_batch_keeps_its_errors_per_item(server: EmbeddedRedis) -> None:
    with server.client() as admin:
        admin.rpush("ap:list", "x")

    async def body(driver: AsyncRedisDriver) -> list[Any]:
        pipeline = Pipeline((command("INCR", "ap:p"), command("INCR", "ap:list")))
        return await asyncio.gather(
            driver.execute(command("INCR", "ap:a")),
            driver.execute(pipeline),
            driver.execute(command("INCR", "ap:a")),
        )

    first, (incr, wrong), second = run(server, body)
    assert (first, incr, second) == (1, 1, 2)
    assert isinstance(wrong, CommandError)


def test_script_calls_survive_script_flush_mid_run(server: EmbeddedRedis) -> None:
    script = fresh_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    # ARGV[1] is n + 1: each caller's replies are its own.
    tasks, times = 300, 8

    async def caller(driver: AsyncRedisDriver, n: int) -> list[int]:
        key = f"ap:script:{n}"
        seen = []
        for _ in range(times):
            if n % 2:
                seen.append(await driver.execute(ScriptCall(script, (key,), (n + 1,))))
            else:  # a script call inside a non-transactional pipeline, with a command
                pipeline = Pipeline((ScriptCall(script, (key,), (n + 1,)), command("PING")))
                reply, pong = await driver.execute(pipeline)
                assert pong is True
                seen.append(reply)
        return seen

    async def flusher(admin: redis.asyncio.Redis) -> None:
        for _ in range(times):
            await admin.script_flush()
            await asyncio.sleep(0)

    async def body(driver: AsyncRedisDriver) -> list[list[int]]:
        admin = redis.asyncio.Redis(host="127.0.0.1", port=server.port or 0)
        try:
            results = await asyncio.gather(
                flusher(admin), *(caller(driver, n) for n in range(tasks))
            )
        finally:
            await admin.aclose()
        return results[1:]

    assert run(server, body) == [sequence(n, times) for n in range(tasks)]


def test_a_transaction_stays_atomic_among_batches(server: EmbeddedRedis) -> None:
    pair = Pipeline((command("INCR", "ap:tx"), command("INCR", "ap:tx")), transaction=True)

    async def writer(driver: AsyncRedisDriver) -> list[list[int]]:
        return [await driver.execute(pair) for _ in range(20)]

    async def reader(driver: AsyncRedisDriver) -> list[int]:
        return [int(await driver.execute(command("GET", "ap:tx")) or 0) for _ in range(20)]

    async def body(driver: AsyncRedisDriver) -> tuple[list[Any], list[Any]]:
        writers = [writer(driver) for _ in range(20)]
        readers = [reader(driver) for _ in range(50)]
        results = await asyncio.gather(*writers, *readers)
        return results[:20], results[20:]

    writes, seen = run(server, body)
    for replies in writes:
        for first, second in replies:
            assert second == first + 1
            assert first % 2 == 1
    # No reader ever sees the transaction half applied.
    assert all(value % 2 == 0 for values in seen for value in values)
    with server.client() as admin:
        assert int(admin.get("ap:tx") or 0) == 20 * 20 * 2


def test_cancelled_callers_leave_the_others_and_the_driver_correct(server: EmbeddedRedis) -> None:
    tasks = 400
    rng = random.Random(16)

    async def body(driver: AsyncRedisDriver) -> None:
        seen: dict[int, list[int]] = {n: [] for n in range(tasks)}
        stop = False

        async def caller(n: int) -> None:
            # Until told to stop: every doomed caller is surely still running when cancelled.
            while not stop:
                seen[n].append(await driver.execute(command("INCRBY", f"ap:c:{n}", n + 1)))

        running = {n: asyncio.ensure_future(caller(n)) for n in range(tasks)}
        doomed = set(rng.sample(range(tasks), tasks // 3))
        for _ in range(3):
            await asyncio.sleep(0)
        # Cancel a third of them, some while their batch is in flight.
        for n in doomed:
            running[n].cancel()
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        stop = True
        await asyncio.gather(*running.values(), return_exceptions=True)
        for n in range(tasks):
            stored = int(await driver.execute(command("GET", f"ap:c:{n}")) or 0)
            assert seen[n] == sequence(n, len(seen[n]))
            if n in doomed:
                assert running[n].cancelled()
                # Its last INCRBY may have been sent and applied, its reply dropped.
                assert stored // (n + 1) in (len(seen[n]), len(seen[n]) + 1)
            else:
                assert not running[n].cancelled()
                assert seen[n]
                assert stored == (n + 1) * len(seen[n])
        # The driver goes on, replies still matched to their callers.
        again = await asyncio.gather(*(incr_sequence(driver, n, 3, "ap:after") for n in range(100)))
        assert again == [sequence(n, 3) for n in range(100)]

    run(server, body)


def test_blocking_commands_are_sent_alone(server: EmbeddedRedis) -> None:
    async def body(driver: AsyncRedisDriver) -> tuple[Any, list[list[int]]]:
        return await asyncio.gather(
            driver.execute(command("BLPOP", "ap:empty", 0.2)),
            asyncio.gather(*(incr_sequence(driver, n, 3, "ap:b") for n in range(20))),
        )

    popped, sequences = run(server, body)
    assert popped is None
    assert sequences == [sequence(n, 3) for n in range(20)]


def test_a_server_killed_mid_batch_fails_every_caller_typed() -> None:
    with EmbeddedRedis() as doomed:

        async def caller(driver: AsyncRedisDriver, n: int) -> None:
            while True:
                await driver.execute(command("INCR", f"ap:k:{n}"))

        async def body(driver: AsyncRedisDriver) -> list[BaseException | None]:
            callers = [asyncio.ensure_future(caller(driver, n)) for n in range(200)]
            await asyncio.sleep(0.2)
            await asyncio.get_running_loop().run_in_executor(None, doomed.stop)
            # A guard against a hang, not a speed assertion: callers fail within their timeout.
            done, pending = await asyncio.wait(callers, timeout=30)
            for task in pending:
                task.cancel()
            assert not pending
            return [task.exception() for task in done]

        async def main() -> list[BaseException | None]:
            conn = Connection(doomed.url, autopipeline=True, socket_timeout=2)
            try:
                return await body(conn.async_driver())
            finally:
                await conn.aclose()

        errors = asyncio.run(main())
    assert len(errors) == 200
    assert all(isinstance(error, BackendError) for error in errors), {
        type(error) for error in errors
    }


def test_a_server_that_never_answers_times_out_every_caller(hung_port: int) -> None:
    async def main() -> list[BaseException | None]:
        conn = Connection(f"redis://127.0.0.1:{hung_port}", autopipeline=True, socket_timeout=0.3)
        driver = conn.async_driver()
        try:
            calls = [driver.execute(command("INCR", f"ap:h:{n}")) for n in range(50)]
            # A guard against a hang, not a speed assertion.
            replies = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
        finally:
            await conn.aclose()
        return replies

    replies = asyncio.run(main())
    assert all(isinstance(reply, BackendTimeout) for reply in replies), replies


def test_without_a_driver_deadline_the_socket_timeout_bounds_the_replies() -> None:
    # As on Python 3.10, where the driver keeps no deadline of its own: a server that stalls
    # after the connection is open (SIGSTOP) must not hold its callers past the socket timeout.
    async def main(server: EmbeddedRedis) -> list[BaseException | None]:
        client = redis.asyncio.Redis(port=server.port or 0, socket_timeout=0.5)
        driver = AsyncRedisDriver(client, autopipeline=True)
        try:
            assert await driver.execute(command("INCR", "ap:t")) == 1  # the connection is open
            os.kill(server.pid, signal.SIGSTOP)
            try:
                calls = [driver.execute(command("INCR", f"ap:t:{n}")) for n in range(20)]
                # A guard against a hang, not a speed assertion.
                waiting = asyncio.gather(*calls, return_exceptions=True)
                replies = await asyncio.wait_for(waiting, 30)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert await driver.execute(command("INCR", "ap:t")) == 2  # a new connection
        finally:
            await driver.aclose()
        return replies

    with EmbeddedRedis() as server:
        replies = asyncio.run(main(server))
    assert all(isinstance(reply, BackendTimeout) for reply in replies), replies


def test_an_argument_redis_py_cannot_encode_fails_only_its_caller(server: EmbeddedRedis) -> None:
    async def body(driver: AsyncRedisDriver) -> list[Any]:
        calls = [driver.execute(command("INCRBY", f"ap:e:{n}", n)) for n in range(10)]
        calls.insert(5, driver.execute(command("SET", "ap:e:bad", None)))  # type: ignore[arg-type]
        return await asyncio.gather(*calls, return_exceptions=True)

    replies = run(server, body)
    bad = replies.pop(5)
    assert isinstance(bad, BackendError)
    assert "NoneType" in str(bad)
    assert replies == list(range(10))


def test_ratelimit_decisions_match_a_sequential_run(server: EmbeddedRedis) -> None:
    ids, calls, limit = 10, 60, 25
    order = [f"user{n % ids}" for n in range(ids * calls)]

    def admitted(autopipeline: bool, concurrent: bool, prefix: str) -> dict[str, int]:
        async def body(driver: AsyncRedisDriver) -> dict[str, int]:
            conn = server.connect(autopipeline=autopipeline)
            limiter = AsyncRatelimit(
                conn, FixedWindow(limit, "1 h"), prefix=prefix, ephemeral_cache=False
            )
            try:
                if concurrent:
                    results = await asyncio.gather(*(limiter.limit(i) for i in order))
                else:
                    results = [await limiter.limit(i) for i in order]
            finally:
                await conn.aclose()
            counts: dict[str, int] = {}
            for identifier, result in zip(order, results, strict=True):
                counts[identifier] = counts.get(identifier, 0) + result.success
            return counts

        return run(server, body)

    sequential = admitted(False, False, "seq")
    assert sequential == {f"user{n}": limit for n in range(ids)}
    assert admitted(True, True, "ap") == sequential


def test_the_cache_works_unchanged_on_an_autopipelined_driver(server: EmbeddedRedis) -> None:
    loads: list[int] = []

    async def body(driver: AsyncRedisDriver) -> None:
        conn = server.connect(autopipeline=True)
        cache = AsyncCache(conn, namespace="ap")
        try:

            async def load(n: int) -> dict[str, int]:
                loads.append(n)
                return {"n": n}

            first = await asyncio.gather(
                *(cache.get_or_set(f"k{n % 20}", lambda n=n % 20: load(n)) for n in range(200))
            )
            assert first == [{"n": n % 20} for n in range(200)]
            assert sorted(loads) == list(range(20))  # one load per key, shared by its tasks
            assert await asyncio.gather(*(cache.get(f"k{n}") for n in range(20))) == [
                {"n": n} for n in range(20)
            ]
            assert await cache.set("k0", "changed")
            assert await cache.get("k0") == "changed"
            assert await cache.delete("k0", "k1") == 2
            assert await cache.get("k1", "gone") == "gone"
        finally:
            await conn.aclose()

    run(server, body)


def test_bad_settings_fail_at_once(server: EmbeddedRedis) -> None:
    with pytest.raises(TypeError, match="autopipeline"):
        Connection(server.url, autopipeline="yes")  # type: ignore[arg-type]
    # On by default, on a cluster too (per node: test_cluster_autopipeline.py).
    assert Connection(server.url).autopipeline
    assert not Connection(server.url, autopipeline=False).autopipeline
    assert Connection("redis+cluster://127.0.0.1:7000").autopipeline
    assert not Connection("redis+cluster://127.0.0.1:7000", autopipeline=False).autopipeline

    async def main() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=server.port or 0)
        try:
            with pytest.raises(ValueError, match="batch_ops"):
                AsyncRedisDriver(client, autopipeline=True, batch_ops=0)
            with pytest.raises(ValueError, match="connections"):
                AsyncRedisDriver(client, autopipeline=True, connections=0)
        finally:
            await client.aclose()

    asyncio.run(main())
