"""``redkit advise``: replay a service's real traffic and recommend cache and rate-limit settings.

Read a log into a :class:`~redkit.advise.trace.Trace`, then ask for advice on it; the same
functions back the ``redkit advise`` command. rich and matplotlib load only when a report is
rendered.
"""

from __future__ import annotations

from redkit.advise.cache_advice import CacheAdvice, advise_cache
from redkit.advise.html import render_html
from redkit.advise.ratelimit_advice import RatelimitAdvice, advise_ratelimit
from redkit.advise.readers import read_trace
from redkit.advise.recorded import RecordedTrace, read_recorded
from redkit.advise.recorder import TraceRecorder
from redkit.advise.report import print_report, progress_callback, render_text
from redkit.advise.sample import generate_log, sample_log
from redkit.advise.trace import Malformed, Op, Request, Trace, TraceBuilder

__all__ = [
    "CacheAdvice",
    "Malformed",
    "Op",
    "RatelimitAdvice",
    "RecordedTrace",
    "Request",
    "Trace",
    "TraceBuilder",
    "TraceRecorder",
    "advise_cache",
    "advise_ratelimit",
    "generate_log",
    "print_report",
    "progress_callback",
    "read_recorded",
    "read_trace",
    "render_html",
    "render_text",
    "sample_log",
]
