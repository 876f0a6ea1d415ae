"""Sizes and durations for ``redkit advise``: parsed from its flags, formatted for its reports.

Sizes read SI and IEC units both: ``"256MB"`` is 256,000,000 bytes, ``"1.5 GiB"`` is 1.5 x 2**30
(Redis's ``redis.conf`` reads ``256mb`` as 256 MiB: write ``256MiB`` to mean the same). Durations
are redkit's own (``"30 s"``, ``"5m"``, see :mod:`redkit.core.durations`), or a bare number of
seconds. The formatters are what the terminal and HTML reports print, so both say the same.
"""

from __future__ import annotations

import math
import re
import time

from redkit.core.durations import duration_ms
from redkit.core.errors import InvalidArgumentError

__all__ = [
    "format_bytes",
    "format_count",
    "format_rate",
    "format_seconds",
    "format_share",
    "format_time",
    "parse_seconds",
    "parse_size",
]

#: What a missing (``null``) value prints as.
NONE = "—"

_SIZE = re.compile(r"^([0-9]{1,15}(?:\.[0-9]{1,9})?) ?([kmgt]i?b|b)?$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_NUMBER = re.compile(r"^[0-9]{1,15}(?:\.[0-9]{1,9})?$")


def parse_size(text: str, *, name: str = "size") -> int:
    """``text`` (``"256MB"``, ``"1.5 GiB"``, ``"1048576"``) in whole bytes, at least 1.

    Raises:
        InvalidArgumentError: naming ``name``, for anything else.

    """
    match = _SIZE.match(text.strip())
    if match is None:
        raise InvalidArgumentError(
            f'{name} must be a size such as "256MB", "1.5 GiB" or a number of bytes (units: B, '
            f"KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024), got "
            f"{text!r}"
        )
    size = round(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])
    if size < 1:
        raise InvalidArgumentError(f"{name} must be at least 1 byte, got {text!r}")
    return size


def parse_seconds(text: str, *, name: str = "duration", allow_zero: bool = False) -> float:
    """``text`` (``"30s"``, ``"5 m"``, ``"1 h"``, or a number of seconds) in seconds.

    ``allow_zero`` admits ``"0"`` (a staleness budget of none, for example).

    Raises:
        InvalidArgumentError: naming ``name``, for a malformed, negative or too long duration.

    """
    stripped = text.strip()
    if _NUMBER.match(stripped):
        seconds = float(stripped)
        if seconds == 0 and allow_zero:
            return 0.0
        # Through the shared parser, so a bare number has the same bounds as "30 s".
        return duration_ms(seconds, name=name) / 1000
    if allow_zero and re.match(r"^0+ ?(ms|s|m|h|d)$", stripped):
        return 0.0
    return duration_ms(stripped, name=name) / 1000


def format_seconds(seconds: float | None) -> str:
    """A duration in the largest unit that keeps it at least 1: ``250 ms``, ``30 s``, ``1.5 h``."""
    if seconds is None or not math.isfinite(seconds):
        return NONE
    if seconds == 0:
        return "0 s"
    for unit, size in (("d", 86_400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if abs(seconds) >= size:
            return f"{_significant(seconds / size)} {unit}"
    return f"{_significant(seconds * 1000)} ms"


def format_bytes(size: float | None) -> str:
    """A size in powers of 1024: ``512 B``, ``1.2 KiB``, ``256 MiB``."""
    if size is None or not math.isfinite(size):
        return NONE
    value = float(size)
    unit = "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            break
        value /= 1024
        unit = larger
    number = f"{value:.0f}" if unit == "B" else _digits(value)
    return f"{number} {unit}"


def _digits(value: float) -> str:
    """One decimal below 10 (``1.2``, ``6.9``), none above (``256``); never ``.0``."""
    text = f"{value:.1f}" if abs(value) < 10 else f"{value:,.0f}"
    return text[:-2] if text.endswith(".0") else text


def format_share(share: float | None) -> str:
    """A share of 0..1 as a percentage; two decimals below 1 % so a small share is not 0.0."""
    if share is None or not math.isfinite(share):
        return NONE
    percent = share * 100
    if 0 < abs(percent) < 1:
        return f"{percent:.2f} %"
    return f"{percent:.1f} %"


def format_count(count: float | None) -> str:
    """A count with thousands separators: ``120,000``."""
    if count is None or not math.isfinite(count):
        return NONE
    return f"{count:,.0f}"


def format_rate(rate: float | None, unit: str = "s") -> str:
    """A rate, three significant digits: ``12.3/s``."""
    if rate is None or not math.isfinite(rate):
        return NONE
    return f"{_significant(rate)}/{unit}"


def _significant(value: float) -> str:
    """Three significant digits, without the exponent ``.3g`` would use from 1000 up."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def format_time(epoch: float | None) -> str:
    """Seconds since the epoch as UTC: ``2025-12-02 09:00:00Z``."""
    if epoch is None or not math.isfinite(epoch):
        return NONE
    try:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return f"{epoch:.0f}"  # outside what the platform's gmtime takes
