"""The drivers a connection hands out: made on first use, kept, and closed together.

A connection (to Redis, or to Upstash over REST) keeps one blocking driver per requested
timeout, and one asyncio driver per event loop and timeout: clients set their timeouts per
client, not per call, and an asyncio client belongs to the loop it was made in.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["DriverPool"]


class _Closable(Protocol):
    def close(self) -> None: ...


class _AsyncClosable(Protocol):
    async def aclose(self) -> None: ...


S = TypeVar("S", bound=_Closable)
A = TypeVar("A", bound=_AsyncClosable)


class DriverPool(Generic[S, A]):
    """Blocking drivers per timeout and asyncio drivers per (event loop, timeout).

    Args:
        make_sync: makes the blocking driver of a timeout (``None``: the connection's own).
        make_async: makes the asyncio driver of a timeout, in the running loop.

    """

    def __init__(
        self,
        make_sync: Callable[[float | None], S],
        make_async: Callable[[float | None], A],
    ) -> None:
        self._make_sync = make_sync
        self._make_async = make_async
        self._sync: dict[float | None, S] = {}
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float | None, A]] = (
            weakref.WeakKeyDictionary()
        )
        self._creating = threading.Lock()

    def sync(self, timeout: float | None) -> S:
        """The blocking driver of ``timeout``, made on first use (once, even when threads race)."""
        driver = self._sync.get(timeout)
        if driver is None:
            with self._creating:
                driver = self._sync.get(timeout)
                if driver is None:
                    driver = self._sync[timeout] = self._make_sync(timeout)
        return driver

    def async_(self, timeout: float | None) -> A:
        """The asyncio driver of ``timeout`` in the running event loop, made on first use."""
        loop = asyncio.get_running_loop()
        drivers = self._async.get(loop)
        if drivers is None:
            drivers = self._async[loop] = {}
        driver = drivers.get(timeout)
        if driver is None:
            driver = drivers[timeout] = self._make_async(timeout)
        return driver

    def close(self) -> None:
        """Close the blocking drivers (new ones are made if asked for again)."""
        drivers, self._sync = self._sync, {}
        for driver in drivers.values():
            driver.close()

    async def aclose_loop(self) -> None:
        """Close the asyncio drivers of the running loop."""
        for driver in self._async.pop(asyncio.get_running_loop(), {}).values():
            await driver.aclose()
