"""The blocking driver's shared connection: many threads, one connection, replies kept apart.

Every test runs real threads against a real ``redis-server``: the commands of threads that
wait at the same time are written together (see :mod:`redkit.drivers.shared`), and what is
checked is what each thread gets back — its own replies, in order, its own errors — and that
a server that fails mid-batch answers every waiting thread with a typed error in time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from redkit.core.errors import BackendError, BackendTimeout, BackendUnavailable, CommandError
from redkit.core.ops import Pipeline, ScriptCall, command
from redkit.core.scripts import Script
from redkit.drivers.connect import Connection
from redkit.drivers.embedded import EmbeddedRedis
from redkit.drivers.redis import RedisDriver

THREADS = 24
CALLS = 150
#: A script that is not on the server until its first call: NOSCRIPT, then EVAL.
COUNTER = Script("test_sync_counter", "return redis.call('INCRBY', KEYS[1], ARGV[1])")


def run_threads(count: int, work: Callable[[int], Any], limit: float = 60.0) -> list[Any]:
    """Run ``work(n)`` in ``count`` threads started together; their results, or exceptions."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def body(n: int) -> None:
        start.wait()
        try:
            results[n] = work(n)
        except BaseException as exc:  # handed to the test, which checks what it is
            results[n] = exc

    threads = [threading.Thread(target=body, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + limit
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert not any(thread.is_alive() for thread in threads), "a thread never got its answer"
    return results


@pytest.fixture
def conn(redis_server: EmbeddedRedis) -> Iterator[Connection]:
    with redis_server.client() as admin:
        admin.flushall()
    conn = redis_server.connect()
    yield conn
    conn.close()


def _clients_named(admin: redis.Redis, name: str) -> int:
    return sum(1 for client in admin.client_list() if client.get("name") == name)


def test_threads_incrementing_their_own_keys_get_their_own_sequences(
    redis_server: EmbeddedRedis,
) -> None:
    with redis_server.client() as admin:
        admin.flushall()
    conn = redis_server.connect(client_name="shared-test")
    driver = conn.sync_driver()

    def work(n: int) -> list[int]:
        return [driver.execute(command("INCR", f"seq:{n}")) for _ in range(CALLS)]

    try:
        results = run_threads(THREADS, work)
        assert results == [list(range(1, CALLS + 1))] * THREADS
        with redis_server.client() as admin:
            # Every thread's commands went on one connection (redis-py's own pool would have
            # opened one per thread that ran at the same time).
            assert _clients_named(admin, "shared-test") == 1
            assert [int(admin.get(f"seq:{n}") or 0) for n in range(THREADS)] == [CALLS] * THREADS
    finally:
        conn.close()


def test_script_calls_and_pipelines_from_threads_keep_their_replies(conn: Connection) -> None:
    driver = conn.sync_driver()

    def work(n: int) -> list[Any]:
        got: list[Any] = []
        for step in range(1, 41):
            got.append(driver.execute(ScriptCall(COUNTER, (f"s:{n}",), (2,))))
            got.append(
                driver.execute(
                    Pipeline((command("INCR", f"p:{n}"), ScriptCall(COUNTER, (f"p:{n}",), (10,))))
                )
            )
            assert got[-2:] == [2 * step, [11 * step - 10, 11 * step]]
        return got

    for result in run_threads(16, work):
        assert isinstance(result, list), result


def test_a_wrongtype_error_fails_only_its_caller(conn: Connection) -> None:
    driver = conn.sync_driver()
    driver.execute(command("RPUSH", "a-list", "x"))

    def work(n: int) -> list[Any]:
        if n % 4 == 0:  # these threads only ever send a command on the wrong type
            errors = []
            for _ in range(60):
                with pytest.raises(CommandError, match="WRONGTYPE") as caught:
                    driver.execute(command("INCR", "a-list"))
                errors.append(caught.value)
            return errors
        return [driver.execute(command("INCR", f"ok:{n}")) for _ in range(60)]

    results = run_threads(16, work)
    for n, result in enumerate(results):
        if n % 4 == 0:
            assert len(result) == 60
            assert all(isinstance(e, CommandError) for e in result)
        else:
            assert result == list(range(1, 61))


def test_a_pipeline_item_error_stays_in_its_place(conn: Connection) -> None:
    driver = conn.sync_driver()
    driver.execute(command("SET", "text", "not a number"))
    replies = driver.execute(
        Pipeline((command("INCR", "n"), command("INCR", "text"), command("INCR", "n")))
    )
    assert replies[0] == 1
    assert replies[2] == 2
    assert isinstance(replies[1], CommandError)


def test_script_flush_mid_run_reruns_each_call_by_its_source(
    conn: Connection, redis_server: EmbeddedRedis
) -> None:
    driver = conn.sync_driver()
    running = threading.Event()
    running.set()

    def flusher() -> None:
        with redis_server.client() as admin:
            while running.is_set():
                admin.script_flush()
                time.sleep(0.002)

    flushing = threading.Thread(target=flusher, daemon=True)
    flushing.start()
    try:
        results = run_threads(
            16,
            lambda n: [driver.execute(ScriptCall(COUNTER, (f"f:{n}",), (1,))) for _ in range(100)],
        )
    finally:
        running.clear()
        flushing.join(5)
    assert results == [list(range(1, 101))] * 16


def test_a_blocking_command_goes_alone_and_holds_up_no_one(conn: Connection) -> None:
    driver = conn.sync_driver()
    driver.execute(command("PING"))  # the shared connection exists before the BLPOP starts
    blocked = threading.Thread(
        target=lambda: driver.execute(command("BLPOP", "never-pushed", 3)), daemon=True
    )
    blocked.start()
    time.sleep(0.1)  # the BLPOP is waiting on the server
    began = time.monotonic()
    assert driver.execute(command("INCR", "quick")) == 1
    assert time.monotonic() - began < 2  # not behind the BLPOP's 3 s
    blocked.join(5)


def test_connections_the_server_closed_are_replaced_without_an_error(
    conn: Connection, redis_server: EmbeddedRedis
) -> None:
    # What a restart looks like from here: every connection dropped while idle.
    driver = conn.sync_driver()
    assert driver.execute(command("INCR", "after-kill")) == 1
    with redis_server.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    assert driver.execute(command("INCR", "after-kill")) == 2
    with redis_server.client() as admin:
        admin.client_kill_filter(_type="normal", skipme=True)
    results = run_threads(16, lambda n: driver.execute(command("INCR", f"again:{n}")))
    assert results == [1] * 16


def test_connections_killed_mid_run_never_apply_a_command_twice(
    conn: Connection, redis_server: EmbeddedRedis
) -> None:
    driver = conn.sync_driver()
    stop = time.monotonic() + 2.0

    def work(n: int) -> tuple[int, list[tuple[int, int]]]:
        key, expected, failures, wrong = f"once:{n}", 0, 0, []
        with redis_server.client() as reader:
            while time.monotonic() < stop:
                try:
                    if n % 2:
                        got = driver.execute(command("INCR", key))
                    else:
                        got = driver.execute(ScriptCall(COUNTER, (key,), (1,)))
                except (BackendUnavailable, BackendTimeout):
                    # Killed with the command on the wire: it may have run; count from Redis.
                    failures += 1
                    expected = int(reader.get(key) or 0)
                    continue
                expected += 1
                if got != expected:
                    wrong.append((got, expected))
        return failures, wrong

    def killer() -> None:
        with redis_server.client() as admin:
            while time.monotonic() < stop:
                time.sleep(0.1)
                admin.client_kill_filter(_type="normal", skipme=True)

    killing = threading.Thread(target=killer, daemon=True)
    killing.start()
    results = run_threads(32, work)
    killing.join(5)
    assert [wrong for _, wrong in results] == [[]] * 32  # no INCR counted twice


def test_a_timeout_drops_the_connection_and_no_reply_lands_on_a_later_command(
    redis_server: EmbeddedRedis,
) -> None:
    with redis_server.client() as admin:
        admin.flushall()
        admin.set("b", "bee")
        conn = redis_server.connect(socket_timeout=0.2)
        driver = conn.sync_driver()
        try:
            driver.execute(command("PING"))
            admin.client_pause(600, all=False)  # writes wait; the reply comes after our timeout
            with pytest.raises(BackendTimeout):
                driver.execute(command("INCR", "a"))
            time.sleep(0.6)
            # Not the timed-out INCR's late reply: that connection was dropped.
            assert driver.execute(command("GET", "b")) == b"bee"
        finally:
            conn.close()


def test_threads_whose_batch_times_out_all_hear_so_and_later_replies_stay_theirs(
    redis_server: EmbeddedRedis,
) -> None:
    with redis_server.client() as admin:
        admin.flushall()
        admin.mset({f"own:{n}": f"value {n}" for n in range(16)})
        conn = redis_server.connect(socket_timeout=0.3)
        driver = conn.sync_driver()
        try:
            driver.execute(command("PING"))
            admin.client_pause(900, all=False)  # every write waits past the timeout

            def work(n: int) -> tuple[Any, float]:
                began = time.monotonic()
                try:
                    driver.execute(command("INCR", f"count:{n}"))
                except BackendError as exc:
                    return exc, time.monotonic() - began
                return None, time.monotonic() - began

            for error, took in run_threads(16, work, limit=10):
                assert isinstance(error, BackendTimeout)
                assert took < 0.9  # about its own 0.3 s, not the pause
            time.sleep(1.0)
            answers = run_threads(16, lambda n: driver.execute(command("GET", f"own:{n}")))
            assert answers == [f"value {n}".encode() for n in range(16)]
        finally:
            conn.close()


def test_a_redis_that_never_answers_times_out_every_waiting_thread(hung_port: int) -> None:
    conn = Connection(f"redis://127.0.0.1:{hung_port}", socket_timeout=0.3, connect_timeout=0.3)
    driver = conn.sync_driver()

    def work(n: int) -> tuple[type[BaseException], float]:
        began = time.monotonic()
        try:
            driver.execute(command("INCR", f"k{n}"))
        except BackendError as exc:
            return type(exc), time.monotonic() - began
        raise AssertionError("a hung server answered")

    try:
        results = run_threads(16, work, limit=10)
    finally:
        conn.close()
    for kind, took in results:
        assert kind is BackendTimeout
        assert took < 1.5  # its own timeout (0.3 s) and scheduling, not 16 timeouts in a row


def test_a_server_killed_mid_run_gives_every_thread_a_typed_error() -> None:
    server = EmbeddedRedis().start()
    conn = server.connect(socket_timeout=1.0, connect_timeout=1.0)
    driver = conn.sync_driver()
    started = threading.Barrier(17)
    errors: list[BaseException] = []

    def work(n: int) -> int:
        calls = 0
        started.wait()
        while True:
            try:
                driver.execute(command("INCR", f"k{n}"))
            except BackendError as exc:
                errors.append(exc)
                return calls
            calls += 1

    try:
        threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(16)]
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(0.3)
        killed = time.monotonic()
        os.kill(server.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(max(0.0, killed + 5 - time.monotonic()))
        assert not any(thread.is_alive() for thread in threads)
        assert time.monotonic() - killed < 4  # each within about its 1 s timeout
        assert len(errors) == 16
        assert all(isinstance(e, (BackendUnavailable, BackendTimeout)) for e in errors), errors
    finally:
        conn.close()
        server.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connection(conn: Connection) -> None:
    driver = conn.sync_driver()
    assert driver.execute(command("INCR", "parent")) == 1  # the shared connection is open
    child = os.fork()
    if child == 0:  # the child: its replies must be its own, on a socket of its own
        ok = False
        try:
            ok = [driver.execute(command("INCR", "child")) for _ in range(50)] == list(range(1, 51))
        finally:
            os._exit(0 if ok else 1)
    for _ in range(50):  # the parent keeps using its socket meanwhile
        driver.execute(command("INCR", "parent"))
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert driver.execute(command("INCR", "parent")) == 52


def test_an_argument_hiredis_cannot_pack_is_refused_by_redis_py(conn: Connection) -> None:
    driver = conn.sync_driver()
    with pytest.raises(BackendError, match="DataError"):
        driver.execute(command("SET", "k", True))  # type: ignore[arg-type]
    assert driver.execute(command("SET", "k", memoryview(b"v"))) is True  # type: ignore[arg-type]
    assert driver.execute(command("GET", "k")) == b"v"


def test_shared_can_be_turned_off(redis_server: EmbeddedRedis) -> None:
    with pytest.raises(TypeError, match="shared must be True or False"):
        RedisDriver(redis_server.client(), shared="yes")  # type: ignore[arg-type]
    with redis_server.client() as admin:
        admin.flushall()
    driver = RedisDriver(redis_server.client(), shared=False)
    try:
        results = run_threads(
            8, lambda n: [driver.execute(command("INCR", f"u{n}")) for _ in range(50)]
        )
        assert results == [list(range(1, 51))] * 8
    finally:
        driver.close()


def test_autopipeline_false_keeps_redis_pys_pool_for_threads(redis_server: EmbeddedRedis) -> None:
    with redis_server.client() as admin:
        admin.flushall()
    conn = redis_server.connect(autopipeline=False, client_name="pooled-test")
    driver = conn.sync_driver()
    try:
        results = run_threads(
            16, lambda n: [driver.execute(command("INCR", f"pooled:{n}")) for _ in range(50)]
        )
        assert results == [list(range(1, 51))] * 16
        with redis_server.client() as admin:
            # Threads that waited at once each took a connection of the pool.
            assert _clients_named(admin, "pooled-test") > 1
    finally:
        conn.close()
