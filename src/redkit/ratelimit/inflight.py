"""A multi-region limiter's work in flight: its count, each decision's share, the analytics sends.

A multi-region decision answers before its work is done: the writes to the regions that did
not answer first, the catch-up once all have answered, the analytics send. The limiter counts
all of it (:class:`PendingCount`, what ``flush()`` waits for); each decision's share completes
that decision's :class:`~redkit.ratelimit.result.Pending` handle (:class:`Work` in the blocking
class, :func:`handle_of` its tasks in the asyncio one).

The analytics sends go one at a time, and a decision's handle waits for the first send that
starts after its count: every decision counted while a send waits to start joins that send, so
a burst of decisions queues one send, not one each (:class:`AnalyticsSends`,
:class:`AsyncAnalyticsSends`). When the send a decision waits for is done, its count has been
written, by that send or by the one before it, unless that send failed: a failed send is
logged and puts its events back for the next one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redkit.ratelimit.result import Pending

__all__ = ["AnalyticsSends", "AsyncAnalyticsSends", "PendingCount", "Work", "handle_of", "logged"]

log = logging.getLogger("redkit.ratelimit")


class PendingCount:
    """The background work of a blocking limiter: a count (``len()``), and a wait for zero."""

    def __init__(self) -> None:
        self._count = 0
        self._done = threading.Condition()

    def __len__(self) -> int:
        return self._count

    def add(self) -> None:
        """One more part under way."""
        with self._done:
            self._count += 1

    def finish(self) -> None:
        """One part done."""
        with self._done:
            self._count -= 1
            if self._count == 0:
                self._done.notify_all()

    def wait(self, timeout: float | None) -> bool:
        """Wait until no part is under way, ``timeout`` seconds at most; True if none is."""
        with self._done:
            return self._done.wait_for(lambda: self._count == 0, timeout)


class Work:
    """One decision's parts in the background (blocking); :attr:`handle` completes with the last.

    It starts with one part, the caller's own, which :meth:`finish` ends once the decision is
    answered and its analytics send queued: until then parts may still be added. Every part
    is counted in the limiter's :class:`PendingCount` too, and leaves it after the handle has
    completed, so a ``flush()`` that returned True saw every handle complete.
    """

    def __init__(self, count: PendingCount) -> None:
        self._count = count
        self._left = 0
        self._lock = threading.Lock()
        self.handle, self._complete = Pending.started()
        self.add()  # the caller's part

    def add(self) -> None:
        """One more part under way."""
        self._count.add()
        with self._lock:
            self._left += 1

    def finish(self, _: object = None) -> None:
        """One part done (usable as a future's done callback)."""
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            self._complete()
        self._count.finish()


def logged(what: str, work: Work, future: concurrent.futures.Future[Any]) -> None:
    """A future's done callback: log its error as ``what`` went wrong, end its part of ``work``."""
    error = future.exception()
    if error is not None:
        log.warning("multi-region %s: %s", what, error)
    work.finish()


class AnalyticsSends:
    """The analytics sends of a blocking limiter: one at a time, in a thread of their own.

    ``send`` sends whatever is counted when it starts; its errors are logged here, once.
    """

    def __init__(self, send: Callable[[], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._queued: concurrent.futures.Future[None] | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="redkit-multiregion-analytics"
        )

    def next(self) -> concurrent.futures.Future[None]:
        """The send that carries what is counted now: the one waiting to start, or a new one."""
        with self._lock:
            if self._queued is None:
                self._queued = self._pool.submit(self._run)
            return self._queued

    def _run(self) -> None:
        with self._lock:
            self._queued = None  # what is counted from now on waits for the next send
        try:
            self._send()
        except Exception as exc:  # the events were put back: the next send retries them
            log.warning("multi-region analytics not written: %s", exc)

    def close(self) -> None:
        """Wait for the queued sends, then stop the thread."""
        self._pool.shutdown(wait=True)


class AsyncAnalyticsSends:
    """The analytics sends of an asyncio limiter: one at a time per event loop, in tasks.

    ``send`` sends whatever is counted when it starts; its errors are logged here, once.
    """

    def __init__(self, send: Callable[[], Awaitable[None]]) -> None:
        self._send = send
        self._queued: asyncio.Task[None] | None = None
        self._last: asyncio.Task[None] | None = None

    def next(self) -> tuple[asyncio.Task[None], bool]:
        """The send that carries what is counted now, and whether it is a new task."""
        loop = asyncio.get_running_loop()
        queued = self._queued
        # A queued send cancelled before it started (its loop closing) is no longer queued.
        if queued is not None and queued.get_loop() is loop and not queued.done():
            return queued, False
        last = self._last if self._last is not None and self._last.get_loop() is loop else None
        task = loop.create_task(self._run(last))
        self._queued = self._last = task
        return task, True

    async def _run(self, after: asyncio.Task[None] | None) -> None:
        if after is not None and not after.done():
            await asyncio.wait((after,))  # never cancels it
        if self._queued is asyncio.current_task():
            self._queued = None  # what is counted from now on waits for the next send
        try:
            await self._send()
        except Exception as exc:  # the events were put back: the next send retries them
            log.warning("multi-region analytics not written: %s", exc)


def handle_of(tasks: Sequence[asyncio.Task[Any]]) -> Pending:
    """A handle completing when every one of ``tasks`` (of the running loop) is done."""
    handle, complete = Pending.started(asyncio.get_running_loop())
    left = [len(tasks)]

    def one_done(_: asyncio.Task[Any]) -> None:
        left[0] -= 1
        if left[0] == 0:
            complete()

    for task in tasks:
        task.add_done_callback(one_done)
    return handle
