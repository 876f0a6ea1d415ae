"""The rate-limit algorithms: what each one is configured with and the script call it makes.

Each limiter is a small immutable value. It validates its arguments once, and for every
decision builds one :class:`~redkit.core.ops.ScriptCall` whose keys are exactly
``@upstash/ratelimit``'s for the same prefix and identifier.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import ScriptCall
from redkit.core.scripts import Script, load_script

__all__ = [
    "MAX_TOKENS",
    "CachedFixedWindow",
    "FixedWindow",
    "Limiter",
    "SlidingWindow",
    "TokenBucket",
    "ratelimit_script",
]

#: The largest limit or token count: counts stay exact integers in Lua's doubles.
MAX_TOKENS = 10**12

#: The ``now`` argument that tells a script to read the server's ``TIME``.
SERVER_TIME = -1


@functools.cache
def ratelimit_script(name: str) -> Script:
    """``lua/<name>.lua`` with the shared head (the clock) in front of it."""
    head = load_script(__package__, "now").source
    return Script(name, head + "\n" + load_script(__package__, name).source)


# Read once, at import: the hot path only refers to them.
_FIXED_WINDOW = ratelimit_script("fixed_window")
_SLIDING_WINDOW = ratelimit_script("sliding_window")
_TOKEN_BUCKET = ratelimit_script("token_bucket")


def _count(value: object, name: str) -> int:
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
    #: The window length in ms whose counters :meth:`~redkit.Ratelimit.reset` removes; 0 for
    #: algorithms without window counters.
    window_ms: int

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """The script call deciding ``rate`` for the identifier whose base key is ``base``.

        ``now`` is the caller's clock in epoch ms, or ``-1`` for the server's own time.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class _Windowed(Limiter):
    """What the window algorithms share: a number of requests per window."""

    tokens: int
    window: Duration
    limit: int = field(init=False, repr=False)
    window_ms: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limit", _count(self.tokens, "tokens"))
        object.__setattr__(self, "window_ms", duration_ms(self.window, name="window"))


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
        return ScriptCall(_FIXED_WINDOW, keys, (now, rate, self.limit, self.window_ms))


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
        return ScriptCall(_SLIDING_WINDOW, keys, (now, rate, self.limit, self.window_ms))


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
    window_ms: int = field(init=False, repr=False, default=0)
    interval_ms: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _count(self.refill_rate, "refill_rate")
        object.__setattr__(self, "limit", _count(self.max_tokens, "max_tokens"))
        object.__setattr__(self, "interval_ms", duration_ms(self.interval, name="interval"))

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """Build this algorithm's script call (see :meth:`Limiter.call`)."""
        return ScriptCall(
            _TOKEN_BUCKET,
            (base,),
            (now, rate, self.limit, self.refill_rate, self.interval_ms),
        )


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
