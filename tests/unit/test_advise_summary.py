"""The ``trace`` block of the advice schema, from a built trace."""

from __future__ import annotations

import json

from redkit.advise.summary import trace_summary
from redkit.advise.trace import Op, Request, TraceBuilder
from support.advise_examples import TRACE


def test_summary_of_a_trace_with_malformed_lines() -> None:
    builder = TraceBuilder("access.log", "combined")
    builder.add(Request(100.0, 1, Op.READ, "/a/1", "/a/{id}"))
    builder.reject(2, "no timestamp", "garbage line")
    builder.add(Request(160.5, 3, Op.WRITE, "/a/1", "/a/{id}"))
    builder.add(Request(130.0, 4, Op.READ, "/a/2", "/a/{id}"))  # out of order: sorted
    summary = trace_summary(builder.build())
    assert summary == {
        "source": "access.log",
        "format": "combined",
        "requests": 3,
        "lines": 4,
        "malformed": 1,
        "malformed_examples": [{"line": 2, "reason": "no timestamp", "text": "garbage line"}],
        "start": 100.0,
        "end": 160.5,
        "duration_s": 60.5,
    }
    # The same keys as the schema's example, and JSON-clean.
    assert summary.keys() == TRACE.keys()
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary


def test_summary_of_an_empty_trace_has_no_times() -> None:
    builder = TraceBuilder("empty.log", "csv")
    builder.reject(1, "no header", "x")
    summary = trace_summary(builder.build())
    assert summary["requests"] == 0
    assert summary["lines"] == 1
    assert summary["start"] is None
    assert summary["end"] is None
    assert summary["duration_s"] == 0.0
    json.dumps(summary, allow_nan=False)
