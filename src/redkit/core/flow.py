"""Flows and the two runners that drive them.

A flow is a generator that yields operations (:mod:`redkit.core.ops`) and receives their
results; its return value is the result of the whole behaviour. Each behaviour of redkit is
written once, as a flow, and runs blocking or in asyncio by handing it to :func:`run_sync` or
:func:`run_async` — the shape of httpx's ``Auth.auth_flow``.

When an operation fails, the runner throws the exception into the flow at the ``yield`` that
asked for it. A flow that does not catch it lets it propagate to the caller; a flow that does
can apply its failure policy (fall back to the loader, allow on timeout, ...).

Whatever way a runner leaves — a result, an error, ``KeyboardInterrupt`` in user code, a
cancelled task — it closes the flow before it returns (as httpx closes its auth flow), so the
flow's ``finally`` blocks run at once and no generator stays suspended until garbage collection.
A flow that cleans up on :class:`GeneratorExit` must not yield there: closing is not the place
for another round trip.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Generator
from typing import Any, TypeAlias, TypeVar

from redkit.core.driver import AsyncDriver, SyncDriver
from redkit.core.ops import Call, Command, Masters, OnNode, Op, Pipeline, ScriptCall, Sleep

__all__ = ["Flow", "run_async", "run_sync"]

T = TypeVar("T")

_REDIS_OPS = (ScriptCall, Command, Pipeline, Masters, OnNode)

#: A generator that yields operations, receives their results and returns a ``T``.
Flow: TypeAlias = Generator[Op, Any, T]


def run_sync(flow: Flow[T], driver: SyncDriver | None = None) -> T:
    """Drive ``flow`` to completion, blocking, and return its result.

    ``driver`` may be left out for a flow that sends nothing to Redis (only calls code).
    """
    try:
        op = next(flow)
        while True:
            try:
                reply: Any
                if isinstance(op, _REDIS_OPS):  # the common case first
                    if driver is None:
                        raise TypeError(f"{type(op).__name__} needs a driver: none was given")
                    reply = driver.execute(op)
                elif isinstance(op, Sleep):
                    time.sleep(op.seconds)
                    reply = None
                else:
                    reply = _call(op)
                    if inspect.isawaitable(reply):
                        _discard(reply)
                        raise TypeError(
                            f"{_name(op)} returned an awaitable: use the Async* variant of "
                            "this API with async functions"
                        )
            except Exception as exc:
                op = flow.throw(exc)
                continue
            op = flow.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        # A no-op once the flow has returned or raised; otherwise (an exception the flow is not
        # given, such as CancelledError) it runs the flow's cleanup now, not at gc.
        flow.close()


async def run_async(flow: Flow[T], driver: AsyncDriver | None = None) -> T:
    """Drive ``flow`` to completion in asyncio and return its result.

    ``driver`` may be left out for a flow that sends nothing to Redis (only calls code).
    """
    try:
        op = next(flow)
        while True:
            try:
                reply: Any
                if isinstance(op, _REDIS_OPS):
                    if driver is None:
                        raise TypeError(f"{type(op).__name__} needs a driver: none was given")
                    reply = await driver.execute(op)
                elif isinstance(op, Sleep):
                    await asyncio.sleep(op.seconds)
                    reply = None
                else:
                    reply = _call(op)
                    if inspect.isawaitable(reply):
                        reply = await reply
            except Exception as exc:
                op = flow.throw(exc)
                continue
            op = flow.send(reply)
    except StopIteration as stop:
        result: T = stop.value
        return result
    finally:
        # A no-op once the flow has returned or raised; otherwise (an exception the flow is not
        # given, such as CancelledError) it runs the flow's cleanup now, not at gc.
        flow.close()


def _call(op: Call) -> Any:
    return op.fn(*op.args, **(op.kwargs or {}))


def _name(op: Call) -> str:
    return getattr(op.fn, "__qualname__", repr(op.fn))


def _discard(awaitable: Any) -> None:
    # Close an unawaited coroutine so Python does not warn "never awaited" on top of our error.
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()
