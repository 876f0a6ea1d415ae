"""``Concurrency`` and ``AsyncConcurrency``: the concurrency flows, run blocking or in asyncio."""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, Literal

from redkit.core.clock import ClientClock, Clock, ServerClock, resolve_clock
from redkit.core.driver import AsyncDriver, Backend, SyncDriver, as_backend, scripts_declare_keys
from redkit.core.durations import Duration
from redkit.core.errors import InvalidArgumentError
from redkit.core.fleet import AsyncReporter, ThreadReporter, start_reporter, stats_interval
from redkit.core.flow import run_async, run_sync
from redkit.ratelimit.concurrency.flows import ConcurrencyFlows
from redkit.ratelimit.concurrency.lease import Lease
from redkit.ratelimit.concurrency.limit import ConcurrencyLimit
from redkit.ratelimit.facade import DEFAULT_TIMEOUT
from redkit.ratelimit.flows import DEFAULT_PREFIX, TimeoutPolicy

__all__ = ["AcquireContext", "AsyncConcurrency", "Concurrency"]


def _setup(
    redis: object,
    limit: ConcurrencyLimit,
    prefix: str,
    timeout: float | None,
    on_timeout: TimeoutPolicy,
    clock: Clock | Literal["server", "client"] | None,
) -> tuple[Backend, ConcurrencyFlows, float | None]:
    backend = as_backend(redis)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise InvalidArgumentError(
            f"timeout must be a number of seconds >= 0 or None, got {timeout!r}"
        )
    flows = ConcurrencyFlows(
        limit,
        prefix=prefix,
        cluster=backend.is_cluster,
        # Upstash asks that scripts read no clock.
        clock=resolve_clock(
            clock, default=ClientClock() if scripts_declare_keys(backend) else ServerClock()
        ),
        on_timeout=on_timeout,
    )
    return backend, flows, float(timeout) if timeout else None


class Concurrency:
    """A concurrency limiter, blocking: one round trip per call, on Redis or Redis Cluster.

    ``with limiter.acquire("user:1") as lease:`` takes a slot and gives it back on exit, even
    when the body raises; ``if not lease:`` inside says the identifier was full.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py client.
        limit: a :class:`ConcurrencyLimit`.
        prefix: the start of every key (``@upstash/ratelimit``'s, as for the rate limiter).
        timeout: seconds one call may take; ``None`` or 0 leaves only the connection's own
            timeouts. Past it, or when Redis is down, ``on_timeout`` answers an acquire.
        on_timeout: ``"allow"`` (fail open, the default) or ``"deny"``; either way the lease
            says ``reason="timeout"`` and holds no slot.
        clock: ``"server"`` (Redis's ``TIME``: the default, except over Upstash's REST API),
            ``"client"`` (the default over REST), or a clock object such as
            :class:`redkit.core.clock.VirtualClock`.
        stats: add this process's counts (acquired, refused, released, timeout) to Redis at
            this interval (``"10 s"``; at least 1 s), for :func:`redkit.stats.read`; ``None``
            (the default): off. Sent in the background (docs/stats.md); :meth:`close` sends
            what is left.

    """

    def __init__(
        self,
        redis: object,
        limit: ConcurrencyLimit,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        clock: Clock | Literal["server", "client"] | None = None,
        stats: Duration | None = None,
    ) -> None:
        interval = stats_interval(stats)
        self._backend, self._flows, self._timeout = _setup(
            redis, limit, prefix, timeout, on_timeout, clock
        )
        self._driver: SyncDriver | None = None
        flows = self._flows
        self._stats = start_reporter(
            ThreadReporter, interval, self._backend, flows.telemetry, self._timeout, flows.clock
        )

    @property
    def limit(self) -> ConcurrencyLimit:
        """The configured limit."""
        return self._flows.limit

    def _sync_driver(self) -> SyncDriver:
        if self._driver is None:
            self._driver = self._backend.sync_driver(timeout=self._timeout)
        return self._driver

    def acquire(self, identifier: str | int, *, lease: Duration | None = None) -> Lease:
        """Take a slot of ``identifier`` for ``lease`` (default: the limit's); a :class:`Lease`."""
        taken = run_sync(self._flows.acquire(identifier, lease), self._sync_driver())
        return dataclasses.replace(taken, _release=self.release)

    def release(self, lease: Lease) -> bool:
        """Give the slot back; false when the lease was not held (any more).

        It does not raise when Redis does not answer (it returns false): a lease that cannot be
        released ends on its own, and an exit path should not fail on it.
        """
        return run_sync(self._flows.release(lease), self._sync_driver())

    def extend(self, lease: Lease, lease_duration: Duration | None = None) -> bool:
        """Make a held lease end ``lease_duration`` (default: the limit's lease) from now.

        False when the lease had already ended (its slot may be someone else's now) or Redis
        did not answer: the holder should then stop, as it no longer knows it holds a slot.
        """
        return run_sync(self._flows.extend(lease, lease_duration), self._sync_driver())

    def in_flight(self, identifier: str | int) -> int:
        """How many leases of ``identifier`` are held now."""
        return run_sync(self._flows.in_flight(identifier), self._sync_driver())

    def reset(self, identifier: str | int) -> int:
        """Drop every lease of ``identifier``; return the number of keys deleted (0 or 1)."""
        return run_sync(self._flows.reset(identifier), self._sync_driver())

    def flush(self) -> None:
        """Send the fleet statistics counted so far now (nothing to do without ``stats=``)."""
        if self._stats is not None:
            self._stats.flush()

    def close(self) -> None:
        """Stop sending fleet statistics in the background, and send what is left."""
        if self._stats is not None:
            self._stats.close()


class AcquireContext:
    """What :meth:`AsyncConcurrency.acquire` returns: await it, or use it in ``async with``.

    ``lease = await limiter.acquire(id)`` takes a slot; ``async with limiter.acquire(id) as
    lease:`` also gives it back on exit (when one was taken), even when the body raises or is
    cancelled. Awaited or entered once only, like the coroutine it wraps.
    """

    __slots__ = ("_coro", "_lease", "_limiter")

    def __init__(self, coro: Coroutine[Any, Any, Lease], limiter: AsyncConcurrency) -> None:
        # Created at once: if it is never awaited, Python warns about the coroutine.
        self._coro = coro
        self._limiter = limiter
        self._lease: Lease | None = None

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._coro.__await__()

    async def __aenter__(self) -> Lease:
        self._lease = await self._coro
        return self._lease

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._lease is not None and self._lease._took_slot:
            await self._limiter.release(self._lease)


class AsyncConcurrency:
    """A concurrency limiter for asyncio: the same arguments and methods as :class:`Concurrency`.

    ``acquire`` returns an :class:`AcquireContext`: ``await`` it for the lease, or write
    ``async with limiter.acquire("user:1") as lease:`` to release on exit. The other methods
    are coroutines.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py asyncio client.
        limit: a :class:`ConcurrencyLimit`.
        prefix: the start of every key, as for :class:`Concurrency`.
        timeout: seconds one call may take, as for :class:`Concurrency`.
        on_timeout: ``"allow"`` or ``"deny"``, as for :class:`Concurrency`.
        clock: ``"server"``, ``"client"`` or a clock object, as for :class:`Concurrency`.
        stats: as for :class:`Concurrency` (sent by an asyncio task).

    """

    def __init__(
        self,
        redis: object,
        limit: ConcurrencyLimit,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        clock: Clock | Literal["server", "client"] | None = None,
        stats: Duration | None = None,
    ) -> None:
        interval = stats_interval(stats)
        self._backend, self._flows, self._timeout = _setup(
            redis, limit, prefix, timeout, on_timeout, clock
        )
        flows = self._flows
        self._stats = start_reporter(
            AsyncReporter, interval, self._backend, flows.telemetry, self._timeout, flows.clock
        )

    @property
    def limit(self) -> ConcurrencyLimit:
        """The configured limit."""
        return self._flows.limit

    def _async_driver(self) -> AsyncDriver:
        return self._backend.async_driver(timeout=self._timeout)

    def acquire(self, identifier: str | int, *, lease: Duration | None = None) -> AcquireContext:
        """Take a slot of ``identifier``: ``await`` it, or ``async with`` it to release on exit."""
        # Arguments are checked on await, like a coroutine's; the flow does it.
        return AcquireContext(self._acquire(identifier, lease), self)

    async def _acquire(self, identifier: str | int, lease: Duration | None) -> Lease:
        return await run_async(self._flows.acquire(identifier, lease), self._async_driver())

    async def release(self, lease: Lease) -> bool:
        """Give the slot back; false when it was not held; see :meth:`Concurrency.release`."""
        return await run_async(self._flows.release(lease), self._async_driver())

    async def extend(self, lease: Lease, lease_duration: Duration | None = None) -> bool:
        """Make a held lease end ``lease_duration`` from now; see :meth:`Concurrency.extend`."""
        return await run_async(self._flows.extend(lease, lease_duration), self._async_driver())

    async def in_flight(self, identifier: str | int) -> int:
        """How many leases of ``identifier`` are held now."""
        return await run_async(self._flows.in_flight(identifier), self._async_driver())

    async def reset(self, identifier: str | int) -> int:
        """Drop every lease of ``identifier``; return the number of keys deleted (0 or 1)."""
        return await run_async(self._flows.reset(identifier), self._async_driver())

    async def flush(self) -> None:
        """Send the fleet statistics counted so far now; see :meth:`Concurrency.flush`."""
        if self._stats is not None:
            await self._stats.flush()

    async def close(self) -> None:
        """Stop sending fleet statistics in the background, and send what is left."""
        if self._stats is not None:
            await self._stats.close()
