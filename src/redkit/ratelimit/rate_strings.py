"""Rate strings as ``limits`` and slowapi write them: ``"5/minute"``, ``"100 per hour"``.

A rate is ``<count> / <unit>`` or ``<count> per <unit>``, with an optional number of units
(``"10/2 minutes"``: ten per two minutes); several are joined by ``;``, ``,`` or ``|``. Units,
case-insensitive, singular or plural: second (``s``, ``sec``), minute (``m``, ``min``), hour
(``h``, ``hr``) and day (``d``). ``limits`` also knows months and years, whose length is a
convention rather than a fact: write ``"30 d"`` windows here instead.

Pure text, importing no limiter: the limiters' ``parse`` methods use it, and
:func:`redkit.ratelimit.rates.limits_from` builds limiters from what it reads.
"""

from __future__ import annotations

import re

from redkit.core.errors import InvalidArgumentError

__all__ = ["parse_rate", "parse_rates"]

# ASCII digits only, and few enough that int() never refuses them.
_RATE = re.compile(r"([0-9]{1,18})\s*(?:/|per\b)\s*([0-9]{1,18})?\s*([a-z]+)")
_SEPARATORS = re.compile(r"[;,|]")
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), "s"),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "m"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "d"),
}


def parse_rate(text: str) -> tuple[int, str]:
    """One rate as ``(count, window)``: ``"5/minute"`` is ``(5, "1 m")``.

    The window is a duration string that every limiter takes.

    Raises:
        InvalidArgumentError: for anything but one well-formed rate.

    """
    if not isinstance(text, str):
        raise InvalidArgumentError(f"a rate must be a str such as '5/minute', got {text!r:.40}")
    match = _RATE.fullmatch(text.strip().lower())
    unit = _UNITS.get(match.group(3)) if match else None
    if match is None or unit is None:
        raise InvalidArgumentError(
            f"a rate looks like '5/minute', '100 per hour' or '10/2 seconds' (units: second, "
            f"minute, hour, day; numbers of at most 18 ASCII digits), got {text!r:.60}"
        )
    count, units = int(match.group(1)), int(match.group(2) or 1)
    if units < 1:
        raise InvalidArgumentError(f"a rate's window must be at least one {unit}, got {text!r}")
    return count, f"{units} {unit}"


def parse_rates(text: str) -> list[tuple[int, str]]:
    """Every rate of ``"10/second; 1000/day"``, in order, as :func:`parse_rate` gives each."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"rates must be a str such as '5/minute', got {text!r:.40}")
    return [parse_rate(part) for part in _SEPARATORS.split(text)]
