"""Background sending of the cached fixed window's counts: a thread, or an asyncio task.

Callers never wait for these sends. A failed send keeps its counts (they are put back) and is
retried with a growing pause; a send that timed out may have been applied and is sent again,
which can only make the limit stricter, never looser.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from redkit.core.errors import BackendError

__all__ = ["AsyncFlusher", "ThreadFlusher"]

log = logging.getLogger("redkit.ratelimit")

_FIRST_PAUSE = 0.05  # seconds before retrying a failed send; doubles up to _LONGEST_PAUSE
_LONGEST_PAUSE = 2.0
_ASYNC_ATTEMPTS = 6  # then the task ends; the next decision with counts to send starts another


class ThreadFlusher:
    """Runs ``flush`` in a daemon thread whenever :meth:`kick` says there is something to send."""

    def __init__(self, flush: Callable[[], None], has_pending: Callable[[], bool]) -> None:
        self._flush = flush
        self._has_pending = has_pending
        self._wake = threading.Event()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def kick(self) -> None:
        """Make sure the thread runs and sends what is pending."""
        if self._thread is None:
            with self._start:
                if self._thread is None and not self._closed:
                    self._thread = threading.Thread(
                        target=self._run, name="redkit-ratelimit-flush", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait()
            self._wake.clear()
            pause = _FIRST_PAUSE
            while self._has_pending() and not self._closed:
                try:
                    self._flush()
                    pause = _FIRST_PAUSE
                except BackendError as exc:
                    log.warning("cached fixed window: counts not sent to Redis yet: %s", exc)
                    self._wake.wait(pause)  # close() cuts the pause short
                    pause = min(pause * 2, _LONGEST_PAUSE)

    def close(self) -> None:
        """Stop the thread (what is still pending stays for a last explicit flush)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)


class AsyncFlusher:
    """Runs ``flush`` in an asyncio task whenever :meth:`kick` says there is something to send."""

    def __init__(
        self, flush: Callable[[], Awaitable[None]], has_pending: Callable[[], bool]
    ) -> None:
        self._flush = flush
        self._has_pending = has_pending
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Make sure a task runs in the current event loop and sends what is pending."""
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        pause = _FIRST_PAUSE
        failures = 0
        while self._has_pending():
            try:
                await self._flush()
                failures = 0
            except BackendError as exc:
                failures += 1
                log.warning("cached fixed window: counts not sent to Redis yet: %s", exc)
                if failures >= _ASYNC_ATTEMPTS:
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, _LONGEST_PAUSE)

    async def close(self) -> None:
        """Wait for a send under way in this event loop."""
        task = self._task
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            await task
