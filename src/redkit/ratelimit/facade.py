"""``Ratelimit`` and ``AsyncRatelimit``: the same flows, run blocking or in asyncio."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from redkit.core.clock import ClientClock, Clock, ServerClock, resolve_clock
from redkit.core.driver import (
    AsyncDriver,
    Backend,
    SyncDriver,
    as_backend,
    scripts_declare_keys,
)
from redkit.core.durations import Duration
from redkit.core.errors import InvalidArgumentError
from redkit.core.fleet import AsyncReporter, ThreadReporter, start_reporter, stats_interval
from redkit.core.flow import run_async, run_sync
from redkit.ratelimit.analytics import Analytics, Usage
from redkit.ratelimit.background import AsyncFlusher, ThreadFlusher
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.flows import DEFAULT_PREFIX, RatelimitFlows, TimeoutPolicy
from redkit.ratelimit.limiters import Limiter
from redkit.ratelimit.multi import MultiLimit
from redkit.ratelimit.result import RatelimitResult, Remaining

if TYPE_CHECKING:  # the advise package is imported only by those who record a trace
    from redkit.advise.recorder import TraceRecorder

__all__ = ["AsyncRatelimit", "Ratelimit"]

log = logging.getLogger("redkit.ratelimit")

#: Seconds: ``@upstash/ratelimit``'s default budget for one decision.
DEFAULT_TIMEOUT = 5.0


def _flows(
    redis: object,
    limiter: Limiter | Sequence[Limiter],
    prefix: str,
    ephemeral_cache: bool | EphemeralCache,
    timeout: float | None,
    on_timeout: TimeoutPolicy,
    clock: Clock | Literal["server", "client"] | None,
    dynamic_limits: bool,
    enable_protection: bool,
    analytics: bool,
) -> tuple[Backend, RatelimitFlows, float | None]:
    backend = as_backend(redis)
    check_timeout(timeout)
    cache = ephemeral_cache_of(ephemeral_cache)
    if isinstance(limiter, (list, tuple)):
        limiter = MultiLimit.of(limiter)  # several limits, checked and charged together
    # Upstash asks that scripts read no clock (and their keys must not depend on one).
    declared = scripts_declare_keys(backend)
    flows = RatelimitFlows(
        limiter,
        prefix=prefix,
        cluster=backend.is_cluster,
        scripts_declare_keys=declared,
        clock=resolve_clock(clock, default=ClientClock() if declared else ServerClock()),
        ephemeral_cache=cache,
        on_timeout=on_timeout,
        dynamic_limits=dynamic_limits,
        protection=enable_protection,
        analytics=Analytics(prefix) if analytics else None,
    )
    return backend, flows, float(timeout) if timeout else None


def check_timeout(timeout: object) -> None:
    """A limiter's ``timeout=`` checked: seconds >= 0 (0: no budget) or ``None``.

    Raises:
        InvalidArgumentError: for anything else.

    """
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0
    ):
        raise InvalidArgumentError(
            f"timeout must be a number of seconds >= 0 or None, got {timeout!r}"
        )


def ephemeral_cache_of(ephemeral_cache: object) -> EphemeralCache | None:
    """A limiter's ``ephemeral_cache=``: ``True`` (a new one), ``False`` (none) or one given.

    Raises:
        InvalidArgumentError: for anything else.

    """
    if isinstance(ephemeral_cache, EphemeralCache):
        return ephemeral_cache
    if ephemeral_cache is True or ephemeral_cache is False:
        return EphemeralCache() if ephemeral_cache else None
    raise InvalidArgumentError(
        f"ephemeral_cache must be True, False or an EphemeralCache, got {ephemeral_cache!r}"
    )


def _trace(trace: TraceRecorder | None) -> TraceRecorder | None:
    if trace is not None and not callable(getattr(trace, "record_decision", None)):
        raise InvalidArgumentError(
            f"trace must be a redkit.advise.TraceRecorder (TraceRecorder.to_file(...) or "
            f".to_stream(...)) or None, got {type(trace).__name__}"
        )
    return trace


def _record(
    trace: TraceRecorder,
    prefix: str,
    identifiers: Iterable[str | int],
    results: list[RatelimitResult],
) -> None:
    for identifier, result in zip(identifiers, results, strict=True):
        trace.record_decision(
            prefix, identifier, result.success, result.remaining, result.limit, result.reason
        )


class Ratelimit:
    """A rate limiter, blocking: one round trip per decision, on Redis or Redis Cluster.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py client.
        limiter: :class:`FixedWindow`, :class:`SlidingWindow`, :class:`TokenBucket`,
            :class:`CachedFixedWindow`, :class:`GCRA` or :class:`SlidingLog`.
        prefix: the start of every key; ``@upstash/ratelimit``'s by default, so the two
            libraries share counters.
        ephemeral_cache: remember blocked identifiers in this process and refuse them without
            a round trip until their block ends. ``True`` (a cache of this limiter's own),
            ``False``, or an :class:`EphemeralCache` to share between limiters.
        timeout: seconds one decision may take; ``None`` or 0 leaves only the connection's
            own timeouts. Past it, or when Redis is down, ``on_timeout`` answers.
        on_timeout: ``"allow"`` (fail open, the default) or ``"deny"`` (fail closed); either
            way the result says ``reason="timeout"``.
        clock: ``"server"`` (Redis's ``TIME``, one clock for every app server: the default,
            except over Upstash's REST API), ``"client"`` (this machine's clock, as
            ``@upstash/ratelimit`` uses; the default over REST), or a clock object such as
            :class:`redkit.core.clock.VirtualClock`.
        dynamic_limits: let the limit be changed at run time, for everyone
            (:meth:`set_dynamic_limit`, in ``@upstash/ratelimit``'s key) or per identifier
            (:meth:`set_identifier_limit`); costs one more read in each decision.
        enable_protection: refuse requests whose identifier, IP, user agent or country is on
            the deny list (``@upstash/ratelimit``'s ``<prefix>:denyList:all``; see
            :meth:`deny`): a denied request consumes nothing. Checked in the deciding script on
            one standalone server; on a cluster, over Upstash's REST API, and for several
            limits or a cached window, against a copy each process reads every 10 s.
        analytics: count allowed, blocked and denied requests per identifier and hour, in
            ``@upstash/ratelimit``'s layout (see :meth:`get_usage`).
        trace: a :class:`~redkit.advise.TraceRecorder` that records a sample of the decisions
            (per identifier: allowed or refused, and what is left) for ``redkit advise``;
            ``None`` (the default) records nothing and costs nothing.
        stats: add this process's decision counts (allowed, blocked, denied, timeout,
            cache_block) to Redis at this interval (``"10 s"``; at least 1 s), for
            :func:`redkit.stats.read` to sum over every process; ``None`` (the default): off.
            One pipelined round trip per interval, in the background (docs/stats.md);
            :meth:`close` sends what is left.

    """

    def __init__(
        self,
        redis: object,
        limiter: Limiter | Sequence[Limiter],
        *,
        prefix: str = DEFAULT_PREFIX,
        ephemeral_cache: bool | EphemeralCache = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        clock: Clock | Literal["server", "client"] | None = None,
        dynamic_limits: bool = False,
        enable_protection: bool = False,
        analytics: bool = False,
        trace: TraceRecorder | None = None,
        stats: Duration | None = None,
    ) -> None:
        interval = stats_interval(stats)
        backend, self._flows, self._timeout = _flows(
            redis, limiter, prefix, ephemeral_cache, timeout, on_timeout, clock, dynamic_limits,
            enable_protection, analytics,
        )  # fmt: skip
        self._backend = backend
        self._trace = _trace(trace)
        self._driver: SyncDriver | None = None
        # Held while counts travel to Redis, so flush() and reset() wait for a sync under way.
        self._syncing = threading.Lock()
        flows = self._flows
        background = flows.window_counts is not None or flows.analytics is not None
        self._flusher = ThreadFlusher(self._sync_local, flows.has_pending) if background else None
        self._stats = start_reporter(
            ThreadReporter, interval, backend, flows.telemetry, self._timeout, flows.clock
        )

    @property
    def limiter(self) -> Limiter:
        """The algorithm this limiter applies."""
        return self._flows.limiter

    def _sync_driver(self) -> SyncDriver:
        if self._driver is None:
            self._driver = self._backend.sync_driver(timeout=self._timeout)
        return self._driver

    def limit(
        self,
        identifier: str | int,
        rate: int = 1,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        country: str | None = None,
    ) -> RatelimitResult:
        """Decide one request of cost ``rate`` for ``identifier``.

        A negative ``rate`` gives tokens back (a refund); ``rate=0`` reports without consuming.
        With protection on, ``ip``, ``user_agent`` and ``country`` meet the deny list too.
        """
        flow = self._flows.limit(identifier, rate, ip=ip, user_agent=user_agent, country=country)
        result = run_sync(flow, self._sync_driver())
        self._sync_later()
        if self._trace is not None:
            _record(self._trace, self._flows.prefix, (identifier,), [result])
        return result

    def limit_many(self, identifiers: Iterable[str | int], rate: int = 1) -> list[RatelimitResult]:
        """Decide one request for each identifier, in one pipelined round trip."""
        wanted = list(identifiers)
        results = run_sync(self._flows.limit_many(wanted, rate), self._sync_driver())
        self._sync_later()
        if self._trace is not None:
            _record(self._trace, self._flows.prefix, wanted, results)
        return results

    def block_until_ready(
        self, identifier: str | int, timeout: Duration, rate: int = 1
    ) -> RatelimitResult:
        """Wait until ``identifier`` is admitted or ``timeout`` (seconds, ``"5 s"``) passes."""
        result = run_sync(
            self._flows.block_until_ready(identifier, timeout, rate), self._sync_driver()
        )
        self._sync_later()
        if self._trace is not None:
            _record(self._trace, self._flows.prefix, (identifier,), [result])
        return result

    def get_remaining(self, identifier: str | int) -> Remaining:
        """What ``identifier`` has left now, with token refills applied; consumes nothing."""
        return run_sync(self._flows.get_remaining(identifier), self._sync_driver())

    def reset(self, identifier: str | int) -> int:
        """Delete ``identifier``'s state (exactly its keys) and unblock it; return keys deleted."""
        with self._syncing:  # no count on its way may recreate a deleted key
            return run_sync(self._flows.reset(identifier), self._sync_driver())

    def get_usage(self, hours: int = 24) -> Usage:
        """Allowed, blocked and denied counts per identifier over the last ``hours``."""
        return run_sync(self._flows.usage(hours), self._sync_driver())

    def get_usage_over_time(self, hours: int = 24) -> list[dict[str, int]]:
        """The counts of each of the last ``hours`` (``time`` is the hour's start), oldest first."""
        return run_sync(self._flows.usage_over_time(hours), self._sync_driver())

    def get_top(self, count: int = 5, hours: int = 24) -> dict[str, list[tuple[str, int]]]:
        """The ``count`` most allowed and most blocked identifiers over the last ``hours``."""
        return run_sync(self._flows.top(count, hours), self._sync_driver())

    def deny(self, *values: str) -> int:
        """Put identifiers, IPs, user agents or countries on the deny list (count the new).

        The list is shared by every limiter of this prefix, and consulted only by those made
        with ``enable_protection=True``.
        """
        return run_sync(self._flows.deny(*values), self._sync_driver())

    def allow(self, *values: str) -> int:
        """Take values off the deny list; return how many were on it."""
        return run_sync(self._flows.allow(*values), self._sync_driver())

    def denied(self) -> set[str]:
        """Every value on the deny list."""
        return run_sync(self._flows.denied(), self._sync_driver())

    def set_dynamic_limit(self, limit: int | None) -> None:
        """Override the limit for every identifier; ``None`` removes the override."""
        run_sync(self._flows.set_dynamic_limit(limit), self._sync_driver())

    def get_dynamic_limit(self) -> int | None:
        """The limit override for every identifier, or ``None``."""
        return run_sync(self._flows.get_dynamic_limit(), self._sync_driver())

    def set_identifier_limit(self, identifier: str | int, limit: int | None) -> None:
        """Override one identifier's limit (it beats the global one); ``None`` removes it."""
        run_sync(self._flows.set_identifier_limit(identifier, limit), self._sync_driver())

    def get_identifier_limit(self, identifier: str | int) -> int | None:
        """One identifier's own limit override, or ``None``."""
        return run_sync(self._flows.get_identifier_limit(identifier), self._sync_driver())

    def _sync_local(self) -> None:
        with self._syncing:
            run_sync(self._flows.sync_local(), self._sync_driver())

    def flush(self) -> None:
        """Send the cached fixed window's pending counts and the fleet statistics now."""
        self._sync_local()
        if self._stats is not None:
            self._stats.flush()

    def close(self) -> None:
        """Stop the background sends (cached window, statistics) and send what is left."""
        if self._flusher is not None:
            self._flusher.close()
            self._sync_local()
        if self._stats is not None:
            self._stats.close()

    def _sync_later(self) -> None:
        if self._flusher is not None and self._flows.has_pending():
            self._flusher.kick()


class AsyncRatelimit:
    """A rate limiter for asyncio: the same arguments and methods as :class:`Ratelimit`.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py asyncio client.
        limiter: the algorithm, as for :class:`Ratelimit`.
        prefix: the start of every key, as for :class:`Ratelimit`.
        ephemeral_cache: as for :class:`Ratelimit`.
        timeout: seconds one decision may take, as for :class:`Ratelimit`.
        on_timeout: ``"allow"`` or ``"deny"``, as for :class:`Ratelimit`.
        clock: ``"server"``, ``"client"`` or a clock object, as for :class:`Ratelimit`.
        dynamic_limits: as for :class:`Ratelimit`.
        enable_protection: as for :class:`Ratelimit`.
        analytics: as for :class:`Ratelimit`.
        trace: as for :class:`Ratelimit`.
        stats: as for :class:`Ratelimit` (sent by an asyncio task).

    """

    def __init__(
        self,
        redis: object,
        limiter: Limiter | Sequence[Limiter],
        *,
        prefix: str = DEFAULT_PREFIX,
        ephemeral_cache: bool | EphemeralCache = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        clock: Clock | Literal["server", "client"] | None = None,
        dynamic_limits: bool = False,
        enable_protection: bool = False,
        analytics: bool = False,
        trace: TraceRecorder | None = None,
        stats: Duration | None = None,
    ) -> None:
        interval = stats_interval(stats)
        backend, self._flows, self._timeout = _flows(
            redis, limiter, prefix, ephemeral_cache, timeout, on_timeout, clock, dynamic_limits,
            enable_protection, analytics,
        )  # fmt: skip
        self._backend = backend
        self._trace = _trace(trace)
        # Held while counts travel to Redis, so flush() and reset() wait for a sync under way;
        # one per event loop, since an asyncio lock belongs to the loop that first used it.
        self._sync_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        flows = self._flows
        background = flows.window_counts is not None or flows.analytics is not None
        self._flusher = AsyncFlusher(self._sync_local, flows.has_pending) if background else None
        self._stats = start_reporter(
            AsyncReporter, interval, backend, flows.telemetry, self._timeout, flows.clock
        )

    def _sync_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._sync_locks.get(loop)
        if lock is None:
            lock = self._sync_locks[loop] = asyncio.Lock()
        return lock

    @property
    def limiter(self) -> Limiter:
        """The algorithm this limiter applies."""
        return self._flows.limiter

    def _async_driver(self) -> AsyncDriver:
        return self._backend.async_driver(timeout=self._timeout)

    async def limit(
        self,
        identifier: str | int,
        rate: int = 1,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        country: str | None = None,
    ) -> RatelimitResult:
        """Decide one request of cost ``rate`` for ``identifier``; see :meth:`Ratelimit.limit`."""
        flow = self._flows.limit(identifier, rate, ip=ip, user_agent=user_agent, country=country)
        result = await run_async(flow, self._async_driver())
        self._sync_later()
        if self._trace is not None:
            _record(self._trace, self._flows.prefix, (identifier,), [result])
        return result

    async def limit_many(
        self, identifiers: Iterable[str | int], rate: int = 1
    ) -> list[RatelimitResult]:
        """Decide one request for each identifier, in one pipelined round trip."""
        wanted = list(identifiers)
        results = await run_async(self._flows.limit_many(wanted, rate), self._async_driver())
        self._sync_later()
        if self._trace is not None:
            _record(self._trace, self._flows.prefix, wanted, results)
        return results

    async def block_until_ready(
        self, identifier: str | int, timeout: Duration, rate: int = 1
    ) -> RatelimitResult:
        """Wait until ``identifier`` is admitted or ``timeout`` (seconds, ``"5 s"``) passes."""
        result = await run_async(
            self._flows.block_until_ready(identifier, timeout, rate), self._async_driver()
        )
        self._sync_later()
        if self._trace is not None:
            _record(self._trace, self._flows.prefix, (identifier,), [result])
        return result

    async def get_remaining(self, identifier: str | int) -> Remaining:
        """What ``identifier`` has left now, with token refills applied; consumes nothing."""
        return await run_async(self._flows.get_remaining(identifier), self._async_driver())

    async def reset(self, identifier: str | int) -> int:
        """Delete ``identifier``'s state (exactly its keys) and unblock it; return keys deleted."""
        async with self._sync_lock():  # no count on its way may recreate a deleted key
            return await run_async(self._flows.reset(identifier), self._async_driver())

    async def get_usage(self, hours: int = 24) -> Usage:
        """Allowed, blocked and denied counts per identifier over the last ``hours``."""
        return await run_async(self._flows.usage(hours), self._async_driver())

    async def get_usage_over_time(self, hours: int = 24) -> list[dict[str, int]]:
        """The counts of each of the last ``hours`` (``time`` is the hour's start), oldest first."""
        return await run_async(self._flows.usage_over_time(hours), self._async_driver())

    async def get_top(self, count: int = 5, hours: int = 24) -> dict[str, list[tuple[str, int]]]:
        """The ``count`` most allowed and most blocked identifiers over the last ``hours``."""
        return await run_async(self._flows.top(count, hours), self._async_driver())

    async def deny(self, *values: str) -> int:
        """Put identifiers, IPs, user agents or countries on the deny list (count the new).

        The list is shared by every limiter of this prefix, and consulted only by those made
        with ``enable_protection=True``.
        """
        return await run_async(self._flows.deny(*values), self._async_driver())

    async def allow(self, *values: str) -> int:
        """Take values off the deny list; return how many were on it."""
        return await run_async(self._flows.allow(*values), self._async_driver())

    async def denied(self) -> set[str]:
        """Every value on the deny list."""
        return await run_async(self._flows.denied(), self._async_driver())

    async def set_dynamic_limit(self, limit: int | None) -> None:
        """Override the limit for every identifier; ``None`` removes the override."""
        await run_async(self._flows.set_dynamic_limit(limit), self._async_driver())

    async def get_dynamic_limit(self) -> int | None:
        """The limit override for every identifier, or ``None``."""
        return await run_async(self._flows.get_dynamic_limit(), self._async_driver())

    async def set_identifier_limit(self, identifier: str | int, limit: int | None) -> None:
        """Override one identifier's limit (it beats the global one); ``None`` removes it."""
        await run_async(self._flows.set_identifier_limit(identifier, limit), self._async_driver())

    async def get_identifier_limit(self, identifier: str | int) -> int | None:
        """One identifier's own limit override, or ``None``."""
        return await run_async(self._flows.get_identifier_limit(identifier), self._async_driver())

    async def _sync_local(self) -> None:
        async with self._sync_lock():
            await run_async(self._flows.sync_local(), self._async_driver())

    async def flush(self) -> None:
        """Send the cached fixed window's pending counts, and the fleet statistics, now."""
        await self._sync_local()
        if self._stats is not None:
            await self._stats.flush()

    async def close(self) -> None:
        """Wait for the background sends (cached window, statistics); send what is left."""
        if self._flusher is not None:
            await self._flusher.close()
            await self._sync_local()
        if self._stats is not None:
            await self._stats.close()

    def _sync_later(self) -> None:
        if self._flusher is not None and self._flows.has_pending():
            self._flusher.kick()
