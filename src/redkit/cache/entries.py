"""An entry's life: how a value is written, and how a read judges what it found.

Written: the :mod:`redkit.cache.envelope` envelope (the serialized value with the moment it was
stored, when it stops being fresh, when it expires and how long its loader took), its time to
live, jittered, and its stale window. Judged: fresh, stale, or picked by XFetch to reload early.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

from redkit.cache.envelope import CorruptEntry, Entry, entry_from_text, entry_to_text, pack, unpack
from redkit.cache.serializers import Serializer
from redkit.cache.stats import Counters
from redkit.core.clock import Clock
from redkit.core.ops import Command, command

__all__ = ["Entries", "Freshness"]

log = logging.getLogger("redkit.cache")

#: How an entry read stands: serve it; serve it and refresh it in the background; reload it now.
Freshness: TypeAlias = Literal["fresh", "stale", "early"]


#: The first bytes of a stored integer (an envelope starts with 0xFF, its text form with "r").
_INT_STARTS = frozenset(b"%d" % d for d in range(10)) | {b"-"}


def _plain_int(stored: bytes) -> int:
    """The integer a raw value holds; :class:`CorruptEntry` for other bytes."""
    try:
        return int(stored)
    except ValueError as exc:
        raise CorruptEntry("a value starting as an integer that is none") from exc


def _now_ms() -> int:
    return int(time.time() * 1000)


class Entries:
    """The entries of one cache: written with its settings, judged by its clock.

    Args:
        serializer: turns values into bytes and back.
        secret: signs each entry, bound to its key (``None``: unsigned).
        text_values: store entries in their text form (a server that takes only text).
        default_ttl_ms: the time to live of a write that names none (``None``: no expiry).
        negative_ttl_ms: the time to live of a ``None`` value, when it has its own.
        stale_ms: how long an entry is kept, stale, past its time (stale-while-revalidate).
        ttl_jitter: each time to live is cut by up to this fraction, at random.
        early_refresh: XFetch's beta (``None``: no early reloads).
        counters: where corrupt entries are counted.
        clock: where the entries' times come from (``None``: this machine's clock).
        raw_ints: store an ``int`` (exactly, not a ``bool``) written without tags as its
            decimal digits, with no envelope, so that ``INCRBY`` works on it server side and
            a read gives an ``int`` back (Django's own Redis backend does the same). Digits
            are told from an entry by its first byte: an envelope starts with ``0xFF`` (or
            ``rk64:`` in its text form), never with a digit or ``-``.
    """

    def __init__(
        self,
        *,
        serializer: Serializer,
        secret: bytes | None,
        text_values: bool,
        default_ttl_ms: int | None,
        negative_ttl_ms: int | None,
        stale_ms: int | None,
        ttl_jitter: float,
        early_refresh: float | None,
        counters: Counters,
        clock: Clock | None,
        raw_ints: bool = False,
    ) -> None:
        self.serializer = serializer
        self.secret = secret
        self.text_values = text_values
        self.default_ttl_ms = default_ttl_ms
        self.negative_ttl_ms = negative_ttl_ms
        self.stale_ms = stale_ms
        self.ttl_jitter = ttl_jitter
        self.early_refresh = early_refresh
        self._counters = counters
        #: The dice of the jitter and of XFetch (replaceable by tests).
        self.random: Callable[[], float] = random.random
        # A clock given by the caller (a VirtualClock) is not Redis's: an entry past its expiry
        # by it is then gone, whatever Redis holds.
        self._clock_ms: Callable[[], float] = _now_ms if clock is None else clock.now_ms
        self._own_clock = clock is not None
        self.raw_ints = raw_ints

    def ttl_ms(self, ttl_ms: int | None, value: Any) -> int | None:
        """The time to live to write ``value`` with: ``ttl_ms``, or the cache's, jittered."""
        if value is None and self.negative_ttl_ms is not None:
            return self.negative_ttl_ms  # "nothing there" is cached for its own, shorter time
        ttl = self.default_ttl_ms if ttl_ms is None else ttl_ms
        if ttl and self.ttl_jitter:
            # Entries written together do not all expire together (and reload together).
            ttl = max(1, round(ttl * (1 - self.ttl_jitter * self.random())))
        return ttl

    def keep_ms(self, ttl_ms: int | None, data: bytes | None = None) -> int:
        """How long Redis keeps an entry fresh for ``ttl_ms``: with its stale window (0: ever).

        An integer stored as digits (``data``, with ``raw_ints``) has no stale window: it has
        no envelope to tell a reader it is stale, so it lives its time to live and no longer.
        """
        if not ttl_ms:
            return 0
        if data is not None and self.raw_ints and data[:1] in _INT_STARTS:
            return ttl_ms
        return ttl_ms + (self.stale_ms or 0)

    def encode(
        self,
        redis_key: str,
        value: Any,
        ttl_ms: int | None,
        load_ms: int = 0,
        tags: dict[str, str] | None = None,
    ) -> bytes:
        """The entry of ``value`` under ``redis_key``, as stored: fresh for ``ttl_ms``."""
        if self.raw_ints and type(value) is int and not tags:  # type(): not a bool
            return b"%d" % value
        now = int(self._clock_ms())
        fresh_until = now + ttl_ms if ttl_ms else 0
        expires = fresh_until + self.stale_ms if fresh_until and self.stale_ms else fresh_until
        data = pack(
            self.serializer, redis_key, value, created_ms=now, fresh_until_ms=fresh_until,
            load_ms=load_ms, expires_ms=expires, tags=tags, secret=self.secret,
        )  # fmt: skip
        return entry_to_text(data) if self.text_values else data

    def decode(self, redis_key: str, raw: Any) -> Entry | None:
        """The entry in a GET reply; ``None`` for a miss or for bytes that are no entry."""
        if raw is None:
            return None
        try:
            # Either form is read, whichever client wrote it (REST or not, on one Redis).
            stored = bytes(raw)
            if self.raw_ints and stored[:1] in _INT_STARTS:
                return Entry(_plain_int(stored), 0, 0, 0, 0, size=len(stored))
            data = entry_from_text(stored)
            entry = unpack(self.serializer, redis_key, data, secret=self.secret)
            if data is not stored:  # the text form: its size is what Redis holds
                entry = entry._replace(size=len(stored))
            if self._own_clock and entry.expires_ms and self._clock_ms() >= entry.expires_ms:
                return None  # expired by the cache's clock, which Redis's expiry cannot follow
            return entry
        except CorruptEntry as exc:
            self._counters.add(corrupt=1)
            log.warning(
                "cache key %r holds no readable entry (%s): treated as a miss", redis_key, exc
            )
            return None

    def set_command(self, redis_key: str, data: bytes, ttl_ms: int | None) -> Command:
        """The ``SET`` that stores an encoded entry, kept for its stale window too."""
        if ttl_ms:
            return command("SET", redis_key, data, "PX", self.keep_ms(ttl_ms, data))
        return command("SET", redis_key, data)

    def freshness(self, entry: Entry) -> Freshness:
        """How an entry read now stands: ``"fresh"``, ``"stale"`` or ``"early"``.

        Stale: past its time (serve it, refresh in the background). Early: still fresh, but
        XFetch picked this read to reload it now. Each read throws the dice once.
        """
        now = self._clock_ms()
        if entry.fresh_until_ms and now >= entry.fresh_until_ms:
            return "stale"
        if self.early_refresh and entry.fresh_until_ms and entry.load_ms:
            # XFetch (Vattani et al., VLDB 2015): look ahead an exponentially distributed time,
            # scaled by how long a reload takes; far from expiry almost never, close to it
            # almost surely, and no coordination between readers.
            ahead = -entry.load_ms * self.early_refresh * math.log(1.0 - self.random())
            if now + ahead >= entry.fresh_until_ms:
                return "early"
        return "fresh"
