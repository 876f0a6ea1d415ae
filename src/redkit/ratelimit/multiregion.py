"""``MultiRegionRatelimit`` and its asyncio twin: one Redis per region, the first answer decides.

Every decision is sent to every region at once. The caller gets the first region's answer and
goes on; the other regions' writes continue in the background, and once all regions have
answered, those that lack some of the window's request ids get them
(:meth:`~redkit.ratelimit.regions.RegionsCore.merges`). That work is :attr:`pending`;
``flush()`` (``await flush()``) waits for it, ``close()`` (``await close()``) too.

Keys and fields are ``@upstash/ratelimit``'s ``MultiRegionRatelimit``'s (docs/multiregion.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from redkit.core.clock import ClientClock, Clock
from redkit.core.driver import AsyncDriver, Backend, SyncDriver, as_backend
from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import NO_ANSWER, BackendError, InvalidArgumentError
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Command, ScriptCall
from redkit.core.replies import as_int
from redkit.ratelimit.analytics import Usage
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.facade import DEFAULT_TIMEOUT, check_timeout, ephemeral_cache_of
from redkit.ratelimit.flows import DEFAULT_PREFIX, TimeoutPolicy
from redkit.ratelimit.limiters import FixedWindow, SlidingWindow
from redkit.ratelimit.regions import RegionAnswer, RegionsCore, Request
from redkit.ratelimit.result import RatelimitResult, Remaining

__all__ = ["AsyncMultiRegionRatelimit", "MultiRegionRatelimit"]

log = logging.getLogger("redkit.ratelimit")
#: Threads per region (blocking class): the calls one region has under way at once.
_WORKERS = 8


def _one(op: ScriptCall | Command) -> Flow[Any]:
    reply = yield op
    return reply


def _setup(
    redis: Sequence[object],
    limiter: object,
    prefix: str,
    timeout: float | None,
    on_timeout: TimeoutPolicy,
    ephemeral_cache: bool | EphemeralCache,
    clock: Clock | None,
    analytics: bool,
) -> tuple[list[Backend], RegionsCore, float | None]:
    if isinstance(redis, (str, bytes)) or not isinstance(redis, Sequence) or not redis:
        raise InvalidArgumentError(
            "redis must be a list of the regions' Redis (Connections or URLs), one per region, "
            f"got {type(redis).__name__}"
        )
    backends = [as_backend(region) for region in redis]
    check_timeout(timeout)
    cache = ephemeral_cache_of(ephemeral_cache)
    core = RegionsCore(
        limiter,
        clusters=[backend.is_cluster for backend in backends],
        prefix=prefix,
        clock=clock or ClientClock(),
        ephemeral_cache=cache,
        on_timeout=on_timeout,
        analytics=analytics,
    )
    return backends, core, float(timeout) if timeout else None


def _failure(errors: list[BaseException]) -> BaseException | None:
    """What to raise when no region answered: an error other than "no answer", if any."""
    for error in errors:
        if not isinstance(error, NO_ANSWER):
            return error
    return None


class _Pending:
    """Background work of a blocking limiter: a count, and a condition to wait on."""

    def __init__(self) -> None:
        self._count = 0
        self._done = threading.Condition()

    def __len__(self) -> int:
        return self._count

    def add(self) -> None:
        with self._done:
            self._count += 1

    def finish(self) -> None:
        with self._done:
            self._count -= 1
            if self._count == 0:
                self._done.notify_all()

    def wait(self, timeout: float | None) -> bool:
        with self._done:
            return self._done.wait_for(lambda: self._count == 0, timeout)


class MultiRegionRatelimit:
    """A rate limiter over several regions' Redis, blocking; the first region to answer decides.

    Args:
        redis: the regions: a list of :class:`redkit.Connection` (or URLs, redis-py clients),
            one per region, standalone or cluster.
        limiter: :class:`FixedWindow` or :class:`SlidingWindow` (the JS SDK supports no other).
        prefix: the start of every key; ``@upstash/ratelimit``'s by default.
        timeout: seconds a decision waits for the first region; ``None`` or 0: the
            connections' own timeouts. Past it, ``on_timeout`` answers.
        on_timeout: ``"allow"`` (fail open, the default) or ``"deny"``.
        ephemeral_cache: remember refused identifiers until their window ends and refuse them
            without a round trip: ``True``, ``False`` or a shared :class:`EphemeralCache`.
        clock: the clock naming the windows; this machine's by default (as the JS SDK).
        analytics: count allowed and blocked requests per identifier and hour, in Upstash's
            layout, in the first region (as the JS SDK); read with :meth:`get_usage`.

    Raises:
        InvalidArgumentError: for another algorithm, no regions, or a bad setting.

    """

    def __init__(
        self,
        redis: Sequence[object],
        limiter: FixedWindow | SlidingWindow,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        ephemeral_cache: bool | EphemeralCache = True,
        clock: Clock | None = None,
        analytics: bool = False,
    ) -> None:
        self._backends, self._core, self._timeout = _setup(
            redis, limiter, prefix, timeout, on_timeout, ephemeral_cache, clock, analytics
        )
        self._drivers: list[SyncDriver | None] = [None] * len(self._backends)
        self._lock = threading.Lock()
        # A pool per region: a slow region's calls queue behind each other, never in front of
        # a fast region's (one shared pool let a far region's backlog delay every decision).
        self._pools = [
            concurrent.futures.ThreadPoolExecutor(
                max_workers=_WORKERS, thread_name_prefix=f"redkit-multiregion-{region}"
            )
            for region in range(len(self._backends))
        ]
        #: Background work under way: the regions' writes and the catch-up (``len()``).
        self.pending = _Pending()

    @property
    def limiter(self) -> FixedWindow | SlidingWindow:
        """The algorithm applied in every region."""
        return self._core.limiter

    def _driver(self, region: int) -> SyncDriver:
        driver = self._drivers[region]
        if driver is None:
            with self._lock:
                driver = self._drivers[region]
                if driver is None:
                    driver = self._backends[region].sync_driver(timeout=self._timeout)
                    self._drivers[region] = driver
        return driver

    def _execute(self, region: int, op: ScriptCall | Command) -> Any:
        return run_sync(_one(op), self._driver(region))

    def _submit(self, region: int, op: ScriptCall | Command) -> concurrent.futures.Future[Any]:
        return self._pools[region].submit(self._execute, region, op)

    def _first(self, futures: list[concurrent.futures.Future[Any]]) -> tuple[int, Any] | None:
        """The first region's reply, waiting at most the timeout; ``None`` if none answered."""
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        waiting = set(futures)
        errors: list[BaseException] = []
        while waiting:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, waiting = concurrent.futures.wait(
                waiting, left, concurrent.futures.FIRST_COMPLETED
            )
            for future in done:
                error = future.exception()
                if error is None:
                    return futures.index(future), future.result()
                errors.append(error)
            if not done:
                break  # the timeout passed
        failure = _failure(errors)
        if failure is not None and not waiting:
            raise failure
        return None

    def _send(self, request: Request) -> list[concurrent.futures.Future[Any]]:
        """Send ``request`` to every region; the catch-up follows once all have answered."""
        core = self._core
        self.pending.add()
        futures = [
            self._submit(region, core.call(request, region))
            for region in range(len(self._backends))
        ]
        left = [len(futures)]
        count = threading.Lock()

        def answered(_: concurrent.futures.Future[Any]) -> None:
            with count:
                left[0] -= 1
                if left[0]:
                    return
            try:
                answers = [
                    None if f.exception() is not None else core.answer(f.result()) for f in futures
                ]
                for region, call in core.merges(request, answers):
                    self.pending.add()
                    merge = self._submit(region, call)
                    merge.add_done_callback(self._merged)
                self._send_analytics()
            finally:
                self.pending.finish()

        for future in futures:
            future.add_done_callback(answered)
        return futures

    def _merged(self, future: concurrent.futures.Future[Any]) -> None:
        error = future.exception()
        if error is not None:
            log.warning("multi-region catch-up not written to a region: %s", error)
        self.pending.finish()

    def _send_analytics(self) -> None:
        """Send the counted events to the first region in the background (if any wait)."""
        flow = self._core.analytics_flush()
        if flow is None:
            return
        self.pending.add()
        sent = self._pools[0].submit(run_sync, flow, self._driver(0))
        sent.add_done_callback(self._analytics_sent)

    def _analytics_sent(self, future: concurrent.futures.Future[Any]) -> None:
        error = future.exception()
        if error is not None:  # the events were put back: the next send retries them
            log.warning("multi-region analytics not written: %s", error)
        self.pending.finish()

    def get_usage(self, hours: int = 24) -> Usage:
        """Allowed and blocked counts per identifier over the last ``hours`` (first region)."""
        return run_sync(self._core.usage(hours), self._driver(0))

    def get_usage_over_time(self, hours: int = 24) -> list[dict[str, int]]:
        """The counts of each of the last ``hours``, oldest first (first region)."""
        return run_sync(self._core.usage_over_time(hours), self._driver(0))

    def get_top(self, count: int = 5, hours: int = 24) -> dict[str, list[tuple[str, int]]]:
        """The ``count`` most allowed and most blocked identifiers over the last ``hours``."""
        return run_sync(self._core.top(count, hours), self._driver(0))

    def limit(self, identifier: str | int, rate: int = 1) -> RatelimitResult:
        """Decide one request of cost ``rate`` (negative refunds, 0 peeks) for ``identifier``."""
        core = self._core
        request = core.request(identifier, rate)
        local_now = time.monotonic() * 1000
        cached = core.cached(request, local_now)
        if cached is not None:
            return core.tally(identifier, cached)
        first = self._first(self._send(request))
        if first is None:
            return core.timeout_result()
        return core.tally(identifier, core.settle(request, core.answer(first[1]), local_now))

    def get_remaining(self, identifier: str | int) -> Remaining:
        """What ``identifier`` has left now, per the first region to answer; consumes nothing.

        Raises:
            BackendError: when no region answers in time.

        """
        core = self._core
        request = core.request(identifier, 0)
        futures = [
            self._submit(region, core.call(request, region))
            for region in range(len(self._backends))
        ]
        first = self._first(futures)
        if first is None:
            raise BackendError("no region answered in time")
        return core.remaining(request, core.answer(first[1]))

    def block_until_ready(
        self, identifier: str | int, timeout: Duration, rate: int = 1
    ) -> RatelimitResult:
        """Wait until ``identifier`` is admitted or ``timeout`` (seconds, ``"5 s"``) passes."""
        deadline = time.monotonic() + duration_ms(timeout, name="timeout") / 1000
        while True:
            result = self.limit(identifier, rate)
            if (
                result.success
                or result.reason == "timeout"
                or rate > result.limit
                or result.retry_after > deadline - time.monotonic()
            ):
                return result
            time.sleep(max(result.retry_after, 0.001))

    def reset(self, identifier: str | int) -> int:
        """Delete ``identifier``'s windows in every region, after the pending work; unblock it.

        Returns the keys deleted, summed over the regions.

        Raises:
            BackendError: when a region could not be reached (the others are reset); its
                request ids come back to the others when it is next caught up.

        """
        self.flush()
        core = self._core
        futures = [
            self._submit(region, core.reset_command(identifier, region))
            for region in range(len(self._backends))
        ]
        core.unblock(identifier)
        deleted, errors = 0, []
        for future in futures:
            try:
                deleted += as_int(future.result())
            except BackendError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return deleted

    def flush(self, timeout: float | None = None) -> bool:
        """Wait for the pending writes, catch-up and analytics (at most ``timeout`` s).

        Returns True when all were done in time.
        """
        self._send_analytics()  # the events no decision's background work sent yet
        return self.pending.wait(timeout)

    def close(self) -> None:
        """Wait for the pending work, then stop the worker threads."""
        self.flush()
        for pool in self._pools:
            pool.shutdown(wait=True)

    def __enter__(self) -> MultiRegionRatelimit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncMultiRegionRatelimit:
    """A rate limiter over several regions' Redis, for asyncio: as :class:`MultiRegionRatelimit`.

    The regions are asked in tasks; the first to answer decides; the rest run on as
    :attr:`pending` tasks, which :meth:`flush` and :meth:`close` await.

    Args:
        redis: the regions, as for :class:`MultiRegionRatelimit`.
        limiter: :class:`FixedWindow` or :class:`SlidingWindow`.
        prefix: the start of every key; ``@upstash/ratelimit``'s by default.
        timeout: seconds a decision waits for the first region, as for the blocking class.
        on_timeout: ``"allow"`` (the default) or ``"deny"``.
        ephemeral_cache: as for :class:`MultiRegionRatelimit`.
        clock: the clock naming the windows; this machine's by default.
        analytics: as for :class:`MultiRegionRatelimit`.

    Raises:
        InvalidArgumentError: for another algorithm, no regions, or a bad setting.

    """

    def __init__(
        self,
        redis: Sequence[object],
        limiter: FixedWindow | SlidingWindow,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        ephemeral_cache: bool | EphemeralCache = True,
        clock: Clock | None = None,
        analytics: bool = False,
    ) -> None:
        self._backends, self._core, self._timeout = _setup(
            redis, limiter, prefix, timeout, on_timeout, ephemeral_cache, clock, analytics
        )
        #: The background tasks under way: the regions' writes and the catch-up.
        self.pending: set[asyncio.Task[None]] = set()

    @property
    def limiter(self) -> FixedWindow | SlidingWindow:
        """The algorithm applied in every region."""
        return self._core.limiter

    def _driver(self, region: int) -> AsyncDriver:
        return self._backends[region].async_driver(timeout=self._timeout)

    async def _execute(self, region: int, op: ScriptCall | Command) -> Any:
        return await run_async(_one(op), self._driver(region))

    async def _first(self, tasks: list[asyncio.Task[Any]]) -> tuple[int, Any] | None:
        loop = asyncio.get_running_loop()
        deadline = None if self._timeout is None else loop.time() + self._timeout
        waiting: set[asyncio.Task[Any]] = set(tasks)
        errors: list[BaseException] = []
        while waiting:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            done, waiting = await asyncio.wait(
                waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                error = task.exception()
                if error is None:
                    return tasks.index(task), task.result()
                errors.append(error)
            if not done:
                break
        failure = _failure(errors)
        if failure is not None and not waiting:
            raise failure
        return None

    async def _catch_up(self, request: Request, tasks: list[asyncio.Task[Any]]) -> None:
        replies = await asyncio.gather(*tasks, return_exceptions=True)
        answers: list[RegionAnswer | None] = [
            None if isinstance(reply, BaseException) else self._core.answer(reply)
            for reply in replies
        ]
        merges = self._core.merges(request, answers)
        results = await asyncio.gather(
            *(self._execute(region, call) for region, call in merges), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("multi-region catch-up not written to a region: %s", result)
        await self._send_analytics()

    async def _send_analytics(self) -> None:
        flow = self._core.analytics_flush()
        if flow is None:
            return
        try:
            await run_async(flow, self._driver(0))
        except Exception as exc:  # the events were put back: the next send retries them
            log.warning("multi-region analytics not written: %s", exc)

    async def get_usage(self, hours: int = 24) -> Usage:
        """Allowed and blocked counts per identifier over the last ``hours`` (first region)."""
        return await run_async(self._core.usage(hours), self._driver(0))

    async def get_usage_over_time(self, hours: int = 24) -> list[dict[str, int]]:
        """The counts of each of the last ``hours``, oldest first (first region)."""
        return await run_async(self._core.usage_over_time(hours), self._driver(0))

    async def get_top(self, count: int = 5, hours: int = 24) -> dict[str, list[tuple[str, int]]]:
        """The ``count`` most allowed and most blocked identifiers over the last ``hours``."""
        return await run_async(self._core.top(count, hours), self._driver(0))

    def _track(self, task: asyncio.Task[None]) -> None:
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def limit(self, identifier: str | int, rate: int = 1) -> RatelimitResult:
        """Decide one request of cost ``rate`` (negative refunds, 0 peeks) for ``identifier``."""
        core = self._core
        request = core.request(identifier, rate)
        local_now = time.monotonic() * 1000
        cached = core.cached(request, local_now)
        if cached is not None:
            return core.tally(identifier, cached)
        tasks = [
            asyncio.create_task(self._execute(region, core.call(request, region)))
            for region in range(len(self._backends))
        ]
        self._track(asyncio.create_task(self._catch_up(request, tasks)))
        first = await self._first(tasks)
        if first is None:
            return core.timeout_result()
        return core.tally(identifier, core.settle(request, core.answer(first[1]), local_now))

    async def get_remaining(self, identifier: str | int) -> Remaining:
        """What ``identifier`` has left now, per the first region to answer; consumes nothing.

        Raises:
            BackendError: when no region answers in time.

        """
        core = self._core
        request = core.request(identifier, 0)
        tasks = [
            asyncio.create_task(self._execute(region, core.call(request, region)))
            for region in range(len(self._backends))
        ]
        try:
            first = await self._first(tasks)
        finally:
            for task in tasks:
                task.cancel()  # a peek writes nothing: the late answers are not needed
            await asyncio.gather(*tasks, return_exceptions=True)
        if first is None:
            raise BackendError("no region answered in time")
        return core.remaining(request, core.answer(first[1]))

    async def block_until_ready(
        self, identifier: str | int, timeout: Duration, rate: int = 1
    ) -> RatelimitResult:
        """Wait until ``identifier`` is admitted or ``timeout`` (seconds, ``"5 s"``) passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration_ms(timeout, name="timeout") / 1000
        while True:
            result = await self.limit(identifier, rate)
            if (
                result.success
                or result.reason == "timeout"
                or rate > result.limit
                or result.retry_after > deadline - loop.time()
            ):
                return result
            await asyncio.sleep(max(result.retry_after, 0.001))

    async def reset(self, identifier: str | int) -> int:
        """Delete ``identifier``'s windows in every region; see :meth:`MultiRegionRatelimit.reset`.

        Raises:
            BackendError: when a region could not be reached (the others are reset).

        """
        await self.flush()
        core = self._core
        results = await asyncio.gather(
            *(
                self._execute(region, core.reset_command(identifier, region))
                for region in range(len(self._backends))
            ),
            return_exceptions=True,
        )
        core.unblock(identifier)
        deleted = 0
        for result in results:
            if isinstance(result, BaseException):
                raise result
            deleted += as_int(result)
        return deleted

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait for this loop's pending writes, catch-up and analytics (at most ``timeout`` s).

        Returns True when all were done in time. Only the waiting ends at the timeout (or when
        the caller is cancelled): the background work goes on.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        # The events no decision's background work sent yet.
        self._track(asyncio.create_task(self._send_analytics()))
        while True:
            mine = [task for task in self.pending if task.get_loop() is loop]
            if not mine:
                return True
            left = None if deadline is None else max(0.0, deadline - loop.time())
            _, waiting = await asyncio.wait(mine, timeout=left)
            if waiting:
                return False

    async def close(self) -> None:
        """Wait for the pending work (the connections stay open: they are the caller's)."""
        await self.flush()
