"""``Cache`` and ``AsyncCache``: the same flows, run blocking or in asyncio."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from redkit.cache.callkeys import CallKey
from redkit.cache.flows import MISSING, CacheFlows, CacheStats, Lookup
from redkit.cache.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)
from redkit.cache.singleflight import AsyncSingleFlight, SingleFlight
from redkit.core.breaker import AsyncBreakerDriver, Breaker, BreakerDriver
from redkit.core.clock import Clock
from redkit.core.driver import (
    AsyncDriver,
    Backend,
    Subscribable,
    SyncDriver,
    as_backend,
    values_are_text,
)
from redkit.core.durations import Duration, duration_ms, timeout_or_none
from redkit.core.errors import InvalidArgumentError
from redkit.core.fleet import AsyncReporter, ThreadReporter, start_reporter, stats_interval
from redkit.core.flow import Flow, run_async, run_sync

if TYPE_CHECKING:  # the advise package is imported only by those who record a trace
    from redkit.advise.recorder import TraceRecorder

__all__ = ["MISSING", "AsyncCache", "Cache"]

log = logging.getLogger("redkit.cache")

P = ParamSpec("P")
R = TypeVar("R")

#: Seconds one cache operation may wait for Redis before it counts as a miss.
DEFAULT_TIMEOUT = 1.0
#: How long one process may load a missing key while the others wait for it.
DEFAULT_LEASE = "5 s"
#: The shortest secret accepted for signing pickled entries.
MIN_SECRET_BYTES = 16


def _ttl(value: Duration | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return _duration_ms(value, name)
    except TypeError:  # unhashable: not a duration, and duration_ms says so clearly
        return duration_ms(value, name=name)


@functools.lru_cache(maxsize=256, typed=True)  # typed: True is not 1
def _duration_ms(value: Duration, name: str) -> int:
    # The same few TTLs ("5 m") come with every call: parse (and check) each once.
    return duration_ms(value, name=name)


def _size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"local_size must be a positive int, got {value!r}")
    return value


def _non_negative(value: float | None, name: str, most: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= most:
        raise InvalidArgumentError(f"{name} must be a number from 0 to {most}, got {value!r}")
    return float(value)


def _serializer(
    choice: str | Serializer, secret: str | bytes | None
) -> tuple[Serializer, bytes | None]:
    key = secret.encode() if isinstance(secret, str) else secret
    if key is not None and len(key) < MIN_SECRET_BYTES:
        raise InvalidArgumentError(f"secret must be at least {MIN_SECRET_BYTES} bytes long")
    serializer: Serializer
    if choice == "json":
        serializer = JsonSerializer()
    elif choice == "msgpack":
        serializer = MsgpackSerializer()
    elif choice == "pickle":
        serializer = PickleSerializer()
    elif isinstance(choice, str):
        raise InvalidArgumentError(
            f'serializer must be "json", "msgpack", "pickle" or a Serializer, got {choice!r}'
        )
    else:
        serializer = choice
    if serializer.needs_signature and key is None:
        raise InvalidArgumentError(
            "pickled entries run code when read: give the cache a secret (secret=...) so "
            "that every entry is signed and a forged one is never unpickled"
        )
    return serializer, key


def _setup(
    redis: object,
    namespace: str,
    version: str | None,
    default_ttl: Duration | None,
    negative_ttl: Duration | None,
    lease: Duration | None,
    early_refresh: float | None,
    stale_ttl: Duration | None,
    ttl_jitter: float,
    local_ttl: Duration | None,
    local_size: int,
    serializer: str | Serializer,
    secret: str | bytes | None,
    timeout: float | None,
    trace: TraceRecorder | None,
    clock: Clock | None = None,
    raw_ints: bool = False,
) -> tuple[Backend, CacheFlows, float | None]:
    backend = as_backend(redis)
    chosen, key = _serializer(serializer, secret)
    timeout_or_none(timeout)
    flows = CacheFlows(
        namespace=namespace,
        version=version,
        default_ttl_ms=_ttl(default_ttl, "default_ttl"),
        negative_ttl_ms=_ttl(negative_ttl, "negative_ttl"),
        lease_ms=_ttl(lease, "lease"),
        early_refresh=_non_negative(early_refresh, "early_refresh", 10.0),
        stale_ms=_ttl(stale_ttl, "stale_ttl"),
        ttl_jitter=_non_negative(ttl_jitter, "ttl_jitter", 0.5) or 0.0,
        local_ttl_s=None if local_ttl is None else duration_ms(local_ttl, name="local_ttl") / 1000,
        local_size=_size(local_size),
        serializer=chosen,
        secret=key,
        text_values=values_are_text(backend),
        trace=_trace(trace),
        clock=_clock(clock),
        raw_ints=raw_ints,
    )
    return backend, flows, timeout


def _clock(clock: Clock | None) -> Clock | None:
    if clock is None:
        return None
    if getattr(clock, "server", True) or not callable(getattr(clock, "now_ms", None)):
        raise InvalidArgumentError(
            "clock must be a local clock object (redkit.core.clock.VirtualClock or "
            f"ClientClock) or None for this machine's clock, got {clock!r}"
        )
    return clock


def _trace(trace: TraceRecorder | None) -> TraceRecorder | None:
    if trace is not None and not callable(getattr(trace, "record_cache", None)):
        raise InvalidArgumentError(
            f"trace must be a redkit.advise.TraceRecorder (TraceRecorder.to_file(...) or "
            f".to_stream(...)) or None, got {type(trace).__name__}"
        )
    return trace


def _listen(backend: Backend, flows: CacheFlows) -> Callable[[], None] | None:
    """Subscribe the local tier to other processes' announcements, where there is one."""
    if flows.local is None:
        return None
    if not isinstance(backend, Subscribable):
        log.warning("cache: this Redis client cannot subscribe: local copies live out local_ttl")
        return None
    return backend.subscribe(flows.channel, flows.local.on_message)


def _check_kind(fn: Callable[..., Any], facade: str) -> None:
    """Refuse at decoration a function the facade cannot call: its results would be wrong."""
    is_async = inspect.iscoroutinefunction(fn)
    if facade == "Cache" and is_async:
        raise InvalidArgumentError(
            f"Cache.cached cannot cache async def {fn.__qualname__}: use AsyncCache(...).cached"
        )
    if facade == "AsyncCache" and not is_async:
        raise InvalidArgumentError(
            f"AsyncCache.cached caches async def functions, not {fn.__qualname__}: "
            "use Cache(...).cached for a plain function"
        )


class Cache:
    """A Redis cache, blocking.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py client.
        namespace: the start of every key (``<namespace>:<version>:<key>``).
        version: a version part of every key: change it to leave every old entry behind.
        default_ttl: how long entries live (``"5 m"``, seconds, ``timedelta``); ``None`` for
            no expiry.
        negative_ttl: how long a loaded ``None`` ("not found") lives, when it should be
            shorter than ``default_ttl``.
        lease: on a miss, one process takes a lease this long and loads while the others wait
            for its value (at most this long, then they load too); ``None`` turns it off.
        early_refresh: XFetch's beta: a value near its end is reloaded early by one reader,
            the sooner the longer it took to load (1.0 is the paper's choice; ``None``: off).
        stale_ttl: stale-while-revalidate: keep a value this long past its time, served at
            once while one caller reloads it in the background.
        ttl_jitter: shorten each time to live by up to this fraction (0 to 0.5), at random,
            so entries written together do not expire together.
        local_ttl: keep values in this process's memory too, for this long at most: a hit
            there costs no round trip. Writes and deletes are announced over pub/sub, so every
            process drops its copy at once (within ``local_ttl`` if a message is lost). All
            processes sharing a namespace should use the local tier alike.
        local_size: the local tier's capacity, in entries (least recently used go first).
        serializer: ``"json"`` (the default), ``"msgpack"``, ``"pickle"`` (needs ``secret``),
            or a :class:`~redkit.cache.serializers.Serializer`.
        secret: signs every pickled entry, bound to its key (at least 16 bytes).
        timeout: seconds one operation may wait for Redis; then a read is a miss.
        trace: a :class:`~redkit.advise.TraceRecorder` that records a sample of this cache's
            reads, loads, writes and invalidations for ``redkit advise`` (off the request
            path); ``None`` (the default) records nothing and costs nothing.
        clock: where the entries' times come from: ``None`` (the default) for this machine's
            clock, or a clock object such as :class:`redkit.core.clock.VirtualClock` (tests,
            simulations). With a clock of its own, an entry is gone once that clock passes its
            expiry, even while Redis, which expires keys on its own time, still holds it.
        stats: add this process's counters (hits, misses, loads, ...) to Redis at this
            interval (``"10 s"``; at least 1 s), for :func:`redkit.stats.read` to sum over
            every process; ``None`` (the default) keeps them in this process only. One
            pipelined round trip per interval, from a background thread, never on the request
            path (docs/stats.md). :meth:`close` sends what is left.
        raw_ints: store an ``int`` written without tags as its digits, with no envelope, so
            that :meth:`incr` can add to it on the server (``False``, the default: every
            value in an envelope, and :meth:`incr` refuses them).

    """

    def __init__(
        self,
        redis: object,
        *,
        namespace: str = "cache",
        version: str | None = None,
        default_ttl: Duration | None = 300,
        negative_ttl: Duration | None = None,
        lease: Duration | None = DEFAULT_LEASE,
        early_refresh: float | None = 1.0,
        stale_ttl: Duration | None = None,
        ttl_jitter: float = 0.0,
        local_ttl: Duration | None = None,
        local_size: int = 10_000,
        serializer: str | Serializer = "json",
        secret: str | bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        trace: TraceRecorder | None = None,
        clock: Clock | None = None,
        stats: Duration | None = None,
        raw_ints: bool = False,
    ) -> None:
        interval = stats_interval(stats)
        self._backend, self._flows, self._timeout = _setup(
            redis, namespace, version, default_ttl, negative_ttl, lease, early_refresh,
            stale_ttl, ttl_jitter, local_ttl, local_size, serializer, secret, timeout, trace,
            clock, raw_ints,
        )  # fmt: skip
        self._unsubscribe = _listen(self._backend, self._flows)
        # Stops waiting on a Redis that is down: reads miss at once, the loader answers.
        self._breaker = Breaker()
        self._driver: SyncDriver | None = None
        self._single_flight = SingleFlight()
        self._refresher: ThreadPoolExecutor | None = None
        self._stats = start_reporter(
            ThreadReporter,
            interval,
            self._backend,
            self._flows.counters.telemetry,
            self._timeout,
            clock,
        )

    def _sync_driver(self) -> SyncDriver:
        if self._driver is None:
            driver = self._backend.sync_driver(timeout=self._timeout)
            self._driver = BreakerDriver(driver, self._breaker)
        return self._driver

    @property
    def stats(self) -> CacheStats:
        """Hits, misses, loads, errors and corrupt entries seen so far."""
        return self._flows.stats

    @property
    def breaker(self) -> Breaker:
        """The circuit breaker in front of Redis (open after 5 unanswered calls, for 5 s)."""
        return self._breaker

    def get(self, key: str | int, default: Any = None) -> Any:
        """The cached value, or ``default`` (pass ``default=MISSING`` to tell a cached None)."""
        return run_sync(self._flows.get(key, default), self._sync_driver())

    def get_many(self, keys: Iterable[str | int]) -> dict[str | int, Any]:
        """The cached values of those keys that hold one, in one round trip."""
        return run_sync(self._flows.get_many(keys), self._sync_driver())

    def set(
        self, key: str | int, value: Any, ttl: Duration | None = None, *, tags: Iterable[str] = ()
    ) -> bool:
        """Store ``value`` (stamped with ``tags``); ``False`` when Redis could not take it."""
        flow = self._flows.set(key, value, _ttl(ttl, "ttl"), tags)
        return run_sync(flow, self._sync_driver())

    def set_many(
        self,
        values: Mapping[str | int, Any],
        ttl: Duration | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> bool:
        """Store every value in one round trip; ``False`` when any could not be stored."""
        flow = self._flows.set_many(values, _ttl(ttl, "ttl"), tags)
        return run_sync(flow, self._sync_driver())

    def add(self, key: str | int, value: Any, ttl: Duration | None = None) -> bool:
        """Store ``value`` only if ``key`` holds nothing; ``True`` when this call stored it."""
        return run_sync(self._flows.add(key, value, _ttl(ttl, "ttl")), self._sync_driver())

    def incr(self, key: str | int, delta: int = 1) -> int | None:
        """Add ``delta`` to an integer, on the server (needs ``raw_ints``); ``None`` if missing."""
        return run_sync(self._flows.incr(key, delta), self._sync_driver())

    def invalidate_tags(self, *tags: str) -> int:
        """Make every entry stamped with any of ``tags`` stale at once (O(1) per tag)."""
        return run_sync(self._flows.invalidate_tags(*tags), self._sync_driver())

    def delete(self, *keys: str | int) -> int:
        """Remove those keys; return how many existed. Raises if Redis cannot be reached."""
        return run_sync(self._flows.delete(*keys), self._sync_driver())

    def touch(self, key: str | int, ttl: Duration | None = None) -> bool:
        """Give ``key`` a new time to live; ``False`` when it does not exist."""
        return run_sync(self._flows.touch(key, _ttl(ttl, "ttl")), self._sync_driver())

    def ttl(self, key: str | int) -> float | None:
        """Seconds ``key`` has left; ``None`` when missing or without expiry."""
        return run_sync(self._flows.ttl(key), self._sync_driver())

    def get_or_set(
        self,
        key: str | int,
        loader: Callable[[], Any],
        ttl: Duration | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> Any:
        """The cached value, or ``loader()``'s, stored for next time (one load per process)."""
        flow = self._flows.get_or_set(
            key, loader, _ttl(ttl, "ttl"), tags, share=self._share, later=self._refresh_later
        )
        return run_sync(flow, self._sync_driver()).value

    def _share(self, flight: str, fill: Callable[[], Flow[Lookup]]) -> Lookup:
        # Threads that miss the same key at once share one load (and one lease request).
        lookup: Lookup = self._single_flight.run(
            flight, lambda: run_sync(fill(), self._sync_driver())
        )
        return lookup

    def _refresh_later(
        self, flight: str, refresh: Callable[[], Flow[None]], key: str | int
    ) -> None:
        if self._refresher is None:
            self._refresher = ThreadPoolExecutor(2, thread_name_prefix="redkit-cache-refresh")

        def run() -> None:
            try:
                self._single_flight.run(flight, lambda: run_sync(refresh(), self._sync_driver()))
            except Exception:
                log.exception("cache: background refresh of %r failed", key)

        self._refresher.submit(run)

    def close(self) -> None:
        """Stop listening for changes (local tier), end background work, send the statistics."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._refresher is not None:
            self._refresher.shutdown(wait=True)
            self._refresher = None
        if self._stats is not None:
            self._stats.close()

    def flush(self) -> None:
        """Send the fleet statistics counted so far now (nothing to do without ``stats=``)."""
        if self._stats is not None:
            self._stats.flush()

    def bump_version(self) -> int:
        """Leave every entry of the namespace behind at once (O(1)); return the new generation.

        Old entries are no longer read and expire on their own. This process sees the new
        generation at once, others within a second.
        """
        return run_sync(self._flows.bump_version(), self._sync_driver())

    def write_through(
        self,
        key: str | int,
        write: Callable[[], Any],
        ttl: Duration | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> Any:
        """Run ``write`` (the database write), then cache its result.

        When the result cannot be cached the key is deleted instead, so the cache holds the
        new value or nothing, never the old one; if even that fails, the error is raised.
        """
        flow = self._flows.write_through(key, write, _ttl(ttl, "ttl"), tags)
        return run_sync(flow, self._sync_driver())

    def delete_pattern(
        self,
        pattern: str,
        *parts: str | int,
        batch: int = 500,
        progress: Callable[[int], Any] | None = None,
    ) -> int:
        """Delete the keys matching ``pattern``; return how many were deleted.

        ``pattern`` is a glob over cache keys, such as ``"user:{}:*"``: each ``{}`` takes one of
        ``parts``, matched literally. ``SCAN`` walks every master, in batches of ``batch``.
        """
        flow = self._flows.delete_pattern(pattern, parts, batch=batch, progress=progress)
        return run_sync(flow, self._sync_driver())

    def writes(
        self, ttl: Duration | None = None, *, key: str, tags: Iterable[str] = ()
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a write function (write-through): its result is cached under ``key``.

        ``key`` is a template filled with the function's arguments; when caching the result
        fails, the key is deleted, so no stale value survives the write.
        """

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            _check_kind(fn, "Cache")
            make_key = CallKey(fn, key, tags)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                name, call_tags = make_key.key_and_tags(args, kwargs)
                value: R = self.write_through(
                    name, lambda: fn(*args, **kwargs), ttl, tags=call_tags
                )
                return value

            return wrapper

        return decorate

    def cached(
        self, ttl: Duration | None = None, *, key: str | None = None, tags: Iterable[str] = ()
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a function: its results are cached per arguments.

        ``key`` is a template filled with the arguments by name (``"user:{uid}"``); by default
        the key is the function's qualified name and a stable hash of its arguments. The
        wrapper has ``.invalidate(*args, **kwargs)`` and ``.refresh(*args, **kwargs)``.
        """

        def decorate(fn: Callable[P, R]) -> Callable[P, R]:
            _check_kind(fn, "Cache")
            make_key = CallKey(fn, key, tags)

            @functools.wraps(fn)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                name, call_tags = make_key.key_and_tags(args, kwargs)
                value: R = self.get_or_set(name, lambda: fn(*args, **kwargs), ttl, tags=call_tags)
                return value

            def invalidate(*args: Any, **kwargs: Any) -> int:
                return self.delete(make_key(args, kwargs))

            def refresh(*args: Any, **kwargs: Any) -> R:
                value = fn(*args, **kwargs)
                name, call_tags = make_key.key_and_tags(args, kwargs)
                self.set(name, value, ttl, tags=call_tags)
                return value

            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            wrapper.refresh = refresh  # type: ignore[attr-defined]
            return wrapper

        return decorate


class AsyncCache:
    """A Redis cache for asyncio: the arguments and methods of :class:`Cache`, as coroutines.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py asyncio client.
        namespace: as for :class:`Cache`.
        version: as for :class:`Cache`.
        default_ttl: as for :class:`Cache`.
        negative_ttl: as for :class:`Cache`.
        lease: as for :class:`Cache`.
        early_refresh: as for :class:`Cache`.
        stale_ttl: as for :class:`Cache`.
        ttl_jitter: as for :class:`Cache`.
        local_ttl: as for :class:`Cache`.
        local_size: as for :class:`Cache`.
        serializer: as for :class:`Cache`.
        secret: as for :class:`Cache`.
        timeout: as for :class:`Cache`.
        trace: as for :class:`Cache`.
        clock: as for :class:`Cache`.
        stats: as for :class:`Cache` (sent by an asyncio task).
        raw_ints: as for :class:`Cache`.

    """

    def __init__(
        self,
        redis: object,
        *,
        namespace: str = "cache",
        version: str | None = None,
        default_ttl: Duration | None = 300,
        negative_ttl: Duration | None = None,
        lease: Duration | None = DEFAULT_LEASE,
        early_refresh: float | None = 1.0,
        stale_ttl: Duration | None = None,
        ttl_jitter: float = 0.0,
        local_ttl: Duration | None = None,
        local_size: int = 10_000,
        serializer: str | Serializer = "json",
        secret: str | bytes | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        trace: TraceRecorder | None = None,
        clock: Clock | None = None,
        stats: Duration | None = None,
        raw_ints: bool = False,
    ) -> None:
        interval = stats_interval(stats)
        self._backend, self._flows, self._timeout = _setup(
            redis, namespace, version, default_ttl, negative_ttl, lease, early_refresh,
            stale_ttl, ttl_jitter, local_ttl, local_size, serializer, secret, timeout, trace,
            clock, raw_ints,
        )  # fmt: skip
        self._unsubscribe = _listen(self._backend, self._flows)
        # Stops waiting on a Redis that is down: reads miss at once, the loader answers.
        self._breaker = Breaker()
        self._guarded: AsyncBreakerDriver | None = None
        self._single_flight = AsyncSingleFlight()
        self._refreshing: set[asyncio.Task[None]] = set()
        self._stats = start_reporter(
            AsyncReporter,
            interval,
            self._backend,
            self._flows.counters.telemetry,
            self._timeout,
            clock,
        )

    def _async_driver(self) -> AsyncDriver:
        # The backend keeps one driver per event loop; the breaker's wrapper follows it.
        driver = self._backend.async_driver(timeout=self._timeout)
        guarded = self._guarded
        if guarded is None or guarded.driver is not driver:
            guarded = self._guarded = AsyncBreakerDriver(driver, self._breaker)
        return guarded

    @property
    def stats(self) -> CacheStats:
        """Hits, misses, loads, errors and corrupt entries seen so far."""
        return self._flows.stats

    @property
    def breaker(self) -> Breaker:
        """The circuit breaker in front of Redis (open after 5 unanswered calls, for 5 s)."""
        return self._breaker

    async def get(self, key: str | int, default: Any = None) -> Any:
        """The cached value, or ``default`` (pass ``default=MISSING`` to tell a cached None)."""
        return await run_async(self._flows.get(key, default), self._async_driver())

    async def get_many(self, keys: Iterable[str | int]) -> dict[str | int, Any]:
        """The cached values of those keys that hold one, in one round trip."""
        return await run_async(self._flows.get_many(keys), self._async_driver())

    async def set(
        self, key: str | int, value: Any, ttl: Duration | None = None, *, tags: Iterable[str] = ()
    ) -> bool:
        """Store ``value`` (stamped with ``tags``); ``False`` when Redis could not take it."""
        flow = self._flows.set(key, value, _ttl(ttl, "ttl"), tags)
        return await run_async(flow, self._async_driver())

    async def set_many(
        self,
        values: Mapping[str | int, Any],
        ttl: Duration | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> bool:
        """Store every value in one round trip; ``False`` when any could not be stored."""
        flow = self._flows.set_many(values, _ttl(ttl, "ttl"), tags)
        return await run_async(flow, self._async_driver())

    async def add(self, key: str | int, value: Any, ttl: Duration | None = None) -> bool:
        """Store ``value`` only if ``key`` holds nothing; see :meth:`Cache.add`."""
        flow = self._flows.add(key, value, _ttl(ttl, "ttl"))
        return await run_async(flow, self._async_driver())

    async def incr(self, key: str | int, delta: int = 1) -> int | None:
        """Add ``delta`` to an integer, on the server; see :meth:`Cache.incr`."""
        return await run_async(self._flows.incr(key, delta), self._async_driver())

    async def invalidate_tags(self, *tags: str) -> int:
        """Make every entry stamped with any of ``tags`` stale at once (O(1) per tag)."""
        return await run_async(self._flows.invalidate_tags(*tags), self._async_driver())

    async def delete(self, *keys: str | int) -> int:
        """Remove those keys; return how many existed. Raises if Redis cannot be reached."""
        return await run_async(self._flows.delete(*keys), self._async_driver())

    async def touch(self, key: str | int, ttl: Duration | None = None) -> bool:
        """Give ``key`` a new time to live; ``False`` when it does not exist."""
        return await run_async(self._flows.touch(key, _ttl(ttl, "ttl")), self._async_driver())

    async def ttl(self, key: str | int) -> float | None:
        """Seconds ``key`` has left; ``None`` when missing or without expiry."""
        return await run_async(self._flows.ttl(key), self._async_driver())

    async def get_or_set(
        self,
        key: str | int,
        loader: Callable[[], Any],
        ttl: Duration | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> Any:
        """The cached value, or ``loader()``'s (sync or async), stored for next time."""
        flow = self._flows.get_or_set(
            key, loader, _ttl(ttl, "ttl"), tags, share=self._share, later=self._refresh_later
        )
        return (await run_async(flow, self._async_driver())).value

    def _share(self, flight: str, fill: Callable[[], Flow[Lookup]]) -> Awaitable[Lookup]:
        # Tasks that miss the same key at once share one load (and one lease request).
        return self._single_flight.run(flight, lambda: run_async(fill(), self._async_driver()))

    def _refresh_later(
        self, flight: str, refresh: Callable[[], Flow[None]], key: str | int
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh(flight, refresh, key))
        self._refreshing.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._refreshing.discard)

    async def _refresh(
        self, flight: str, refresh: Callable[[], Flow[None]], key: str | int
    ) -> None:
        try:
            await self._single_flight.run(
                flight, lambda: run_async(refresh(), self._async_driver())
            )
        except Exception:
            log.exception("cache: background refresh of %r failed", key)

    async def close(self) -> None:
        """Stop listening for changes, wait for background refreshes, send the statistics."""
        if self._unsubscribe is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._unsubscribe)
            self._unsubscribe = None
        if self._refreshing:
            await asyncio.gather(*self._refreshing, return_exceptions=True)
        if self._stats is not None:
            await self._stats.close()

    async def flush(self) -> None:
        """Send the fleet statistics counted so far now; see :meth:`Cache.flush`."""
        if self._stats is not None:
            await self._stats.flush()

    async def bump_version(self) -> int:
        """Leave every entry of the namespace behind at once; see :meth:`Cache.bump_version`."""
        return await run_async(self._flows.bump_version(), self._async_driver())

    async def write_through(
        self,
        key: str | int,
        write: Callable[[], Any],
        ttl: Duration | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> Any:
        """Run ``write`` (sync or async), then cache its result; see :meth:`Cache.write_through`."""
        flow = self._flows.write_through(key, write, _ttl(ttl, "ttl"), tags)
        return await run_async(flow, self._async_driver())

    async def delete_pattern(
        self,
        pattern: str,
        *parts: str | int,
        batch: int = 500,
        progress: Callable[[int], Any] | None = None,
    ) -> int:
        """Delete the keys matching ``pattern``; see :meth:`Cache.delete_pattern`."""
        flow = self._flows.delete_pattern(pattern, parts, batch=batch, progress=progress)
        return await run_async(flow, self._async_driver())

    def writes(
        self, ttl: Duration | None = None, *, key: str, tags: Iterable[str] = ()
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate an async write function: write-through, as :meth:`Cache.writes`."""

        def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            _check_kind(fn, "AsyncCache")
            make_key = CallKey(fn, key, tags)

            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                name, call_tags = make_key.key_and_tags(args, kwargs)
                value: R = await self.write_through(
                    name, lambda: fn(*args, **kwargs), ttl, tags=call_tags
                )
                return value

            return wrapper

        return decorate

    def cached(
        self, ttl: Duration | None = None, *, key: str | None = None, tags: Iterable[str] = ()
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Decorate an async function: its results are cached per arguments.

        As :meth:`Cache.cached`; ``.invalidate`` and ``.refresh`` are coroutines here.
        """

        def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            _check_kind(fn, "AsyncCache")
            make_key = CallKey(fn, key, tags)

            @functools.wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                name, call_tags = make_key.key_and_tags(args, kwargs)
                value: R = await self.get_or_set(
                    name, lambda: fn(*args, **kwargs), ttl, tags=call_tags
                )
                return value

            async def invalidate(*args: Any, **kwargs: Any) -> int:
                return await self.delete(make_key(args, kwargs))

            async def refresh(*args: Any, **kwargs: Any) -> R:
                value = await fn(*args, **kwargs)
                name, call_tags = make_key.key_and_tags(args, kwargs)
                await self.set(name, value, ttl, tags=call_tags)
                return value

            wrapper.invalidate = invalidate  # type: ignore[attr-defined]
            wrapper.refresh = refresh  # type: ignore[attr-defined]
            return wrapper

        return decorate
