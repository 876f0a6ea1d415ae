"""The runners, driven by a driver that answers from a script of replies (no server)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from redkit.core.errors import BackendTimeout, CommandError
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Call, Command, Pipeline, RedisOp, ScriptCall, Sleep, command
from redkit.core.scripts import Script


class ScriptedDriver:
    """Answers each operation with the next scripted reply; an exception is raised instead."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.seen: list[RedisOp] = []

    def execute(self, op: RedisOp) -> Any:
        self.seen.append(op)
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def close(self) -> None:
        pass


class AsyncScriptedDriver(ScriptedDriver):
    async def execute(self, op: RedisOp) -> Any:  # type: ignore[override]
        await asyncio.sleep(0)
        return ScriptedDriver.execute(self, op)

    async def aclose(self) -> None:
        pass


def counter_flow(key: str) -> Flow[tuple[int, Any]]:
    count = yield command("INCR", key)
    ttl = yield command("PTTL", key)
    return count, ttl


def run_both(flow_factory: Any, *replies: Any) -> list[Any]:
    sync_driver = ScriptedDriver(*replies)
    async_driver = AsyncScriptedDriver(*replies)
    sync_result = run_sync(flow_factory(), sync_driver)
    async_result = asyncio.run(run_async(flow_factory(), async_driver))
    assert sync_driver.seen == async_driver.seen
    return [sync_result, async_result]


def test_flow_receives_replies_in_order_and_returns_its_value() -> None:
    sync_driver = ScriptedDriver(3, 950)
    assert run_sync(counter_flow("k"), sync_driver) == (3, 950)
    assert sync_driver.seen == [Command(("INCR", "k")), Command(("PTTL", "k"))]
    async_driver = AsyncScriptedDriver(3, 950)
    assert asyncio.run(run_async(counter_flow("k"), async_driver)) == (3, 950)
    assert async_driver.seen == sync_driver.seen


def test_flow_without_operations_returns_at_once() -> None:
    def nothing() -> Flow[str]:
        return "done"
        yield  # pragma: no cover - makes this a generator

    assert run_both(nothing) == ["done", "done"]


def test_driver_error_is_thrown_into_the_flow_which_may_recover() -> None:
    def tolerant() -> Flow[str]:
        try:
            yield command("GET", "k")
        except BackendTimeout:
            return "fallback"
        return "value"

    assert run_both(tolerant, BackendTimeout("slow")) == ["fallback", "fallback"]


def test_driver_error_not_caught_by_the_flow_reaches_the_caller() -> None:
    with pytest.raises(CommandError, match="WRONGTYPE"):
        run_sync(counter_flow("k"), ScriptedDriver(CommandError("WRONGTYPE")))
    with pytest.raises(CommandError, match="WRONGTYPE"):
        asyncio.run(run_async(counter_flow("k"), AsyncScriptedDriver(CommandError("WRONGTYPE"))))


def test_flow_can_keep_going_after_recovering() -> None:
    def retrying() -> Flow[Any]:
        for _ in range(3):
            try:
                return (yield command("GET", "k"))
            except BackendTimeout:
                yield Sleep(0)
        return None

    replies = (BackendTimeout("1"), BackendTimeout("2"), b"v")
    assert run_both(retrying, *replies) == [b"v", b"v"]


def test_sleep_is_not_sent_to_the_driver() -> None:
    def sleepy() -> Flow[str]:
        yield Sleep(0.001)
        value = yield command("GET", "k")
        return value.decode()

    assert run_both(sleepy, b"x") == ["x", "x"]


def test_call_runs_user_code_with_args_and_kwargs() -> None:
    seen: list[Any] = []

    def loader(a: int, *, b: int) -> int:
        seen.append((a, b))
        return a + b

    def flow() -> Flow[int]:
        result: int = yield Call(loader, (1,), {"b": 2})
        return result

    assert run_both(flow) == [3, 3]
    assert seen == [(1, 2), (1, 2)]


def test_async_runner_awaits_async_user_code() -> None:
    async def loader() -> str:
        await asyncio.sleep(0)
        return "loaded"

    def flow() -> Flow[str]:
        result: str = yield Call(loader)
        return result

    assert asyncio.run(run_async(flow(), AsyncScriptedDriver())) == "loaded"


def test_sync_runner_refuses_async_user_code_with_a_clear_error() -> None:
    async def loader() -> str:  # pragma: no cover - never awaited by design
        return "loaded"

    def flow() -> Flow[str]:
        result: str = yield Call(loader)
        return result

    with pytest.raises(TypeError, match="Async"):
        run_sync(flow(), ScriptedDriver())


def test_user_code_exception_is_thrown_into_the_flow() -> None:
    def broken() -> int:
        raise LookupError("no such user")

    def flow() -> Flow[str]:
        try:
            yield Call(broken)
        except LookupError as exc:
            return f"handled {exc}"
        return "not reached"

    assert run_both(flow) == ["handled no such user", "handled no such user"]


def test_script_and_pipeline_operations_are_passed_through_as_data() -> None:
    script = Script("t", "return 1")

    def flow() -> Flow[Any]:
        one = yield ScriptCall(script, ("{a}:x",), (5,))
        many = yield Pipeline((command("GET", "a"), ScriptCall(script, ("b",), ())))
        return one, many

    driver = ScriptedDriver(1, [b"v", 1])
    assert run_sync(flow(), driver) == (1, [b"v", 1])
    assert driver.seen[0] == ScriptCall(script, ("{a}:x",), (5,))
    pipeline = driver.seen[1]
    assert isinstance(pipeline, Pipeline)
    assert pipeline.transaction is False
    assert len(pipeline.ops) == 2


def test_a_flow_of_calls_runs_without_a_driver_and_a_redis_op_there_is_refused() -> None:
    def calls_only() -> Flow[int]:
        first = yield Call(lambda: 2)
        second = yield Call(lambda n: n * 10, (first,))
        return int(second)

    async def twice(n: int) -> int:
        return n * 2

    def awaits() -> Flow[int]:
        return int((yield Call(twice, (4,))))

    assert run_sync(calls_only()) == 20
    assert asyncio.run(run_async(calls_only())) == 20
    assert asyncio.run(run_async(awaits())) == 8

    def asks_redis() -> Flow[Any]:
        return (yield command("GET", "k"))

    with pytest.raises(TypeError, match="Command needs a driver"):
        run_sync(asks_redis())
    with pytest.raises(TypeError, match="Command needs a driver"):
        asyncio.run(run_async(asks_redis()))


class Cleanup:
    """A flow that records whether its ``finally`` ran; the test keeps a reference to it, so
    only the runner closing it (not garbage collection) can run that ``finally``."""

    def __init__(self) -> None:
        self.ran_finally = False

    def flow(self, op: Any) -> Flow[Any]:
        try:
            return (yield op)
        finally:
            self.ran_finally = True


def interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("op", "driver"),
    [
        (Call(interrupt), None),  # user code interrupted: not an Exception, not thrown in
        (command("GET", "k"), ScriptedDriver(KeyboardInterrupt())),
    ],
    ids=["call", "driver"],
)
def test_sync_runner_closes_a_flow_it_leaves_on_an_interrupt(op: Any, driver: Any) -> None:
    cleanup = Cleanup()
    flow = cleanup.flow(op)
    with pytest.raises(KeyboardInterrupt):
        run_sync(flow, driver)
    assert cleanup.ran_finally
    assert inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED


def test_async_runner_closes_a_flow_whose_caller_is_cancelled() -> None:
    cleanup = Cleanup()
    flow = cleanup.flow(command("GET", "k"))

    class Stuck:
        """A driver whose reply never comes: the task waits there until cancelled."""

        def __init__(self) -> None:
            self.asked = asyncio.Event()

        async def execute(self, op: RedisOp) -> Any:
            self.asked.set()
            await asyncio.Event().wait()

        async def aclose(self) -> None:
            pass

    async def main() -> None:
        driver = Stuck()
        task = asyncio.ensure_future(run_async(flow, driver))
        await driver.asked.wait()
        assert inspect.getgeneratorstate(flow) == inspect.GEN_SUSPENDED
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cleanup.ran_finally
    assert inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED


def test_async_runner_closes_a_flow_whose_sleep_is_cancelled() -> None:
    cleanup = Cleanup()
    flow = cleanup.flow(Sleep(3600))

    async def main() -> None:
        task = asyncio.ensure_future(run_async(flow))
        while inspect.getgeneratorstate(flow) != inspect.GEN_SUSPENDED:
            await asyncio.sleep(0)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(task, 0)  # wait_for cancels the task it gives up on
        assert task.cancelled()

    asyncio.run(main())
    assert cleanup.ran_finally
    assert inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED


def test_a_flow_that_fails_or_returns_is_finished_for_both_runners() -> None:
    for reply in (b"v", CommandError("WRONGTYPE")):
        for runner in ("sync", "async"):
            cleanup = Cleanup()
            flow = cleanup.flow(command("GET", "k"))
            try:
                if runner == "sync":
                    run_sync(flow, ScriptedDriver(reply))
                else:
                    asyncio.run(run_async(flow, AsyncScriptedDriver(reply)))
            except CommandError:
                assert isinstance(reply, CommandError)
            assert cleanup.ran_finally
            assert inspect.getgeneratorstate(flow) == inspect.GEN_CLOSED
