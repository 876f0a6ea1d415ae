"""``MultiRegionRatelimit`` and its asyncio twin: one Redis per region, the first answer decides.

Every decision is sent to every region at once. The caller gets the first region's answer and
goes on; the other regions' writes continue in the background, and once all regions have
answered, those that lack some of the window's request ids get them
(:meth:`~redkit.ratelimit.regions.RegionsCore.merges`). That work, with the analytics sends,
is the limiter's :attr:`pending`; ``flush()`` (``await flush()``) waits for it, ``close()``
(``await close()``) too. Each decision's own share of it is its result's ``pending`` handle
(:class:`~redkit.ratelimit.result.Pending`, built by :mod:`redkit.ratelimit.inflight`).

Keys and fields are ``@upstash/ratelimit``'s ``MultiRegionRatelimit``'s (docs/multiregion.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from redkit.core.clock import ClientClock, Clock
from redkit.core.driver import AsyncDriver, Backend, SyncDriver, as_backend
from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import NO_ANSWER, BackendError, InvalidArgumentError
from redkit.core.flow import run_async, run_sync
from redkit.core.ops import Command, ScriptCall
from redkit.core.replies import as_int
from redkit.ratelimit.analytics import Usage
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.facade import DEFAULT_TIMEOUT, check_timeout, ephemeral_cache_of
from redkit.ratelimit.flows import DEFAULT_PREFIX, TimeoutPolicy
from redkit.ratelimit.inflight import (
    AnalyticsSends,
    AsyncAnalyticsSends,
    PendingCount,
    Work,
    handle_of,
    logged,
)
from redkit.ratelimit.limiters import FixedWindow, SlidingWindow
from redkit.ratelimit.regions import RegionAnswer, RegionsCore, Request
from redkit.ratelimit.result import RatelimitResult, Remaining

__all__ = ["AsyncMultiRegionRatelimit", "MultiRegionRatelimit"]

log = logging.getLogger("redkit.ratelimit")
#: Threads per region (blocking class): the calls one region has under way at once.
_WORKERS = 8


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
        #: Background work under way: the regions' writes, the catch-up and the analytics
        #: sends (``len()``); each decision's share is its result's ``pending``.
        self.pending = PendingCount()
        self._analytics = AnalyticsSends(self._send_events)
        self._closed = False

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
        return self._driver(region).execute(op)

    def _ask(self, region: int, op: ScriptCall) -> RegionAnswer:
        return self._core.answer(self._execute(region, op))

    def _submit(self, region: int, op: ScriptCall | Command) -> concurrent.futures.Future[Any]:
        return self._pools[region].submit(self._execute, region, op)

    def _submit_ask(self, region: int, op: ScriptCall) -> concurrent.futures.Future[RegionAnswer]:
        """``op`` sent to ``region`` in its pool, the reply read there (off the caller)."""
        return self._pools[region].submit(self._ask, region, op)

    def _first(
        self, futures: list[concurrent.futures.Future[RegionAnswer]]
    ) -> tuple[int, RegionAnswer] | None:
        """The first region's answer, waiting at most the timeout; ``None`` if none answered."""
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

    def _send(self, request: Request, work: Work) -> list[concurrent.futures.Future[RegionAnswer]]:
        """Send ``request`` to every region; the catch-up follows once all have answered."""
        core = self._core
        work.add()  # the regions' answers, then the catch-up's calls sent
        try:
            futures = [
                self._submit_ask(region, core.call(request, region))
                for region in range(len(self._backends))
            ]
        except BaseException:
            work.finish()
            raise
        left = [len(futures)]
        count = threading.Lock()
        merged = functools.partial(logged, "catch-up not written to a region", work)

        def answered(_: concurrent.futures.Future[RegionAnswer]) -> None:
            with count:
                left[0] -= 1
                if left[0]:
                    return
            try:
                answers = [None if f.exception() is not None else f.result() for f in futures]
                for region, call in core.merges(request, answers):
                    work.add()
                    try:
                        sent = self._submit(region, call)
                    except RuntimeError as exc:  # the pools were shut down (close())
                        log.warning("multi-region catch-up not sent to a region: %s", exc)
                        work.finish()
                        continue
                    sent.add_done_callback(merged)
            finally:
                work.finish()

        for future in futures:
            future.add_done_callback(answered)
        return futures

    def _send_events(self) -> None:
        """Send the counted analytics events to the first region (in the analytics thread)."""
        flow = self._core.analytics_flush()
        if flow is not None:
            run_sync(flow, self._driver(0))

    def _send_analytics(self, work: Work) -> None:
        """Make ``work`` wait for the analytics send that carries what is counted now."""
        work.add()
        try:
            send = self._analytics.next()
        except BaseException:
            work.finish()  # nothing queued: this part never ran
            raise
        send.add_done_callback(work.finish)

    def _answered(
        self, identifier: str | int, result: RatelimitResult, work: Work | None
    ) -> RatelimitResult:
        """``result`` counted in the analytics, with its decision's handle (``work``'s)."""
        if self._core.tally(identifier, result):
            work = work or Work(self.pending)
            self._send_analytics(work)
        if work is None:
            return result  # nothing left to do: the completed handle
        work.finish()  # the caller's part
        return dataclasses.replace(result, pending=work.handle)

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
        """Decide one request of cost ``rate`` (negative refunds, 0 peeks) for ``identifier``.

        The result's ``pending`` completes when this decision's writes to every region, its
        catch-up and its analytics send are done (``result.pending.wait(timeout)``): see
        :class:`~redkit.ratelimit.result.Pending`. After a timeout (``reason="timeout"``) it is
        the writes still under way; for an answer of the ephemeral cache, the analytics send
        (already completed without analytics).
        """
        core = self._core
        request = core.request(identifier, rate)
        local_now = time.monotonic() * 1000
        cached = core.cached(request, local_now)
        if cached is not None:
            return self._answered(identifier, cached, None)
        work = Work(self.pending)
        try:
            first = self._first(self._send(request, work))
            if first is None:
                answer = core.timeout_result()
            else:
                answer = core.settle(request, first[1], local_now)
        except BaseException:
            work.finish()  # the caller's part: no answer to count
            raise
        return self._answered(identifier, answer, work)

    def get_remaining(self, identifier: str | int) -> Remaining:
        """What ``identifier`` has left now, per the first region to answer; consumes nothing.

        Raises:
            BackendError: when no region answers in time.

        """
        core = self._core
        request = core.request(identifier, 0)
        futures = [
            self._submit_ask(region, core.call(request, region))
            for region in range(len(self._backends))
        ]
        first = self._first(futures)
        if first is None:
            raise BackendError("no region answered in time")
        return core.remaining(request, first[1])

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
        analytics = self._core.analytics
        if analytics is not None and analytics.has_pending():  # what a failed send put back
            work = Work(self.pending)
            self._send_analytics(work)
            work.finish()
        return self.pending.wait(timeout)

    def close(self) -> None:
        """Wait for the pending work, then stop the worker threads. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        self._analytics.close()
        for pool in self._pools:
            pool.shutdown(wait=True)

    def __enter__(self) -> MultiRegionRatelimit:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncMultiRegionRatelimit:
    """A rate limiter over several regions' Redis, for asyncio: as :class:`MultiRegionRatelimit`.

    The regions are asked in tasks; the first to answer decides; the rest run on as
    :attr:`pending` tasks, which :meth:`flush` and :meth:`close` await; a result's
    ``pending`` is its own decision's share (``await result.pending``).

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
        #: The background tasks under way: the regions' writes and the catch-up, the
        #: analytics sends; each decision's share is its result's ``pending``.
        self.pending: set[asyncio.Task[None]] = set()
        self._analytics = AsyncAnalyticsSends(self._send_events)

    @property
    def limiter(self) -> FixedWindow | SlidingWindow:
        """The algorithm applied in every region."""
        return self._core.limiter

    def _driver(self, region: int) -> AsyncDriver:
        return self._backends[region].async_driver(timeout=self._timeout)

    async def _execute(self, region: int, op: ScriptCall | Command) -> Any:
        return await self._driver(region).execute(op)

    async def _ask(self, region: int, op: ScriptCall) -> RegionAnswer:
        return self._core.answer(await self._execute(region, op))

    async def _first(
        self, tasks: list[asyncio.Task[RegionAnswer]]
    ) -> tuple[int, RegionAnswer] | None:
        loop = asyncio.get_running_loop()
        deadline = None if self._timeout is None else loop.time() + self._timeout
        waiting: set[asyncio.Task[RegionAnswer]] = set(tasks)
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

    async def _catch_up(self, request: Request, tasks: list[asyncio.Task[RegionAnswer]]) -> None:
        replies = await asyncio.gather(*tasks, return_exceptions=True)
        answers: list[RegionAnswer | None] = [
            None if isinstance(reply, BaseException) else reply for reply in replies
        ]
        merges = self._core.merges(request, answers)
        results = await asyncio.gather(
            *(self._execute(region, call) for region, call in merges), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("multi-region catch-up not written to a region: %s", result)

    async def _send_events(self) -> None:
        """Send the counted analytics events to the first region."""
        flow = self._core.analytics_flush()
        if flow is not None:
            await run_async(flow, self._driver(0))

    def _send_analytics(self) -> asyncio.Task[None]:
        """The analytics send that carries what is counted now (a pending task)."""
        task, new = self._analytics.next()
        if new:
            self._track(task)
        return task

    def _answered(
        self, identifier: str | int, result: RatelimitResult, work: list[asyncio.Task[None]]
    ) -> RatelimitResult:
        """``result`` counted in the analytics, with a handle of its decision's ``work``."""
        if self._core.tally(identifier, result):
            work.append(self._send_analytics())
        if not work:
            return result  # nothing left to do: the completed handle
        return dataclasses.replace(result, pending=handle_of(work))

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
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("multi-region background work failed: %s", task.exception())

    async def limit(self, identifier: str | int, rate: int = 1) -> RatelimitResult:
        """Decide one request of cost ``rate`` (negative refunds, 0 peeks) for ``identifier``.

        ``await result.pending`` waits for this decision's writes, catch-up and analytics
        send, as for :meth:`MultiRegionRatelimit.limit`.
        """
        core = self._core
        request = core.request(identifier, rate)
        local_now = time.monotonic() * 1000
        cached = core.cached(request, local_now)
        if cached is not None:
            return self._answered(identifier, cached, [])
        tasks = [
            asyncio.create_task(self._ask(region, core.call(request, region)))
            for region in range(len(self._backends))
        ]
        catch_up = asyncio.create_task(self._catch_up(request, tasks))
        self._track(catch_up)
        first = await self._first(tasks)
        if first is None:
            return self._answered(identifier, core.timeout_result(), [catch_up])
        answer = core.settle(request, first[1], local_now)
        return self._answered(identifier, answer, [catch_up])

    async def get_remaining(self, identifier: str | int) -> Remaining:
        """What ``identifier`` has left now, per the first region to answer; consumes nothing.

        Raises:
            BackendError: when no region answers in time.

        """
        core = self._core
        request = core.request(identifier, 0)
        tasks = [
            asyncio.create_task(self._ask(region, core.call(request, region)))
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
        return core.remaining(request, first[1])

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
        analytics = self._core.analytics
        if analytics is not None and analytics.has_pending():
            self._send_analytics()  # the events a failed send put back
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
