"""Limiters from rate strings: ``limits_from("10/second; 1000/day")``.

::

    Ratelimit(redis, FixedWindow.parse("5/minute"))           # one limit
    Ratelimit(redis, limits_from("10/second; 1000/day"))      # both, in one atomic call
    limits_from("10/second; 1000/day", SlidingWindow)         # another algorithm

The syntax of a rate, and its parser, are in :mod:`redkit.ratelimit.rate_strings` (pure
text); :func:`parse_rate` and :func:`parse_rates` are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from redkit.ratelimit.limiters import FixedWindow, Limiter
from redkit.ratelimit.rate_strings import parse_rate, parse_rates

__all__ = ["limits_from", "parse_rate", "parse_rates"]

L = TypeVar("L", bound=Limiter)


@overload
def limits_from(text: str) -> list[FixedWindow]: ...
@overload
def limits_from(text: str, algorithm: Callable[[int, str], L]) -> list[L]: ...


def limits_from(text: str, algorithm: Callable[[int, str], Limiter] = FixedWindow) -> list[Any]:
    """One limiter per rate of ``text``, of ``algorithm`` (any taking ``(tokens, window)``).

    The default, :class:`~redkit.FixedWindow`, is what ``limits`` and slowapi apply to the
    same strings; :class:`~redkit.SlidingWindow` and :class:`~redkit.SlidingLog` take them
    too. Give the list to :class:`~redkit.Ratelimit` to check every limit in one atomic call
    (a list is always a multi-limit, with its own keys: for one rate, ``FixedWindow.parse``
    gives the limiter itself, on ``@upstash/ratelimit``'s keys).
    """
    return [algorithm(count, window) for count, window in parse_rates(text)]
