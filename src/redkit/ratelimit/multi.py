"""Several limits in one atomic call: all of them admit a request, or none is charged.

``Ratelimit(redis, [SlidingWindow(10, "1 s"), FixedWindow(10_000, "1 d")])`` checks the
limits in order inside one script. When one refuses, the limits before it, which had already
counted the request, are refunded in the same script, so from outside nothing happened: no
partial consumption, ever (Flask-Limiter, for one, keeps the first limit's charge). The script
is made of the algorithms' own scripts, each wrapped as a function, so every algorithm keeps
exactly its single-limit behaviour (``lua/multi.lua``, composed in
:mod:`redkit.ratelimit.scripts`).

Each limit keeps its state under ``<prefix>:<identifier>:limit<i>`` (``i`` from 0), inside the
identifier's hash tag on a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import ScriptCall
from redkit.ratelimit.limiters import CachedFixedWindow, Limiter
from redkit.ratelimit.scripts import multi_args, multi_script

__all__ = ["MultiLimit"]


@dataclass(frozen=True)
class MultiLimit(Limiter):
    """Several limits on one identifier, checked and charged together (all or none).

    ``limit`` is the smallest of the limits. Results report the limit that refused, or, when
    all admitted, the one with the least left (``RatelimitResult.refused_by`` is the index of
    the refusing limit).

    Args:
        limiters: the limits, checked in this order (put the likeliest to refuse first).

    """

    limiters: tuple[Limiter, ...]
    limit: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        limiters = tuple(self.limiters)
        if not limiters:
            raise InvalidArgumentError("give at least one limiter")
        for limiter in limiters:
            if isinstance(limiter, (CachedFixedWindow, MultiLimit)) or not isinstance(
                limiter, Limiter
            ):
                raise InvalidArgumentError(
                    "several limits take FixedWindow, SlidingWindow, TokenBucket, GCRA and "
                    f"SlidingLog, got {type(limiter).__name__}"
                )
        object.__setattr__(self, "limiters", limiters)
        object.__setattr__(self, "limit", min(limiter.limit for limiter in limiters))

    @property
    def policy_window_ms(self) -> float:
        """0: each limit has its own window (:func:`redkit.web.policies_for` tells them all)."""
        return 0

    @property
    def window_ms(self) -> int:
        """Deprecated, always 0: see :attr:`policy_window_ms` and :attr:`counter_window_ms`."""
        return self._deprecated_window_ms()

    @staticmethod
    def of(limiters: Sequence[Limiter]) -> MultiLimit:
        """A :class:`MultiLimit` of ``limiters`` (a list or tuple)."""
        return MultiLimit(tuple(limiters))

    def sub_base(self, base: str, index: int) -> str:
        """The base key of limit ``index`` (same hash tag as ``base``)."""
        return f"{base}:limit{index}"

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """One script call deciding ``rate`` on every limit (see :class:`MultiLimit`)."""
        keys: list[str] = []
        limits: list[ScriptCall] = []
        for index, limiter in enumerate(self.limiters):
            sub = limiter.call(self.sub_base(base, index), now, rate)
            limits.append(sub)
            keys.extend(sub.keys)
        script = multi_script(tuple(sub.script.name for sub in limits))
        return ScriptCall(script, tuple(keys), multi_args(now=now, rate=rate, limits=limits))

    def state(self, base: str) -> list[tuple[str, int]]:
        """Every limit's state keys (see :meth:`Limiter.state`)."""
        return [
            part
            for index, limiter in enumerate(self.limiters)
            for part in limiter.state(self.sub_base(base, index))
        ]
