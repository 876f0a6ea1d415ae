"""``redkit advise``: replay a service's real traffic and recommend cache and rate-limit settings.

Read a log into a :class:`~redkit.advise.trace.Trace`, then ask for advice on it; the same
functions back the ``redkit advise`` command.
"""

from __future__ import annotations

from redkit.advise.recorded import RecordedTrace, read_recorded
from redkit.advise.recorder import TraceRecorder
from redkit.advise.trace import Malformed, Op, Request, Trace, TraceBuilder

__all__ = ["Malformed", "Op", "Request", "Trace", "TraceBuilder"]
__all__ += ["RecordedTrace", "TraceRecorder", "read_recorded"]
