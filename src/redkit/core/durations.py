"""Durations as people write them: ``"10 s"``, ``"500ms"``, ``2.5``, ``timedelta(hours=1)``.

Strings follow ``@upstash/ratelimit``: a whole number and a unit (``ms``, ``s``, ``m``, ``h``,
``d``), with at most one space between them. Numbers are seconds. Every parser returns whole
milliseconds, the unit Redis expires keys in and Upstash aligns windows on.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import TypeAlias

from redkit.core.errors import ConfigurationError, InvalidArgumentError

__all__ = ["MAX_DURATION_MS", "Duration", "duration_ms", "positive_seconds", "timeout_or_none"]

#: A duration: ``"10 s"``, a number of seconds, or a ``timedelta``.
Duration: TypeAlias = str | int | float | timedelta

#: Ten years: longer durations are almost certainly a unit mistake, and the arithmetic on them
#: (epoch milliseconds plus a window) must stay exact in Lua's doubles.
MAX_DURATION_MS = 10 * 365 * 86_400_000

# ASCII digits only (``\d`` takes Arabic-Indic ones too), few enough for int() to take.
_PATTERN = re.compile(r"^([0-9]{1,18}) ?(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(value: Duration, *, name: str = "duration") -> int:
    """``value`` in whole milliseconds, at least 1 and at most :data:`MAX_DURATION_MS`.

    Raises:
        ValueError: naming ``name``, for a malformed, non-positive or too long duration.
        TypeError: for a value that is not a duration at all.

    """
    if isinstance(value, str):
        match = _PATTERN.match(value.strip())
        if match is None:
            raise InvalidArgumentError(
                f'{name} must look like "10 s", "500 ms", "1 m", "1 h" or "1 d" (a whole number of '
                f"at most 18 ASCII digits and a unit of ms, s, m, h or d), got {value!r}"
            )
        ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    elif isinstance(value, timedelta):
        ms = _seconds_to_ms(value.total_seconds(), name, value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = _seconds_to_ms(float(value), name, value)
    else:
        raise InvalidArgumentError(
            f'{name} must be a string such as "10 s", a number of seconds or a timedelta, '
            f"got {type(value).__name__}"
        )
    if ms < 1:
        raise InvalidArgumentError(f"{name} must be at least 1 ms, got {value!r}")
    if ms > MAX_DURATION_MS:
        raise InvalidArgumentError(f"{name} must be at most 10 years, got {value!r}")
    return ms


def _seconds_to_ms(seconds: float, name: str, original: object) -> int:
    if not math.isfinite(seconds):
        raise InvalidArgumentError(f"{name} must be a finite number of seconds, got {original!r}")
    if seconds > MAX_DURATION_MS / 1000:
        raise InvalidArgumentError(f"{name} must be at most 10 years, got {original!r}")
    return round(seconds * 1000)


def timeout_or_none(value: object, *, name: str = "timeout") -> float | None:
    """A caller's time budget: a positive number of seconds, or ``None`` for none.

    Raises:
        InvalidArgumentError: for anything else.

    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(
            f"{name} must be a positive number of seconds or None, got {value!r}"
        )
    return float(value)


def positive_seconds(value: object, name: str) -> float:
    """A connection setting in seconds (a timeout, a backoff), which must be positive.

    Raises:
        ConfigurationError: naming the setting.

    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigurationError(
            f"{name} must be a positive number of seconds, got {value!r}", variable=name
        )
    return float(value)
