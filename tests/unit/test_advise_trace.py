"""The trace's columns: requests in, sorted stably by time, and back out unchanged."""

from __future__ import annotations

from redkit.advise.trace import MALFORMED_EXAMPLES, Op, Request, TraceBuilder


def test_requests_come_back_sorted_stably_by_time() -> None:
    builder = TraceBuilder("log", "csv", attributes=["header:X-API-Key"])
    given = [
        Request(10.0, 1, Op.READ, "/a", "/a", size=5, client="1.2.3.4"),
        Request(9.0, 2, Op.WRITE, "/b", "/b", ttl=30.0, user="ann", method="POST"),
        Request(10.0, 3, Op.OTHER, "/c", "/c", status=404, attributes={"header:X-API-Key": "k"}),
        Request(9.0, 4, Op.READ, "/a", "/a", user_agent="bot/1"),
    ]
    for request in given:
        builder.add(request)
    trace = builder.build()
    # By time; equal times keep the order the lines came in.
    assert [r.line for r in trace.requests()] == [2, 4, 1, 3]
    assert {r.line: r for r in trace.requests()} == {
        r.line: r._replace(attributes=r.attributes or None) for r in given
    }
    assert (trace.start, trace.end, trace.duration, len(trace)) == (9.0, 10.0, 1.0, 4)
    assert trace.key_names.values == ["/a", "/b", "/c"]  # each key once


def test_malformed_lines_are_counted_and_the_first_few_kept() -> None:
    builder = TraceBuilder("log", "combined")
    for line in range(1, 10):
        builder.reject(line, "no timestamp", "x" * 500)
    trace = builder.build()
    assert (trace.lines_read, trace.malformed, len(trace)) == (9, 9, 0)
    assert [m.line for m in trace.malformed_examples] == list(range(1, MALFORMED_EXAMPLES + 1))
    assert len(trace.malformed_examples[0].text) == 200
    assert trace.duration == 0.0
