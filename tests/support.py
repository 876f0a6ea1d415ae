"""Test support: one test body runs on every backend (standalone/cluster x sync/async)."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from redkit.core.flow import Flow, run_async, run_sync
from redkit.drivers.connect import Connection

T = TypeVar("T")


class LoopThread:
    """An event loop in a thread of its own; async code runs there, tests stay plain."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class Backend:
    """A Redis (standalone or cluster) seen through the sync or the async driver."""

    def __init__(self, conn: Connection, *, topology: str, mode: str, loop: LoopThread) -> None:
        self.conn = conn
        self.topology = topology
        self.mode = mode
        self.loop = loop

    @property
    def is_cluster(self) -> bool:
        return self.topology == "cluster"

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` with the runner of this backend's mode."""
        if not self.is_async:
            return run_sync(flow, self.conn.sync_driver())

        async def drive() -> T:
            return await run_async(flow, self.conn.async_driver())

        return self.loop.run(drive())

    def execute(self, op: Any) -> Any:
        """Execute one operation on this backend's driver."""
        if not self.is_async:
            return self.conn.sync_driver().execute(op)

        async def go() -> Any:
            return await self.conn.async_driver().execute(op)

        return self.loop.run(go())

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn``; await it on the loop thread when it is a coroutine function."""
        result = fn(*args, **kwargs)
        if asyncio.iscoroutine(result):
            return self.loop.run(result)
        return result

    def __repr__(self) -> str:
        return f"<Backend {self.topology}-{self.mode}>"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as dead)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        text = stat.read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = text.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")
