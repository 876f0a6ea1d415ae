"""The drivers on real servers: standalone and cluster, sync and async (see conftest)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis.asyncio

from redkit.core import keys
from redkit.core.clock import ServerClock, current_ms
from redkit.core.errors import BackendTimeout, BackendUnavailable, CommandError
from redkit.core.flow import Flow
from redkit.core.ops import Call, Pipeline, ScriptCall, Sleep, command
from redkit.core.replies import as_int, is_ok
from redkit.core.scripts import Script
from redkit.drivers.connect import Connection, connect
from support.backends import BackendCase
from support.probes import closed_port

# Each test gets its own script text, so its first call is sure to miss the script cache.
_counter = iter(range(1_000_000))


def fresh_script(body: str) -> Script:
    return Script("test", f"-- {next(_counter)}\n{body}")


INCR_BOTH = (
    "return {redis.call('INCRBY', KEYS[1], ARGV[1]), redis.call('INCRBY', KEYS[2], ARGV[1])}"
)


def test_commands_round_trip_binary_values(backend: BackendCase) -> None:
    value = bytes(range(256)) + "ünïcødé".encode()
    key = keys.join("t", keys.hash_tag("bin"), "v")
    assert is_ok(backend.execute(command("SET", key, value)))
    assert backend.execute(command("GET", key)) == value
    assert backend.execute(command("GET", "t:missing")) is None


def test_script_runs_on_a_server_that_never_saw_it(backend: BackendCase) -> None:
    script = fresh_script(INCR_BOTH)
    tag = keys.hash_tag("user:1")
    call = ScriptCall(script, (f"s:{tag}:a", f"s:{tag}:b"), (2,))
    assert backend.execute(call) == [2, 2]
    assert backend.execute(call) == [4, 4]  # now by EVALSHA


def test_script_survives_script_flush(backend: BackendCase) -> None:
    script = fresh_script(INCR_BOTH)
    tag = keys.hash_tag("flush")
    call = ScriptCall(script, (f"s:{tag}:a", f"s:{tag}:b"), (1,))
    assert backend.execute(call) == [1, 1]
    _script_flush_everywhere(backend)
    assert backend.execute(call) == [2, 2]


def test_script_reaches_every_cluster_node_that_owns_its_keys(backend: BackendCase) -> None:
    # Identities spread over the slots, so each node gets to run the script for the first time.
    script = fresh_script(INCR_BOTH)
    identities = [f"id-{n}" for n in range(30)]
    slots = {redis.crc.key_slot(keys.escape(i).encode()) for i in identities}
    assert len({s * 3 // 16384 for s in slots}) == 3  # all three thirds of the slot space
    for identity in identities:
        tag = keys.hash_tag(identity)
        assert backend.execute(ScriptCall(script, (f"s:{tag}:a", f"s:{tag}:b"), (1,))) == [1, 1]


def test_script_error_is_a_command_error(backend: BackendCase) -> None:
    script = fresh_script("return redis.call('INCR', KEYS[1])")
    key = "s:{err}:x"
    backend.execute(command("SET", key, "not a number"))
    with pytest.raises(CommandError, match="not an integer"):
        backend.execute(ScriptCall(script, (key,), ()))


def test_command_error_is_typed(backend: BackendCase) -> None:
    backend.execute(command("SET", "t:{w}:s", "x"))
    with pytest.raises(CommandError, match="WRONGTYPE"):
        backend.execute(command("LPUSH", "t:{w}:s", "x"))


def test_pipeline_reports_per_item_errors_and_reruns_unknown_scripts(backend: BackendCase) -> None:
    script = fresh_script(INCR_BOTH)
    tag = keys.hash_tag("pipe")
    pipeline = Pipeline(
        (
            command("SET", f"p:{tag}:s", "x"),
            ScriptCall(script, (f"p:{tag}:a", f"p:{tag}:b"), (3,)),
            command("INCR", f"p:{tag}:s"),  # fails: not an integer
            command("GET", f"p:{tag}:s"),
        )
    )
    first, scripted, failed, last = backend.execute(pipeline)
    assert is_ok(first)
    assert scripted == [3, 3]
    assert isinstance(failed, CommandError)
    assert "not an integer" in str(failed)
    assert last == b"x"


def test_pipeline_over_many_identities_spreads_over_the_cluster(backend: BackendCase) -> None:
    script = fresh_script(INCR_BOTH)
    ops = []
    for n in range(20):
        tag = keys.hash_tag(f"u{n}")
        ops.append(ScriptCall(script, (f"m:{tag}:a", f"m:{tag}:b"), (n,)))
    results = backend.execute(Pipeline(tuple(ops)))
    assert results == [[n, n] for n in range(20)]


def test_transaction_applies_all_including_scripts(backend: BackendCase) -> None:
    script = fresh_script(INCR_BOTH)
    tag = keys.hash_tag("tx")
    pipeline = Pipeline(
        (
            command("SET", f"x:{tag}:a", 10),
            ScriptCall(script, (f"x:{tag}:a", f"x:{tag}:b"), (5,)),
            command("GET", f"x:{tag}:a"),
        ),
        transaction=True,
    )
    _script_flush_everywhere(backend)
    results = backend.execute(pipeline)
    assert results[1] == [15, 5]
    assert results[2] == b"15"


def test_flows_with_sleep_and_user_calls_run_on_a_real_server(backend: BackendCase) -> None:
    loads: list[str] = []

    def load(name: str) -> bytes:
        loads.append(name)
        return b"loaded-" + name.encode()

    def flow(name: str) -> Flow[Any]:
        key = keys.join("f", keys.hash_tag(name))
        cached = yield command("GET", key)
        if cached is None:
            cached = yield Call(load, (name,))
            yield command("SET", key, cached, "PX", 60_000)
        yield Sleep(0.001)
        ttl = yield command("PTTL", key)
        return cached, as_int(ttl)

    value, ttl = backend.run(flow("a"))
    assert value == b"loaded-a"
    assert 0 < ttl <= 60_000
    assert backend.run(flow("a"))[0] == b"loaded-a"
    assert loads == ["a"]


def test_server_time_is_read_from_redis(backend: BackendCase) -> None:
    import time

    before = time.time() * 1000
    now = backend.run(current_ms(ServerClock()))
    after = time.time() * 1000
    # Same machine: the server's clock agrees with ours to well within a second.
    assert before - 1000 < now < after + 1000


def _script_flush_everywhere(backend: BackendCase) -> None:
    if backend.is_cluster:
        cluster = backend.conn.sync_driver().client
        assert isinstance(cluster, redis.cluster.RedisCluster)
        for node in cluster.get_primaries():
            cluster.execute_command("SCRIPT", "FLUSH", target_nodes=node)
    else:
        backend.conn.sync_driver().execute(command("SCRIPT", "FLUSH"))


# --- failure: a Redis that is down or does not answer -----------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_does_not_answer_is_a_timeout(
    hung_port: int, mode: str, loop_thread: Any
) -> None:
    conn = connect(f"redis://127.0.0.1:{hung_port}", socket_timeout=0.2, connect_timeout=0.2)
    backend = BackendCase(conn, topology="standalone", mode=mode, loop=loop_thread)
    with pytest.raises(BackendTimeout):
        backend.execute(command("PING"))
    _close(backend)


def test_without_one_timer_the_socket_timeout_still_bounds_a_wait(
    hung_port: int, loop_thread: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before Python 3.11 (no ``asyncio.timeout``) redis-py's own socket timeout applies."""
    import importlib

    connect_module = importlib.import_module("redkit.drivers.connect")

    monkeypatch.setattr(connect_module, "ONE_TIMER", False)
    conn = connect(f"redis://127.0.0.1:{hung_port}", socket_timeout=0.2, connect_timeout=0.2)
    backend = BackendCase(conn, topology="standalone", mode="async", loop=loop_thread)
    with pytest.raises(BackendTimeout):
        backend.execute(command("PING"))
    _close(backend)


def test_a_reply_after_the_deadline_never_answers_a_later_command(
    standalone_conn: Connection,
) -> None:
    """A command cut off by its deadline leaves no connection whose next reply is stale."""
    import asyncio

    # One connection: a reused connection would hand BLPOP's late reply to the next command.
    conn = connect(standalone_conn.url, socket_timeout=0.2, max_connections=1)
    queue = keys.join("test", "deadline", str(next(_counter)))

    async def scenario() -> tuple[BaseException | None, Any, Any]:
        driver = conn.async_driver()
        cut: BaseException | None = None
        try:
            await driver.execute(command("BLPOP", queue, "0.6"))
        except BackendTimeout as exc:
            cut = exc
        echoed = await driver.execute(command("ECHO", "after"))
        await asyncio.sleep(0.1)  # let the server see the abandoned connection close
        await driver.execute(command("LPUSH", queue, "kept"))
        left = await driver.execute(command("LLEN", queue))
        await driver.execute(command("DEL", queue))
        await conn.aclose()
        return cut, echoed, left

    cut, echoed, left = asyncio.run(scenario())
    assert isinstance(cut, BackendTimeout)
    assert echoed == b"after"
    assert left == 1  # the abandoned BLPOP did not take the pushed value


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}", "redis+cluster://127.0.0.1:{port}"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_is_down_is_unavailable(url: str, mode: str, loop_thread: Any) -> None:
    conn = connect(url.format(port=closed_port()), connect_timeout=0.5)
    backend = BackendCase(conn, topology="cluster" if "cluster" in url else "standalone", mode=mode,
                      loop=loop_thread)  # fmt: skip
    with pytest.raises(BackendUnavailable):
        backend.execute(command("PING"))
    _close(backend)


def _close(backend: BackendCase) -> None:
    if backend.is_async:
        backend.loop.run(backend.conn.aclose())
    else:
        backend.conn.close()


def test_one_connection_serves_several_event_loops(standalone_conn: Connection) -> None:
    import asyncio

    async def ping() -> Any:
        driver = standalone_conn.async_driver()
        reply = await driver.execute(command("PING"))
        await standalone_conn.aclose()
        return reply

    assert asyncio.run(ping()) is True
    assert asyncio.run(ping()) is True


def test_async_tasks_beyond_the_connection_limit_wait_for_one(
    standalone_conn: Connection,
) -> None:
    """More tasks than connections queue for one (redis-py's own pool would refuse them)."""
    import asyncio

    conn = connect(standalone_conn.url, max_connections=2)

    async def scenario() -> list[Any]:
        driver = conn.async_driver()
        # Two BLPOPs hold both connections for 0.3 s; the PINGs queue behind them.
        held = [driver.execute(command("BLPOP", f"nothing:{n}", "0.3")) for n in range(2)]
        queued = [driver.execute(command("PING")) for _ in range(5)]
        try:
            return await asyncio.gather(*held, *queued)
        finally:
            await conn.aclose()

    assert asyncio.run(scenario()) == [None, None, True, True, True, True, True]


def test_a_task_that_waits_too_long_for_a_connection_is_a_timeout(
    standalone_conn: Connection,
) -> None:
    import asyncio

    from redkit.drivers.redis import AsyncRedisDriver

    async def scenario() -> tuple[BaseException | None, Any]:
        client = redis.asyncio.Redis.from_url(standalone_conn.url, max_connections=1)
        driver = AsyncRedisDriver(client, slots=1, slot_wait=0.1)
        busy = asyncio.ensure_future(driver.execute(command("BLPOP", "nothing", "0.5")))
        await asyncio.sleep(0.05)
        refused: BaseException | None = None
        try:
            await driver.execute(command("PING"))
        except BackendTimeout as exc:
            refused = exc
        await busy
        after = await driver.execute(command("PING"))  # the slot is free again
        await client.aclose()
        return refused, after

    refused, after = asyncio.run(scenario())
    assert isinstance(refused, BackendTimeout)
    assert "stayed busy" in str(refused)
    assert after is True
