"""Every cache behaviour, written once as a flow; :class:`~redkit.Cache` runs them.

Keys read ``<namespace>:<version>:g<generation>:<key>`` (no version part when there is none).
:class:`CacheFlows` composes one collaborator per mechanism, and writes the behaviours with
them (cache-aside, reads, writes, write-through, invalidation):

================================  =========================================================
the namespace generation          :mod:`redkit.cache.generations` (``bump_version``)
tags and their tokens             :mod:`redkit.cache.tags` (``invalidate_tags``)
entries: encoding, TTL, jitter,   :mod:`redkit.cache.entries` (and the envelope,
stale window, XFetch              :mod:`redkit.cache.envelope`)
the stampede lease, write fence   :mod:`redkit.cache.leases`
the local tier                    :mod:`redkit.cache.local`
deleting by pattern (``SCAN``)    :mod:`redkit.cache.scan`
the counters                      :mod:`redkit.cache.stats`
================================  =========================================================

Failure policy: a read that Redis cannot answer is a miss (``get_or_set`` then answers from the
loader), a write that fails is logged and reported as ``False``; a *delete* that fails raises,
since an invalidation that silently did not happen would leave stale data behind.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

from redkit.cache.entries import Entries
from redkit.cache.envelope import Entry
from redkit.cache.generations import Generations
from redkit.cache.leases import Leases
from redkit.cache.local import ALL, LocalTier
from redkit.cache.scan import delete_matching, scan_pattern
from redkit.cache.serializers import Serializer
from redkit.cache.stats import CacheStats, Counters
from redkit.cache.tags import Tags
from redkit.core import keys
from redkit.core.clock import Clock
from redkit.core.errors import (
    NO_ANSWER,
    BackendError,
    BackendUnavailable,
    CommandError,
    InvalidArgumentError,
)
from redkit.core.flow import Flow
from redkit.core.ops import Call, Pipeline, ScriptCall, command
from redkit.core.replies import as_int, is_ok
from redkit.core.scripts import load_script
from redkit.core.telemetry import Telemetry

if TYPE_CHECKING:  # the advise package is never imported by the cache itself
    from redkit.advise.recorder import CacheOp, TraceRecorder

__all__ = [
    "MAX_KEY_BYTES",
    "MISSING",
    "CacheFlows",
    "CacheStats",
    "Later",
    "Lookup",
    "Pending",
    "Share",
]

log = logging.getLogger("redkit.cache")

#: Adds to an integer entry that exists (``incr``).
INCR_EXISTING = load_script("redkit.cache", "incr_existing")
#: Keys longer than this (in UTF-8) are stored under a digest.
MAX_KEY_BYTES = 512
# Where Redis does not answer (NO_ANSWER), reads become misses and writes report False.


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: What ``get(key, default=MISSING)`` returns for a miss, so a cached ``None`` is told apart.
MISSING: Any = _Missing()


class Lookup(NamedTuple):
    """What ``get_or_set`` found: the value, and whether it is stale and wants a refresh."""

    value: Any
    refresh: bool


class Pending(NamedTuple):
    """A ``get_or_set`` the cache could not answer: what :meth:`CacheFlows._fill` starts from."""

    #: The checked cache key.
    name: str
    #: Its Redis key (``name`` itself when Redis did not answer before the namespace).
    redis_key: str
    #: The entry XFetch picked for an early reload; ``None`` after a miss.
    early: Entry | None
    #: Why Redis did not answer, when it did not: the loader then answers alone.
    cause: BaseException | None = None


#: How a facade runs a ``get_or_set``'s load: ``share(flight, fill)`` returns (or, in asyncio,
#: gives an awaitable of) the :class:`Lookup` of ``fill()``'s flow, run once for all the callers
#: of one ``flight`` at a time (single flight).
Share: TypeAlias = Callable[[str, Callable[[], Flow[Lookup]]], Any]
#: How a facade runs a stale value's refresh in the background: ``later(flight, refresh, key)``
#: starts ``refresh()``'s flow, at most once per ``flight`` at a time, and returns at once.
Later: TypeAlias = Callable[[str, Callable[[], Flow[None]], "str | int"], None]


class CacheFlows:
    """The flows of one configured cache."""

    def __init__(
        self,
        *,
        namespace: str,
        version: str | None,
        default_ttl_ms: int | None,
        negative_ttl_ms: int | None,
        lease_ms: int | None = None,
        early_refresh: float | None = None,
        stale_ms: int | None = None,
        ttl_jitter: float = 0.0,
        local_ttl_s: float | None = None,
        local_size: int = 10_000,
        serializer: Serializer,
        secret: bytes | None,
        text_values: bool = False,
        trace: TraceRecorder | None = None,
        clock: Clock | None = None,
        raw_ints: bool = False,
    ) -> None:
        prefix = keys.check_prefix(namespace)
        if version is not None:
            prefix += ":" + keys.escape(version)
        self.namespace = namespace
        self.version = version
        #: The time to live of a write that names none (``None``: no expiry).
        self.default_ttl_ms = default_ttl_ms
        #: What this cache did: hits, misses, loads, leases...
        self.counters = Counters(Telemetry("cache", namespace))
        self.stats: CacheStats = self.counters.stats
        #: The namespace's generation, part of every key: bump_version() leaves all behind.
        self.generations = Generations(prefix)
        #: The tags' tokens: invalidate_tags() makes every entry stamped with one stale.
        self.tags = Tags(prefix)
        #: How values are stored and how a read judges them (TTLs, jitter, stale, XFetch).
        self.entries = Entries(
            serializer=serializer, secret=secret, text_values=text_values,
            default_ttl_ms=default_ttl_ms, negative_ttl_ms=negative_ttl_ms, stale_ms=stale_ms,
            ttl_jitter=ttl_jitter, early_refresh=early_refresh, counters=self.counters,
            clock=clock, raw_ints=raw_ints,
        )  # fmt: skip
        #: The stampede leases, and the fence each write leaves in them.
        self.leases = Leases(lease_ms, self.counters, self._read_one)
        self.local = None if not local_ttl_s else LocalTier(local_ttl_s, local_size)
        #: Where writes are announced, so other processes drop their local copies.
        self.channel = prefix + "#invalidate"
        #: Where a sample of this cache's events is recorded (``redkit advise``), or ``None``.
        self.trace = trace
        # Counts this process's invalidations: a load that began before one must not be joined
        # (single flight) by a caller that came after it, or that caller gets a stale value.
        self.epoch = 0

    @property
    def _random(self) -> Callable[[], float]:
        """The dice of TTL jitter and XFetch: tests replace them to choose the outcome."""
        return self.entries.random

    @_random.setter
    def _random(self, dice: Callable[[], float]) -> None:
        self.entries.random = dice

    # -- keys, entries, counters -----------------------------------------------------------

    def flight_key(self, key: str | int) -> str:
        """The single-flight key of ``key`` (only loads begun since the last invalidation)."""
        return f"{self.epoch}:{self.key(key)}"

    def key(self, key: str | int) -> str:
        """``key`` checked, as it appears in Redis keys (after the namespace and generation)."""
        return keys.verbatim(key, max_bytes=MAX_KEY_BYTES, what="a cache key")

    @property
    def generation_check_s(self) -> float:
        """Seconds this process trusts the namespace generation it read."""
        return self.generations.check_s

    @generation_check_s.setter
    def generation_check_s(self, seconds: float) -> None:
        self.generations.check_s = seconds

    def redis_key(self, key: str | int) -> Flow[str]:
        """The Redis key of the cache key ``key``."""
        return (yield from self.generations.current()) + self.key(key)

    def _read_one(self, redis_key: str) -> Flow[Entry | None]:
        """The live entry under ``redis_key``, or ``None``.

        :meth:`_read` for one key without its lists: the hit path of ``get`` and
        ``get_or_set``, where every microsecond shows, and a lease waiter's look.
        """
        raw = yield command("GET", redis_key)
        entry = self.entries.decode(redis_key, raw)
        if entry is not None and entry.tags:
            (valid,) = yield from self.tags.still_valid([entry])
            if not valid:
                return None
        return entry

    def _changed(self, names: list[str]) -> Flow[None]:
        """After a write or an invalidation: no stale copy may be served from here on.

        Loads that began before are not joined by later callers (``epoch``), and local copies
        are dropped, here and, through a broadcast, in every other process.
        """
        self.epoch += 1
        if self.local is None:
            return
        for name in names:
            self.local.drop(name)
        announcements = tuple(
            command("PUBLISH", self.channel, self.local.message(n)) for n in names
        )
        try:
            yield Pipeline(announcements)
        except BackendError as exc:  # the others' copies then expire within the local ttl
            log.warning("cache: change of %d keys not announced: %s", len(names), exc)

    def invalidate_tags(self, *tags: str) -> Flow[int]:
        """Make every entry stamped with any of ``tags`` stale, in O(1) per tag."""
        renewed = yield from self.tags.renew(tags)
        if not renewed:
            return 0
        yield from self._changed([ALL])  # once Redis has it: loads begun before read old state
        if self.trace is not None:
            for tag in tags:
                self.trace.record_invalidation(self.namespace, "tag", tag)
        return renewed

    def bump_version(self) -> Flow[int]:
        """Start a new generation of the namespace: every entry written before is left behind.

        O(1): old entries expire on their own; other processes see the bump within
        ``generation_check_s``.
        """
        generation = yield from self.generations.bump()
        yield from self._changed([ALL])
        if self.trace is not None:
            self.trace.record_invalidation(self.namespace, "namespace")
        return generation

    def _trace_read(self, op: CacheOp, name: str, entry: Entry | None = None) -> None:
        """Record a hit or a miss of ``name`` (called only when there is a trace)."""
        trace = self.trace
        assert trace is not None
        if entry is None:  # a miss, or a hit of the local tier: nothing known of the entry
            trace.record_cache(op, self.namespace, name)
            return
        fresh = entry.fresh_until_ms
        trace.record_cache(
            op, self.namespace, name, size=entry.size or None,
            ttl=(fresh - entry.created_ms) / 1000 if fresh else None,
            load_ms=entry.load_ms or None, tags=entry.tags,
        )  # fmt: skip

    def _trace_write(
        self,
        op: CacheOp,
        name: str,
        size: int | None = None,
        ttl_ms: int | None = None,
        tags: Iterable[str] = (),
        load_ms: float | None = None,
    ) -> None:
        """Record a write, a delete or a load of ``name`` (called only when there is a trace)."""
        trace = self.trace
        assert trace is not None
        trace.record_cache(
            op, self.namespace, name, size=size, ttl=ttl_ms / 1000 if ttl_ms else None,
            load_ms=load_ms, tags=tags,
        )  # fmt: skip

    # -- flows -----------------------------------------------------------------------------

    def _read(self, redis_keys: list[str]) -> Flow[list[Entry | None]]:
        """The live entries under ``redis_keys`` (``None`` for misses, corrupt or stale ones).

        One round trip, and one more only when some entries carry tags to check.
        """
        if len(redis_keys) == 1:
            replies = [(yield command("GET", redis_keys[0]))]
        else:
            # A pipeline of GETs, not MGET: on a cluster the keys live in many slots.
            replies = yield Pipeline(tuple(command("GET", k) for k in redis_keys))
        entries = [
            None if isinstance(raw, BackendError) else self.entries.decode(redis_key, raw)
            for redis_key, raw in zip(redis_keys, replies, strict=True)
        ]
        tagged = [entry for entry in entries if entry is not None and entry.tags]
        if tagged:
            valid = yield from self.tags.still_valid(tagged)
            stale = {id(entry) for entry, ok in zip(tagged, valid, strict=True) if not ok}
            entries = [None if id(entry) in stale else entry for entry in entries]
        return entries

    def get(self, key: str | int, default: Any = None) -> Flow[Any]:
        """The cached value of ``key``, or ``default`` on a miss."""
        name = self.key(key)
        if self.local is not None:
            held = self.local.get(name)
            if LocalTier.has(held):
                self.counters.add(hits=1, local_hits=1)
                if self.trace is not None:
                    self._trace_read("hit", name)
                return held
        try:
            # The generation known: no generator for it, on the hit path.
            namespace = self.generations.known() or (yield from self.generations.current())
            entry = yield from self._read_one(namespace + name)
        except NO_ANSWER as exc:
            self.counters.add(errors=1, misses=1)
            log.warning("cache read of %r failed, counted as a miss: %s", name, exc)
            if self.trace is not None:
                self._trace_read("miss", name)
            return default
        if entry is None:
            self.counters.add(misses=1)
            if self.trace is not None:
                self._trace_read("miss", name)
            return default
        self.counters.hit()
        if self.trace is not None:
            self._trace_read("hit", name, entry)
        if self.local is not None:
            self.local.put(name, entry.value)
        return entry.value

    def get_many(self, cache_keys: Iterable[str | int]) -> Flow[dict[str | int, Any]]:
        """The cached values of those keys that hold one, in one round trip."""
        found: dict[str | int, Any] = {}
        wanted = []
        for key in dict.fromkeys(cache_keys):
            held = self.local.get(self.key(key)) if self.local is not None else None
            if self.local is not None and LocalTier.has(held):
                found[key] = held
            else:
                wanted.append(key)
        self.counters.add(hits=len(found), local_hits=len(found))
        if self.trace is not None:
            for key in found:
                self._trace_read("hit", self.key(key))
        names = [self.key(key) for key in wanted]
        if not wanted:
            return found
        try:
            namespace = yield from self.generations.current()
            entries = yield from self._read([namespace + name for name in names])
        except NO_ANSWER as exc:
            self.counters.add(errors=1, misses=len(wanted))
            log.warning("cache read of %d keys failed, counted as misses: %s", len(wanted), exc)
            if self.trace is not None:
                for name in names:
                    self._trace_read("miss", name)
            return found
        loaded = 0
        for key, name, entry in zip(wanted, names, entries, strict=True):
            if entry is not None:
                found[key] = entry.value
                loaded += 1
                if self.local is not None:
                    self.local.put(name, entry.value)
            if self.trace is not None:
                self._trace_read("miss" if entry is None else "hit", name, entry)
        self.counters.add(hits=loaded, misses=len(wanted) - loaded)
        return found

    def set(
        self, key: str | int, value: Any, ttl_ms: int | None = None, tags: Iterable[str] = ()
    ) -> Flow[bool]:
        """Store ``value`` under ``key``, stamped with ``tags``; ``False`` if Redis refused."""
        name = self.key(key)  # a bad key is refused before anything is sent
        redis_key = name
        ttl_ms = self.entries.ttl_ms(ttl_ms, value)
        try:
            namespace = self.generations.known() or (yield from self.generations.current())
            redis_key = namespace + name
            stamps = (yield from self.tags.stamp(tags)) if tags else {}
            data = self.entries.encode(redis_key, value, ttl_ms, tags=stamps)
            store = self.entries.set_command(redis_key, data, ttl_ms)
            fence = self.leases.fence([redis_key])
            # Without leases there is no fence: one command, not a pipeline of one.
            reply = (yield Pipeline((store, *fence)))[0] if fence else (yield store)
            yield from self._changed([name])
        except NO_ANSWER as exc:
            self.counters.add(errors=1)
            log.warning("cache write of %r failed: %s", redis_key, exc)
            return False
        if self.local is not None:
            self.local.put(name, value)
        if self.trace is not None:
            self._trace_write("write", name, len(data), ttl_ms, stamps)
        return is_ok(reply)

    def set_many(
        self, values: Mapping[str | int, Any], ttl_ms: int | None = None, tags: Iterable[str] = ()
    ) -> Flow[bool]:
        """Store every value, stamped with ``tags``, in one round trip; ``False`` on failure."""
        names = {key: self.key(key) for key in values}
        if not names:
            return True
        try:
            namespace = yield from self.generations.current()
            stamps = yield from self.tags.stamp(tags)
            ops = []
            traced: list[tuple[str, int, int | None]] = []
            for key, value in values.items():
                redis_key = namespace + names[key]
                entry_ttl = self.entries.ttl_ms(ttl_ms, value)
                data = self.entries.encode(redis_key, value, entry_ttl, tags=stamps)
                ops.append(self.entries.set_command(redis_key, data, entry_ttl))
                if self.trace is not None:
                    traced.append((names[key], len(data), entry_ttl))
            written = len(ops)
            fence = self.leases.fence([namespace + name for name in names.values()])
            replies = (yield Pipeline((*ops, *fence)))[:written]
            yield from self._changed(list(names.values()))
        except NO_ANSWER as exc:
            self.counters.add(errors=1)
            log.warning("cache write of %d keys failed: %s", len(names), exc)
            return False
        if self.local is not None:
            for key, value in values.items():
                self.local.put(names[key], value)
        for name, size, entry_ttl in traced:
            self._trace_write("write", name, size, entry_ttl, stamps)
        return all(is_ok(reply) for reply in replies)

    def add(self, key: str | int, value: Any, ttl_ms: int | None = None) -> Flow[bool]:
        """Store ``value`` only if ``key`` holds nothing (``SET NX``); ``True`` when stored.

        Decided by Redis, so of many callers at once exactly one stores. ``False`` too when
        Redis could not take it (the failure is logged and counted, as for :meth:`set`).
        """
        name = self.key(key)
        ttl_ms = self.entries.ttl_ms(ttl_ms, value)
        try:
            redis_key = yield from self.redis_key(key)
            data = self.entries.encode(redis_key, value, ttl_ms)
            if ttl_ms:
                px = self.entries.keep_ms(ttl_ms, data)
                store = command("SET", redis_key, data, "NX", "PX", px)
            else:
                store = command("SET", redis_key, data, "NX")
            stored = is_ok((yield Pipeline((store, *self.leases.fence([redis_key]))))[0])
            if stored:
                yield from self._changed([name])
        except NO_ANSWER as exc:
            self.counters.add(errors=1)
            log.warning("cache add of %r failed: %s", name, exc)
            return False
        if stored and self.trace is not None:
            self._trace_write("write", name, len(data), ttl_ms)
        return stored

    def incr(self, key: str | int, delta: int = 1) -> Flow[int | None]:
        """Add ``delta`` to the integer under ``key``, atomically on the server.

        Returns the new value, or ``None`` when ``key`` holds nothing. Needs ``raw_ints``
        (integers stored as digits). Raises :class:`~redkit.errors.InvalidArgumentError` when
        the value is no integer, and the backend's error when Redis cannot be reached: a
        counter has no answer of its own to fall back on.
        """
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise InvalidArgumentError(f"delta must be an int, got {delta!r}")
        name = self.key(key)
        redis_key = yield from self.redis_key(key)
        call = ScriptCall(INCR_EXISTING, (redis_key,), (delta,))
        reply, *_fenced = yield Pipeline((call, *self.leases.fence([redis_key])))
        if isinstance(reply, CommandError):
            raise InvalidArgumentError(
                f"cache key {name!r} holds no integer that Redis can add to ({reply}): "
                "incr and decr work on ints stored without tags"
            ) from reply
        if isinstance(reply, BackendError):
            raise reply
        if reply is None:
            return None
        yield from self._changed([name])
        return as_int(reply)

    def delete(self, *cache_keys: str | int) -> Flow[int]:
        """Remove those keys; return how many existed. Raises when Redis cannot be reached."""
        names = [self.key(key) for key in cache_keys]
        if not names:
            return 0
        namespace = yield from self.generations.current()
        redis_keys = [namespace + name for name in names]
        unlinks = tuple(command("UNLINK", k) for k in redis_keys)
        replies = (yield Pipeline((*unlinks, *self.leases.fence(redis_keys))))[: len(unlinks)]
        for reply in replies:
            if isinstance(reply, BackendError):
                raise reply
        yield from self._changed(names)
        if self.trace is not None:
            for name in names:
                self._trace_write("delete", name)
        return sum(as_int(reply) for reply in replies)

    def touch(self, key: str | int, ttl_ms: int | None = None) -> Flow[bool]:
        """Give ``key`` a new time to live (the default one when ``ttl_ms`` is None)."""
        ttl_ms = self.default_ttl_ms if ttl_ms is None else ttl_ms
        redis_key = yield from self.redis_key(key)
        reply = yield (
            command("PEXPIRE", redis_key, ttl_ms) if ttl_ms else command("PERSIST", redis_key)
        )
        return as_int(reply) == 1

    def ttl(self, key: str | int) -> Flow[float | None]:
        """Seconds ``key`` has left; ``None`` when it is missing or never expires."""
        redis_key = yield from self.redis_key(key)
        reply = as_int((yield command("PTTL", redis_key)))
        return None if reply < 0 else reply / 1000

    def _serve(self, name: str, entry: Entry, *, stale: bool = False, keep: bool = False) -> Lookup:
        """A hit of ``entry``, counted and traced; with ``keep``, held in the local tier too.

        Only a value read fresh is kept: one near its end (XFetch) or waited for is not.
        """
        if stale:
            self.counters.add(hits=1, stale_served=1)
        else:
            self.counters.hit()
        if self.trace is not None:
            self._trace_read("hit", name, entry)
        if keep and self.local is not None:
            self.local.put(name, entry.value)
        return Lookup(entry.value, stale)

    def _find(self, key: str | int) -> Flow[Lookup | Pending]:
        """The hit decision of ``get_or_set``, made once per call: a hit, or what to load.

        A hit is fresh (served), stale (served, and the :class:`Lookup` asks for a refresh) or
        neither: a miss, an entry XFetch picked to reload early, or Redis out of reach, each a
        :class:`Pending` that :meth:`_fill` completes. One read: ``_fill`` never reads the
        entry again before its lease.
        """
        name = self.key(key)
        if self.local is not None:
            held = self.local.get(name)
            if LocalTier.has(held):
                self.counters.add(hits=1, local_hits=1)
                if self.trace is not None:
                    self._trace_read("hit", name)
                return Lookup(held, False)
        redis_key = name
        try:
            namespace = self.generations.known() or (yield from self.generations.current())
            redis_key = namespace + name
            entry = yield from self._read_one(redis_key)
        except NO_ANSWER as exc:
            self.counters.add(errors=1, misses=1)
            if self.trace is not None:
                self._trace_read("miss", name)
            return Pending(name, redis_key, None, exc)
        if entry is None:
            return Pending(name, redis_key, None)
        state = self.entries.freshness(entry)
        if state == "early":
            return Pending(name, redis_key, entry)
        if state == "stale":
            return self._serve(name, entry, stale=True)
        return self._serve(name, entry, keep=True)

    def _fill(
        self, pending: Pending, loader: Callable[[], Any], ttl_ms: int | None, tags: Iterable[str]
    ) -> Flow[Lookup]:
        """Complete a ``get_or_set`` that :meth:`_find` could not answer from the cache.

        On a miss, one process across all takes the lease and loads; the others wait for its
        value (see :class:`~redkit.cache.leases.Leases`). An entry picked for an early reload
        is reloaded by the reader that gets the lease, and served as it is to the others. With
        Redis out of reach the loader answers, and nothing is stored.
        """
        name, redis_key, early, cause = pending
        if cause is not None:
            log.warning("cache read of %r failed, loading without the cache: %s", name, cause)
            return Lookup((yield from self._load_only(name, loader)), False)
        try:
            if early is not None:
                token = yield from self.leases.try_take(redis_key)
                if token is None:  # someone else is already reloading it
                    return self._serve(name, early)
                self.counters.add(early_refreshes=1)
            else:
                token, entry = yield from self.leases.take_or_wait(redis_key)
                if entry is not None:  # another process's load, waited for: a hit
                    return self._serve(name, entry)
            stamps = yield from self.tags.stamp(tags)  # before loading: see redkit.cache.tags
        except NO_ANSWER as exc:
            self.counters.add(errors=1, misses=1)
            log.warning("cache read of %r failed, loading without the cache: %s", redis_key, exc)
            if self.trace is not None:
                self._trace_read("miss", name)
            return Lookup((yield from self._load_only(name, loader)), False)
        self.counters.add(misses=1)
        if self.trace is not None:
            self._trace_read("miss", name)
        value = yield from self._load(name, redis_key, loader, ttl_ms, stamps, token)
        yield from self._changed([name])  # other processes' copies are older than this load
        if self.local is not None:
            self.local.put(name, value)
        return Lookup(value, False)

    def _load_only(self, name: str, loader: Callable[[], Any]) -> Flow[Any]:
        """The loader's value, with Redis out of reach: nothing is stored."""
        self.counters.add(loads=1)
        started = time.monotonic()
        value = yield Call(loader)
        took = time.monotonic() - started
        self.counters.load_took(took)
        if self.trace is not None:
            self._trace_write("load", name, load_ms=took * 1000)
        return value

    def get_or_set(
        self,
        key: str | int,
        loader: Callable[[], Any],
        ttl_ms: int | None = None,
        tags: Iterable[str] = (),
        *,
        share: Share | None = None,
        later: Later | None = None,
    ) -> Flow[Lookup]:
        """Cache-aside: the cached value, or ``loader()``'s, stored with ``tags`` for next time.

        The whole of it, for both facades: one read decides (:meth:`_find`); a miss, an early
        reload or Redis out of reach is completed by :meth:`_fill`, through ``share`` when
        given (the facade's single flight: the callers of one process share one load). A stale
        value is served at once; ``later``, when given, gets its refresh to run in the
        background (without it the returned :class:`Lookup` says a refresh is due).
        """
        tags = tuple(tags)
        found = yield from self._find(key)
        if isinstance(found, Pending):
            fill = functools.partial(self._fill, found, loader, ttl_ms, tags)
            if share is None:
                found = yield from fill()
            else:
                found = yield Call(share, (self.flight_key(key), fill))
        if found.refresh and later is not None:
            refresh = functools.partial(self.refresh, key, loader, ttl_ms, tags)
            yield Call(later, ("refresh:" + self.flight_key(key), refresh, key))
        return found

    def refresh(
        self, key: str | int, loader: Callable[[], Any], ttl_ms: int | None, tags: Iterable[str]
    ) -> Flow[None]:
        """Reload a stale ``key`` (a background job), unless another caller already is."""
        redis_key = yield from self.redis_key(key)
        token = yield from self.leases.try_take(redis_key)
        if token is None:
            return
        stamps = yield from self.tags.stamp(tags)
        value = yield from self._load(self.key(key), redis_key, loader, ttl_ms, stamps, token)
        yield from self._changed([self.key(key)])
        if self.local is not None:
            self.local.put(self.key(key), value)

    def _load(
        self,
        name: str,
        redis_key: str,
        loader: Callable[[], Any],
        ttl_ms: int | None,
        stamps: dict[str, str],
        token: str | None,
    ) -> Flow[Any]:
        """Run the loader and store its value; give the lease back (``token``) after.

        ``name`` is the checked key that ``redis_key`` stores.
        """
        self.counters.add(loads=1)
        try:
            started = time.monotonic()
            value = yield Call(loader)
            took_ms = (time.monotonic() - started) * 1000
            self.counters.load_took(took_ms / 1000)
            load_ms = round(took_ms)
            ttl_ms = self.entries.ttl_ms(ttl_ms, value)
            data = self.entries.encode(redis_key, value, ttl_ms, load_ms, tags=stamps)
            try:
                if token:  # a write since the load began wins over this older value
                    px = self.entries.keep_ms(ttl_ms, data)
                    yield self.leases.store(redis_key, token, data, px)
                else:
                    yield self.entries.set_command(redis_key, data, ttl_ms)
            except NO_ANSWER as exc:
                self.counters.add(errors=1)
                log.warning(
                    "cache write of %r failed; the loaded value is still returned: %s",
                    redis_key, exc,
                )  # fmt: skip
            if self.trace is not None:
                self._trace_write("load", name, len(data), ttl_ms, stamps, took_ms)
        except GeneratorExit:
            raise  # abandoned (a cancelled task): no more round trips; the lease expires
        except BaseException:
            yield from self.leases.release(redis_key, token)
            raise
        yield from self.leases.release(redis_key, token)
        return value

    def write_through(
        self,
        key: str | int,
        write: Callable[[], Any],
        ttl_ms: int | None = None,
        tags: Iterable[str] = (),
    ) -> Flow[Any]:
        """Run ``write`` (the database write), then cache what it returned.

        When the value cannot be cached, the key is deleted instead: after a successful write
        the cache holds the new value or nothing, never the old one. If even the delete fails,
        the error is raised, so the caller knows a stale value may remain.
        """
        redis_key = self.key(key)  # a bad key is refused before the write runs
        namespaced = False
        stamps: dict[str, str] | None = None
        try:
            redis_key = yield from self.redis_key(key)
            namespaced = True
            stamps = yield from self.tags.stamp(tags)  # before the write: see _stamp
        except NO_ANSWER as exc:
            log.warning("cache write-through of %r cannot reach Redis: %s", redis_key, exc)
        value = yield Call(write)
        ttl_ms = self.entries.ttl_ms(ttl_ms, value)
        size: int | None = None
        try:
            if stamps is None:
                raise BackendUnavailable("Redis was out of reach before the write")
            data = self.entries.encode(redis_key, value, ttl_ms, tags=stamps)
            size = len(data)
            store = self.entries.set_command(redis_key, data, ttl_ms)
            replies = yield Pipeline((store, *self.leases.fence([redis_key])))
            if isinstance(replies[0], BackendError):
                raise replies[0]
        except (BackendError, InvalidArgumentError) as exc:
            log.warning("cache write-through of %r failed, deleting the key: %s", redis_key, exc)
            self.counters.add(errors=1)
            if not namespaced:  # never the bare key: it is not the cache's
                redis_key = yield from self.redis_key(key)
            # Raises if Redis cannot even delete: the caller must know a stale value may remain.
            unlinked = yield Pipeline(
                (command("UNLINK", redis_key), *self.leases.fence([redis_key]))
            )
            if isinstance(unlinked[0], BackendError):
                raise unlinked[0] from exc
            if isinstance(exc, InvalidArgumentError):
                raise
            size = None  # deleted instead: the origin changed, the cache holds nothing
        yield from self._changed([self.key(key)])
        if self.local is not None:
            self.local.put(self.key(key), value)
        if self.trace is not None:
            self._trace_write(
                "write" if size else "delete", self.key(key), size, ttl_ms, stamps or ()
            )
        return value

    def delete_pattern(
        self,
        pattern: str,
        parts: tuple[str | int, ...] = (),
        *,
        batch: int = 500,
        progress: Callable[[int], Any] | None = None,
    ) -> Flow[int]:
        """Delete every key matching ``pattern``, with ``SCAN`` on every master, in batches.

        Never ``KEYS``: each step is one ``SCAN`` page and one pipelined ``UNLINK`` of what it
        found, so Redis stays responsive however many keys match. ``progress`` is called with
        the running count after each batch. Returns how many keys were deleted.
        """
        namespace = yield from self.generations.current()
        match = scan_pattern(pattern, parts, namespace, MAX_KEY_BYTES)
        deleted = yield from delete_matching(match, batch, progress)
        yield from self._changed([ALL])
        if self.trace is not None:
            self.trace.record_invalidation(self.namespace, "pattern")
        return deleted
