"""Reading logs into traces (redkit.advise.readers): every format, bad lines, bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from redkit.advise.readers import read_trace
from redkit.advise.trace import Op, Request
from redkit.errors import InvalidArgumentError

COMBINED = (
    '203.0.113.7 - alice [02/Nov/2026:08:00:01 +0100] "GET /api/users/17?b=2&a=1 HTTP/1.1" 200 '
    '512 "https://shop.example.com/" "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0"\n'
    '198.51.100.2 - - [02/Nov/2026:08:00:00 +0100] "PUT /api/users/17 HTTP/1.1" 204 - "-" '
    '"curl/8.5.0"\n'
    '198.51.100.2 - - [02/Nov/2026:08:00:00 +0100] "HEAD /api/users/42 HTTP/1.1" 200 0 "-" '
    '"say \\"hi\\" bot"\n'
    '198.51.100.2 - - [02/Nov/2026:08:00:02 +0100] "POST /api/users HTTP/1.1" 422 33 "-" "-"\n'
    '198.51.100.9 - - [02/Nov/2026:08:00:02 +0100] "GET /missing HTTP/1.1" 404 153 "-" "-"\n'
    '198.51.100.9 - - [02/Nov/2026:08:00:03 +0100] "DELETE /api/users/42 HTTP/2.0" 303 0 "-" '
    '"-" rt=0.004 "extra"\n'
)
# 2026-11-02 07:00:00 UTC
T0 = 1793602800.0


def write(tmp_path: Path, name: str, text: str | bytes, *, gz: bool = False) -> Path:
    path = tmp_path / name
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def rows(path: Path | list[Path], **options: object) -> list[Request]:
    return list(read_trace(path, **options).requests())  # type: ignore[arg-type]


def test_combined_log_lines_become_requests_sorted_by_time(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "access.log", COMBINED))
    assert trace.format == "combined"
    assert (trace.lines_read, trace.malformed, len(trace)) == (6, 0, 6)
    got = list(trace.requests())
    # Stable: 08:00:00 (lines 2, 3), 08:00:01 (line 1), 08:00:02 (lines 4, 5), 08:00:03.
    assert [r.line for r in got] == [2, 3, 1, 4, 5, 6]
    write_, head, read, refused, missing, delete = got
    assert read == Request(
        T0 + 1, 1, Op.READ, "/api/users/17?a=1&b=2", "/api/users/{id}", 512, None,
        "203.0.113.7", "alice", "Mozilla/5.0 (X11; Linux x86_64) Firefox/131.0", 200, "GET",
    )  # fmt: skip
    # A write is keyed by its bare path: it invalidates the path whatever the query.
    assert (write_.op, write_.key, write_.size, write_.user, write_.user_agent) == (
        Op.WRITE, "/api/users/17", None, None, "curl/8.5.0",
    )  # fmt: skip
    assert (head.op, head.key, head.user_agent) == (Op.READ, "/api/users/42", 'say "hi" bot')
    # A refused write changed nothing; a 404 is no cache read; a 303 after DELETE did change.
    assert (refused.op, refused.status, refused.namespace) == (Op.OTHER, 422, "/api/users")
    assert missing.op is Op.OTHER
    assert (delete.op, delete.key, delete.method) == (Op.WRITE, "/api/users/42", "DELETE")


def test_common_log_format_and_gzip_by_magic_bytes(tmp_path: Path) -> None:
    text = (
        '10.0.0.1 - - [02/Nov/2026:07:00:00 +0000] "GET /a HTTP/1.0" 200 5\n'
        '10.0.0.2 - bob [02/Nov/2026:09:30:00 +0130] "GET /b/7 HTTP/1.0" 200 -\n'
    )
    # The name says nothing of gzip: its first bytes do.
    trace = read_trace(write(tmp_path, "access.log.1", text, gz=True))
    assert trace.format == "clf"
    assert [
        (r.time, r.key, r.namespace, r.size, r.user, r.user_agent) for r in trace.requests()
    ] == [
        (T0, "/a", "/a", 5, None, None),
        (T0 + 3600, "/b/7", "/b/{id}", None, "bob", None),
    ]


def test_malformed_lines_are_counted_with_their_numbers(tmp_path: Path) -> None:
    good = '10.0.0.1 - - [02/Nov/2026:07:00:00 +0000] "GET /a HTTP/1.1" 200 5 "-" "ua"'
    lines = [
        good,
        "garbage",
        good[:60],  # truncated
        good.replace("Nov", "Foo"),  # no such month
        good.replace("07:00:00", "25:00:00"),  # no such hour
        '10.0.0.1 - - [02/Nov/2026:07:00:00 +0000] "-" 400 0 "-" "-"',  # no request line
        '10.0.0.1 - - [02/Nov/2026:07:00:00 +0000] "\\x16\\x03\\x01" 400 157 "-" "-"',
        "",  # blank lines are skipped, uncounted
        good.replace(" 200 ", " OK "),
        good,
    ]
    trace = read_trace(write(tmp_path, "access.log", "\n".join(lines) + "\n"))
    assert len(trace) == 2
    assert trace.malformed == 7
    assert trace.lines_read == 9
    assert [m.line for m in trace.malformed_examples] == [2, 3, 4, 5, 6]
    reasons = [m.reason for m in trace.malformed_examples]
    assert "truncated" in reasons[1]
    assert "month" in reasons[2]
    assert "bad time" in reasons[3]
    assert "no HTTP request line" in reasons[4]
    assert trace.malformed_examples[0].text == "garbage"


def test_bytes_that_are_not_utf8_are_replaced_not_fatal(tmp_path: Path) -> None:
    line = (
        b'10.0.0.1 - - [02/Nov/2026:07:00:00 +0000] "GET /caf\xe9 HTTP/1.1" 200 5 "-" "\xff\xfe"\n'
    )
    (request,) = rows(write(tmp_path, "access.log", line))
    assert request.key == "/caf\ufffd"
    assert request.user_agent == "\ufffd\ufffd"


def test_missing_empty_and_directory_paths_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no such file"):
        read_trace(tmp_path / "nope.log")
    with pytest.raises(InvalidArgumentError, match="is a directory"):
        read_trace(tmp_path)
    with pytest.raises(InvalidArgumentError, match="is empty"):
        read_trace(write(tmp_path, "empty.log", "\n\n"))
    with pytest.raises(InvalidArgumentError, match="--format"):
        read_trace(write(tmp_path, "odd.log", "hello\nworld\n"))
    with pytest.raises(InvalidArgumentError, match="all 2 lines are malformed"):
        read_trace(write(tmp_path, "odd2.log", "hello\nworld\n"), format="combined")
    with pytest.raises(InvalidArgumentError, match="format must be one of"):
        read_trace(write(tmp_path, "x.log", COMBINED), format="apache")


def test_headers_cannot_be_read_from_a_log_that_has_none(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"records no request headers.*http_x_api_key"):
        read_trace(write(tmp_path, "access.log", COMBINED), attributes=["header:X-API-Key"])


def test_key_patterns_name_namespaces(tmp_path: Path) -> None:
    got = rows(write(tmp_path, "access.log", COMBINED), key_patterns=["^/api/users=people"])
    assert {r.namespace for r in got} == {"people", "/missing"}
    with pytest.raises(InvalidArgumentError, match="--key-pattern"):
        read_trace(write(tmp_path, "b.log", COMBINED), key_patterns=["(=x"])


def test_progress_reports_bytes_read_up_to_the_total(tmp_path: Path) -> None:
    path = write(tmp_path, "access.log", COMBINED * 5000)
    seen: list[tuple[int, int]] = []
    read_trace(path, progress=lambda done, total: seen.append((done, total)))
    size = path.stat().st_size
    assert len(seen) > 1
    assert seen[-1] == (size, size)
    assert all(total == size and 0 <= done <= size for done, total in seen)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
