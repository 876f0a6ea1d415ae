"""The ``trace`` block of an advice's JSON (schema ``redkit.advise/1``): what was read.

Both :func:`~redkit.advise.cache_advice.advise_cache` and the rate-limit advice start their
``to_json()`` with it, so a report says which log it is about, how much of it was unreadable
(with the first malformed lines, their numbers and why), and the span of time it covers.
"""

from __future__ import annotations

import math
from typing import Any

from redkit.advise.trace import Trace

__all__ = ["trace_summary"]


def _finite(value: float) -> float | None:
    # An empty trace has no first or last request: JSON has no NaN, the schema says null.
    return float(value) if math.isfinite(value) else None


def trace_summary(trace: Trace) -> dict[str, Any]:
    """The schema's ``trace`` block of ``trace``.

    Keys: ``source``, ``format``, ``requests`` (rows of the trace), ``lines`` (lines read, good
    and malformed), ``malformed`` (their count), ``malformed_examples`` (the first few, each
    ``{line, reason, text}``), ``start`` and ``end`` (seconds since the epoch, ``None`` for an
    empty trace) and ``duration_s``.
    """
    return {
        "source": trace.source,
        "format": trace.format,
        "requests": len(trace),
        "lines": trace.lines_read,
        "malformed": trace.malformed,
        "malformed_examples": [
            {"line": m.line, "reason": m.reason, "text": m.text} for m in trace.malformed_examples
        ],
        "start": _finite(trace.start),
        "end": _finite(trace.end),
        "duration_s": float(trace.duration),
    }
