"""In-process single flight: concurrent callers for one key share one load.

Go's ``singleflight``, for threads and for asyncio tasks: the first caller of a key runs the
work, the others wait for its outcome — value or exception — instead of running it again.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

__all__ = ["AsyncSingleFlight", "SingleFlight"]


class SingleFlight:
    """Single flight for threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, Future[Any]] = {}

    def run(self, key: str, work: Callable[[], Any]) -> Any:
        """``work()``, or the outcome of the call of it already running for ``key``."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = Future()
        if not leader:
            return call.result()
        try:
            result = work()
        except BaseException as exc:
            call.set_exception(exc)
            raise
        else:
            call.set_result(result)
            return result
        finally:
            with self._lock:
                del self._calls[key]


class AsyncSingleFlight:
    """Single flight for asyncio tasks (one table per event loop)."""

    def __init__(self) -> None:
        self._calls: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()

    async def run(self, key: str, work: Callable[[], Awaitable[Any]]) -> Any:
        """``await work()``, or the outcome of the call of it already running for ``key``."""
        loop = asyncio.get_running_loop()
        calls = self._calls.get(loop)
        if calls is None:
            calls = self._calls[loop] = {}
        call = calls.get(key)
        while call is not None:
            try:
                # shield: a waiter that is cancelled must not cancel the leader's work.
                return await asyncio.shield(call)
            except asyncio.CancelledError:
                if not call.cancelled():
                    raise  # this waiter itself was cancelled
            # The leader was cancelled, not this waiter: take over, or join the new leader.
            call = calls.get(key)
        call = calls[key] = loop.create_future()
        try:
            result = await work()
        except asyncio.CancelledError:
            call.cancel()
            raise
        except BaseException as exc:
            call.set_exception(exc)
            call.exception()  # marks it retrieved: no "never retrieved" log when nobody waited
            raise
        else:
            call.set_result(result)
            return result
        finally:
            if calls.get(key) is call:
                del calls[key]
