"""The rate-limit algorithms: what each one is configured with and the script call it makes.

Each limiter is a small immutable value. It validates its arguments once, and for every
decision builds one :class:`~redkit.core.ops.ScriptCall` whose keys are exactly
``@upstash/ratelimit``'s for the same prefix and identifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

from redkit.core.caller import warn_caller
from redkit.core.durations import MAX_DURATION_MS, Duration, duration_ms
from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import ScriptCall
from redkit.ratelimit import scripts
from redkit.ratelimit.rate_strings import parse_rate
from redkit.ratelimit.scripts import ratelimit_script

__all__ = [
    "GCRA",
    "MAX_LOG_TOKENS",
    "MAX_TOKENS",
    "CachedFixedWindow",
    "FixedWindow",
    "Limiter",
    "SlidingLog",
    "SlidingWindow",
    "TokenBucket",
    "check_count",
    "ratelimit_script",
]

#: The largest limit or token count: counts stay exact integers in Lua's doubles.
MAX_TOKENS = 10**12

#: The largest limit of a :class:`SlidingLog`: its log holds one sorted-set entry (roughly
#: 70-100 bytes) per admitted unit of cost in the window, and an admission writes them all.
MAX_LOG_TOKENS = 100_000

#: The ``now`` argument that tells a script to read the server's ``TIME``.
SERVER_TIME = -1


# Read once, at import: the hot path only refers to them.
_FIXED_WINDOW = ratelimit_script("fixed_window")
_SLIDING_WINDOW = ratelimit_script("sliding_window")
_TOKEN_BUCKET = ratelimit_script("token_bucket")
_GCRA = ratelimit_script("gcra")
_SLIDING_LOG = ratelimit_script("sliding_log")


def check_count(value: object, name: str) -> int:
    """``value`` as a count of requests or tokens: an int from 1 to :data:`MAX_TOKENS`.

    Raises:
        InvalidArgumentError: naming the argument ``name``, for anything else.

    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(
            f"{name} must be an int, got {type(value).__name__}: {value!r:.40}"
        )
    if not 1 <= value <= MAX_TOKENS:
        raise InvalidArgumentError(f"{name} must be between 1 and {MAX_TOKENS:_}, got {value:_}")
    return value


class Limiter:
    """What every algorithm provides to :class:`~redkit.Ratelimit`."""

    #: The configured number of requests (or tokens) a window (or bucket) admits.
    limit: int

    @property
    def policy_window_ms(self) -> float:
        """The span in ms over which the algorithm admits :attr:`limit` requests.

        It is the window ``RateLimit-Policy`` announces (see :func:`redkit.web.policies_for`);
        0 when there is no single one to tell.
        """
        raise NotImplementedError

    @property
    def counter_window_ms(self) -> int:
        """The length in ms of the window counters :meth:`~redkit.Ratelimit.reset` deletes.

        Window algorithms count in ``<key>:<window number>`` keys next to :meth:`state_key`;
        0 means there are none: the state is that key alone.
        """
        return 0

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """The script call deciding ``rate`` for the identifier whose base key is ``base``.

        ``now`` is the caller's clock in epoch ms, or ``-1`` for the server's own time.
        """
        raise NotImplementedError

    def state_key(self, base: str) -> str:
        """The key holding the identifier's state besides any window counters: ``base``."""
        return base

    def state(self, base: str) -> list[tuple[str, int]]:
        """What :meth:`~redkit.Ratelimit.reset` deletes: (key, window in ms) pairs.

        A window of 0 means the key itself; otherwise the key's window counters around now
        go too (``<key>:<window number>``).
        """
        return [(self.state_key(base), self.counter_window_ms)]

    def _deprecated_window_ms(self) -> int:
        # What ``window_ms`` was on algorithms without window counters, kept for one release.
        warn_caller(
            f"{type(self).__name__}.window_ms is deprecated and always 0: read policy_window_ms"
            " (the span that admits `limit` requests) or counter_window_ms (what reset() deletes)",
            DeprecationWarning,
        )
        return 0


_W = TypeVar("_W", bound="_Windowed")


@dataclass(frozen=True)
class _Windowed(Limiter):
    """What the window algorithms share: a number of requests per window."""

    tokens: int
    window: Duration
    limit: int = field(init=False, repr=False)
    window_ms: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit", check_count(self.tokens, "tokens"))
        object.__setattr__(self, "window_ms", duration_ms(self.window, name="window"))

    @property
    def policy_window_ms(self) -> float:
        """The window: ``tokens`` requests per ``window``."""
        return self.window_ms

    @property
    def counter_window_ms(self) -> int:
        """The window, whose counters ``<base>:<window number>`` hold the state."""
        return self.window_ms

    @classmethod
    def parse(cls: type[_W], rate: str) -> _W:
        """This algorithm from a rate string: ``SlidingWindow.parse("5/minute")``.

        The strings of ``limits`` and slowapi (see :mod:`redkit.ratelimit.rate_strings`).
        """
        return cls(*parse_rate(rate))


@dataclass(frozen=True)
class FixedWindow(_Windowed):
    """At most ``tokens`` requests in each window; windows are aligned to the Unix epoch.

    Args:
        tokens: requests admitted per window.
        window: the window: ``"10 s"``, seconds, or a ``timedelta``.

    """

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """Build this algorithm's script call (see :meth:`Limiter.call`)."""
        keys: tuple[str, ...] = (base,)
        if now != SERVER_TIME:  # name the counter, so every key the script touches is declared
            keys = (base, f"{base}:{now // self.window_ms}")
        args = scripts.fixed_window_args(
            now=now, rate=rate, limit=self.limit, window=self.window_ms
        )
        return ScriptCall(_FIXED_WINDOW, keys, args)


@dataclass(frozen=True)
class SlidingWindow(_Windowed):
    """About ``tokens`` requests in any window-long span, counted in two weighted windows.

    The estimate is Upstash's: the current window's count plus the previous window's count
    weighted by how much of it still lies inside the sliding window (floored). It assumes the
    previous window's requests were spread evenly, so it can admit up to ``tokens`` per fixed
    window but never more.

    Args:
        tokens: requests admitted per sliding window.
        window: the window: ``"10 s"``, seconds, or a ``timedelta``.

    """

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """Build this algorithm's script call (see :meth:`Limiter.call`)."""
        keys: tuple[str, ...] = (base,)
        if now != SERVER_TIME:
            bucket = now // self.window_ms
            keys = (base, f"{base}:{bucket}", f"{base}:{bucket - 1}")
        args = scripts.sliding_window_args(
            now=now, rate=rate, limit=self.limit, window=self.window_ms
        )
        return ScriptCall(_SLIDING_WINDOW, keys, args)


@dataclass(frozen=True)
class TokenBucket(Limiter):
    """A bucket of ``max_tokens`` that gains ``refill_rate`` tokens every ``interval``.

    A new bucket starts full; refills come in whole steps, keeping their phase. A request
    takes ``rate`` tokens or, when there are not enough, takes nothing and is refused.

    Args:
        refill_rate: tokens added at each refill.
        interval: time between refills: ``"1 s"``, seconds, or a ``timedelta``.
        max_tokens: the bucket's capacity (the burst it admits).

    """

    refill_rate: int
    interval: Duration
    max_tokens: int
    limit: int = field(init=False, repr=False)
    interval_ms: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_count(self.refill_rate, "refill_rate")
        object.__setattr__(self, "limit", check_count(self.max_tokens, "max_tokens"))
        object.__setattr__(self, "interval_ms", duration_ms(self.interval, name="interval"))

    @property
    def policy_window_ms(self) -> float:
        """The time an emptied bucket takes to fill up again, in whole refills."""
        return math.ceil(self.max_tokens / self.refill_rate) * self.interval_ms

    @property
    def window_ms(self) -> int:
        """Deprecated, always 0: see :attr:`policy_window_ms` and :attr:`counter_window_ms`."""
        return self._deprecated_window_ms()

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """Build this algorithm's script call (see :meth:`Limiter.call`)."""
        args = scripts.token_bucket_args(
            now=now,
            rate=rate,
            max_tokens=self.limit,
            refill=self.refill_rate,
            interval=self.interval_ms,
        )
        return ScriptCall(_TOKEN_BUCKET, (base,), args)


@dataclass(frozen=True)
class CachedFixedWindow(FixedWindow):
    """A fixed window that counts in this process and tells Redis afterwards.

    The first request of a window asks Redis; later ones in the same window are decided from a
    local count, and their increments are sent to Redis in the background (coalesced), whose
    totals are folded back into the local count. Decisions cost no round trip, at a price in
    accuracy: each process never admits more than ``tokens`` a window by itself, but ``P``
    processes may together admit up to ``P * tokens`` when they all start a window at once.
    Best for high-volume limits where that bound is acceptable.
    """


@dataclass(frozen=True)
class GCRA(Limiter):
    """The generic cell rate algorithm: ``rate`` per ``period``, in bursts of up to ``burst``.

    It runs on a microsecond clock. A request of cost ``n`` is ``n`` cells, one every emission
    interval ``T = period / rate`` (rounded up to whole microseconds); the state is the
    theoretical arrival time (TAT) at which the bucket is full again, in one string key
    ``<base>:gcra``. A request is admitted iff ``max(TAT, now) + n*T - now <= burst*T``: a new
    identifier may take ``burst`` at once, then one more every ``T``. It is a token bucket of
    ``burst`` tokens refilled continuously, one every ``T``, with exact ``retry_after`` (to the
    microsecond) and O(1) state. Semantics: docs/gcra-and-sliding-log.md.

    Args:
        rate: requests admitted per ``period`` on average.
        period: the period: ``"1 s"``, seconds, or a ``timedelta`` (whole ms).
        burst: the most requests admitted at once (also the result's ``limit``).

    """

    rate: int
    period: Duration
    burst: int
    limit: int = field(init=False, repr=False)
    period_ms: int = field(init=False, repr=False)
    #: T, the emission interval: ``ceil(period / rate)`` in microseconds.
    emission_us: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rate = check_count(self.rate, "rate")
        object.__setattr__(self, "limit", check_count(self.burst, "burst"))
        period_ms = duration_ms(self.period, name="period")
        object.__setattr__(self, "period_ms", period_ms)
        if rate > period_ms * 1000:
            raise InvalidArgumentError(
                f"rate must be at most one request per microsecond of period ({period_ms * 1000:_}"
                f" for a period of {period_ms:_} ms), got {rate:_}"
            )
        emission_us = -(-period_ms * 1000 // rate)
        object.__setattr__(self, "emission_us", emission_us)
        if self.limit * emission_us > MAX_DURATION_MS * 1000:
            raise InvalidArgumentError(
                "burst * period / rate (the time an emptied bucket takes to fill up) must be "
                f"at most 10 years, got {self.limit * emission_us / 1e6:_.0f} s"
            )

    @property
    def policy_window_ms(self) -> float:
        """The time a full burst takes to come back: ``burst`` emission intervals."""
        return self.limit * self.emission_us / 1000

    @property
    def window_ms(self) -> int:
        """Deprecated, always 0: see :attr:`policy_window_ms` and :attr:`counter_window_ms`."""
        return self._deprecated_window_ms()

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """Build this algorithm's script call (see :meth:`Limiter.call`)."""
        args = scripts.gcra_args(now=now, rate=rate, burst=self.limit, interval=self.emission_us)
        return ScriptCall(_GCRA, (f"{base}:gcra",), args)

    def state_key(self, base: str) -> str:
        """``<base>:gcra``, the string holding the theoretical arrival time in epoch µs."""
        return f"{base}:gcra"


@dataclass(frozen=True)
class SlidingLog(Limiter):
    """An exact sliding window: at most ``tokens`` requests in any ``window``-long span.

    Every admitted unit of cost is one entry, scored with its admission time (epoch ms), in a
    sorted set ``<base>:log``. A request of cost ``n`` is admitted iff the entries of the last
    ``window`` (scores in ``(now - window, now]``) plus ``n`` are at most ``tokens``. Entries
    that left the window are trimmed on every write and refused requests add nothing, so the
    set never holds more than ``tokens`` entries (at most :data:`MAX_LOG_TOKENS`).

    Args:
        tokens: requests admitted per sliding window.
        window: the window: ``"10 s"``, seconds, or a ``timedelta``.

    """

    tokens: int
    window: Duration
    limit: int = field(init=False, repr=False)
    #: The window's length in ms (one sorted set, no window counters).
    log_window_ms: int = field(init=False, repr=False)

    @classmethod
    def parse(cls, rate: str) -> SlidingLog:
        """A sliding log from a rate string: ``SlidingLog.parse("100/minute")``."""
        return cls(*parse_rate(rate))

    def __post_init__(self) -> None:
        tokens = check_count(self.tokens, "tokens")
        if tokens > MAX_LOG_TOKENS:
            raise InvalidArgumentError(
                f"tokens must be at most {MAX_LOG_TOKENS:_} for a sliding log (one entry per "
                f"request in the window), got {tokens:_}"
            )
        object.__setattr__(self, "limit", tokens)
        object.__setattr__(self, "log_window_ms", duration_ms(self.window, name="window"))

    @property
    def policy_window_ms(self) -> float:
        """The sliding window: ``tokens`` requests in any ``window``-long span."""
        return self.log_window_ms

    @property
    def window_ms(self) -> int:
        """Deprecated, always 0: see :attr:`policy_window_ms` and :attr:`counter_window_ms`."""
        return self._deprecated_window_ms()

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """Build this algorithm's script call (see :meth:`Limiter.call`)."""
        args = scripts.sliding_log_args(
            now=now, rate=rate, limit=self.limit, window=self.log_window_ms
        )
        return ScriptCall(_SLIDING_LOG, (f"{base}:log",), args)

    def state_key(self, base: str) -> str:
        """``<base>:log``, the sorted set of admission times."""
        return f"{base}:log"
