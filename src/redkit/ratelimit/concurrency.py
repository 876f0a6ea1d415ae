"""A concurrency limiter: at most ``max_in_flight`` requests in flight per identifier.

Each holder takes a *lease*: a random token in the identifier's sorted set, scored with the
moment its lease ends. A holder that crashes never releases, so its slot frees itself when
the lease ends; a holder that works longer renews it with :meth:`Concurrency.extend`. Every
operation is one atomic script call, written once as a flow (:class:`ConcurrencyFlows`) and run
blocking by :class:`Concurrency` or in asyncio by :class:`AsyncConcurrency`.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from redkit.core import keys
from redkit.core.clock import ClientClock, Clock, ServerClock, resolve_clock
from redkit.core.driver import AsyncDriver, Backend, SyncDriver, as_backend, scripts_declare_keys
from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import NO_ANSWER, InvalidArgumentError
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import ScriptCall, command
from redkit.core.replies import as_int
from redkit.ratelimit import scripts
from redkit.ratelimit.facade import DEFAULT_TIMEOUT
from redkit.ratelimit.flows import DEFAULT_PREFIX, TimeoutPolicy, identifier_part
from redkit.ratelimit.limiters import SERVER_TIME, check_count, ratelimit_script

__all__ = [
    "AcquireContext",
    "AsyncConcurrency",
    "Concurrency",
    "ConcurrencyFlows",
    "ConcurrencyLimit",
    "Lease",
]

#: The last part of every concurrency key: ``<prefix>:<identifier>:concurrency``.
_SUFFIX = ":concurrency"


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``max_in_flight`` leases held at once per identifier, each ending on its own.

    Args:
        max_in_flight: how many holders one identifier may have at the same time.
        lease: how long a lease lasts unless released or extended: ``"30 s"``, seconds, or a
            ``timedelta``. It bounds how long a crashed holder keeps its slot.

    """

    max_in_flight: int
    lease: Duration = "30 s"
    lease_ms: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_count(self.max_in_flight, "max_in_flight")
        object.__setattr__(self, "lease_ms", duration_ms(self.lease, name="lease"))


@dataclass(frozen=True, slots=True)
class Lease:
    """One answer of :meth:`Concurrency.acquire`; true when a slot was taken.

    A lease from :class:`Concurrency` is a context manager that releases it on exit (when it
    was acquired); the body runs either way, so check ``lease.success`` in it. For asyncio,
    write ``async with limiter.acquire(...)`` (see :class:`AcquireContext`).

    Attributes:
        success: whether a slot was taken (or, with ``reason="timeout"``, the policy's answer).
        limit: the limiter's ``max_in_flight``.
        remaining: slots still free after this call.
        identifier: the identifier the slot belongs to.
        token: the lease's random 128-bit id (hex); empty when no slot was taken.
        expires_at: epoch milliseconds when the lease ends unless extended; 0 when refused.
            :meth:`Concurrency.extend` does not update it: it returns whether the lease lives.
        retry_after: when refused, seconds until the earliest held lease ends (a release may
            free a slot sooner); 0 otherwise.
        reason: ``None`` for an answer from Redis; ``"timeout"`` when Redis was too slow or
            down and the ``on_timeout`` policy answered (no slot is held then).

    """

    success: bool
    limit: int
    remaining: int
    identifier: str | int
    token: str = ""
    expires_at: int = 0
    retry_after: float = 0.0
    reason: Literal["timeout"] | None = None
    # The blocking facade's release, for the context manager; not part of the value.
    _release: Callable[[Lease], bool] | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.success

    def __reduce__(self) -> tuple[type[Lease], tuple[Any, ...]]:
        # A lease travels (pickled to another process) as its value; the release it was bound
        # to stays behind with its facade. The receiver releases with a limiter of its own.
        return (Lease, tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.compare))

    @property
    def _took_slot(self) -> bool:
        # Acquired from Redis: the timeout policy's "allow" holds no slot to give back.
        return self.success and bool(self.token)

    def __enter__(self) -> Lease:
        if self._release is None:
            # A lease from AsyncConcurrency would not be released by a plain `with`.
            raise TypeError(
                "this lease is not bound to a blocking Concurrency: with AsyncConcurrency, "
                "write `async with limiter.acquire(...) as lease:`"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._release is not None and self._took_slot:
            self._release(self)


class ConcurrencyFlows:
    """The flows of one configured concurrency limiter; the facades run them."""

    def __init__(
        self,
        limit: ConcurrencyLimit,
        *,
        prefix: str,
        cluster: bool,
        clock: Clock,
        on_timeout: TimeoutPolicy,
    ) -> None:
        if not isinstance(limit, ConcurrencyLimit):
            raise InvalidArgumentError(
                f"limit must be a ConcurrencyLimit, got {type(limit).__name__}"
            )
        if on_timeout not in ("allow", "deny"):
            raise InvalidArgumentError(f'on_timeout must be "allow" or "deny", got {on_timeout!r}')
        self.limit = limit
        self._prefix_sep = keys.check_prefix(prefix) + ":"
        self.cluster = cluster
        self.clock = clock
        self.on_timeout: TimeoutPolicy = on_timeout
        self._acquire = ratelimit_script("concurrency_acquire")
        self._release = ratelimit_script("concurrency_release")
        self._extend = ratelimit_script("concurrency_extend")
        self._count = ratelimit_script("concurrency_count")

    def key(self, identifier: str | int) -> str:
        """The identifier's sorted set: ``prefix:identifier:concurrency`` (tagged on a cluster)."""
        return self._prefix_sep + identifier_part(identifier, self.cluster) + _SUFFIX

    def _now(self) -> int:
        return SERVER_TIME if self.clock.server else int(self.clock.now_ms())

    def acquire(self, identifier: str | int, lease: Duration | None = None) -> Flow[Lease]:
        """Take a slot of ``identifier`` for ``lease`` (the limiter's lease by default)."""
        key = self.key(identifier)
        lease_ms = self.limit.lease_ms if lease is None else duration_ms(lease, name="lease")
        limit = self.limit.max_in_flight
        token = secrets.token_hex(16)
        try:
            args = scripts.concurrency_acquire_args(
                now=self._now(), token=token, limit=limit, lease=lease_ms
            )
            reply = yield ScriptCall(self._acquire, (key,), args)
        except NO_ANSWER:
            # The script may have run: then the slot stays taken until the lease ends.
            return Lease(self.on_timeout == "allow", limit, 0, identifier, reason="timeout")
        acquired, held, ends, now = (as_int(part) for part in reply)
        remaining = max(0, limit - held)
        if acquired:
            return Lease(True, limit, remaining, identifier, token, ends)
        return Lease(False, limit, remaining, identifier, retry_after=max(0, ends - now) / 1000)

    def release(self, lease: Lease) -> Flow[bool]:
        """Give the lease's slot back; false when it was not held (any more), or no answer."""
        _check_lease(lease)
        if not lease._took_slot:
            return False  # refused, or the timeout policy's answer: nothing to give back
        key = self.key(lease.identifier)
        try:
            args = scripts.concurrency_release_args(now=self._now(), token=lease.token)
            released = yield ScriptCall(self._release, (key,), args)
        except NO_ANSWER:
            return False  # the lease ends on its own; an exit path must not fail on it
        return bool(as_int(released))

    def extend(self, lease: Lease, lease_duration: Duration | None = None) -> Flow[bool]:
        """Make a held lease end ``lease_duration`` from now; false when it had ended."""
        _check_lease(lease)
        lease_ms = (
            self.limit.lease_ms
            if lease_duration is None
            else duration_ms(lease_duration, name="lease_duration")
        )
        if not lease._took_slot:
            return False
        key = self.key(lease.identifier)
        try:
            args = scripts.concurrency_extend_args(
                now=self._now(), token=lease.token, lease=lease_ms
            )
            reply = yield ScriptCall(self._extend, (key,), args)
        except NO_ANSWER:
            return False  # not renewed, as far as anyone can tell
        return bool(as_int(reply[0]))

    def in_flight(self, identifier: str | int) -> Flow[int]:
        """How many leases of ``identifier`` are held now."""
        args = scripts.concurrency_count_args(now=self._now())
        held = yield ScriptCall(self._count, (self.key(identifier),), args)
        return as_int(held)

    def reset(self, identifier: str | int) -> Flow[int]:
        """Drop every lease of ``identifier``; return how many keys were deleted (0 or 1)."""
        deleted = yield command("DEL", self.key(identifier))
        return as_int(deleted)


def _check_lease(lease: object) -> None:
    if not isinstance(lease, Lease):
        raise InvalidArgumentError(f"expected a Lease, got {type(lease).__name__}")


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
    ) -> None:
        self._backend, self._flows, self._timeout = _setup(
            redis, limit, prefix, timeout, on_timeout, clock
        )
        self._driver: SyncDriver | None = None

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
    ) -> None:
        self._backend, self._flows, self._timeout = _setup(
            redis, limit, prefix, timeout, on_timeout, clock
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
