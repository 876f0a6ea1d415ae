"""Reading logs into traces (redkit.advise.readers): every format, bad lines, bad files."""

from __future__ import annotations

import gzip
import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redkit.advise import readers
from redkit.advise.readers import read_trace
from redkit.advise.sample import sample_log
from redkit.advise.templates import Templates
from redkit.advise.trace import Op, Request, Trace
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


def test_out_of_order_lines_are_sorted_stably_by_time_then_line(tmp_path: Path) -> None:
    def at(second: int, path: str) -> str:
        return f'10.0.0.1 - - [02/Nov/2026:08:00:{second:02d} +0100] "GET {path} HTTP/1.1" 200 1\n'

    text = at(5, "/e") + at(3, "/c1") + at(4, "/d") + at(3, "/c2") + at(1, "/a") + at(3, "/c3")
    got = rows(write(tmp_path, "access.log", text))
    assert [r.key for r in got] == ["/a", "/c1", "/c2", "/c3", "/d", "/e"]
    assert [r.line for r in got] == [5, 2, 4, 6, 3, 1]


CADDY = (
    '{"level":"info","ts":1793602801.5,"logger":"http.log.access.log0","msg":"handled request",'
    '"request":{"remote_ip":"203.0.113.9","remote_port":"51234","client_ip":"203.0.113.9",'
    '"proto":"HTTP/2.0","method":"GET","host":"shop.example.com","uri":"/api/users/17?b=2&a=1",'
    '"headers":{"User-Agent":["Mozilla/5.0 Firefox/131.0"],"X-Api-Key":["k1"]}},'
    '"user_id":"ann","duration":0.0012,"size":512,"status":200}\n'
    '{"level":"info","ts":1793602800.25,"logger":"http.log.access.log0","request":'
    '{"remote_addr":"203.0.113.10:40000","method":"DELETE","uri":"/api/users/17","headers":{}},'
    '"user_id":"","size":0,"status":204}\n'
    '{"level":"info","ts":1793602802,"msg":"serving initial configuration"}\n'
    '{"level":"info","ts":1793602802,"logger":"http.log.access","request":{"remote_ip":"203.0\n'
)


def test_caddy_json_logs(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "caddy.log", CADDY), attributes=["header:x-api-key"])
    assert trace.format == "jsonl/caddy"
    assert (trace.lines_read, trace.malformed) == (4, 2)
    assert [m.line for m in trace.malformed_examples] == [3, 4]
    assert "not an access log entry" in trace.malformed_examples[0].reason
    assert "not JSON" in trace.malformed_examples[1].reason
    delete, read = trace.requests()
    assert read == Request(
        T0 + 1.5, 1, Op.READ, "/api/users/17?a=1&b=2", "/api/users/{id}", 512, None,
        "203.0.113.9", "ann", "Mozilla/5.0 Firefox/131.0", 200, "GET",
        {"header:x-api-key": "k1"},  # any case: X-Api-Key in the log
    )  # fmt: skip
    assert (delete.op, delete.key, delete.client, delete.user) == (
        Op.WRITE, "/api/users/17", "203.0.113.10", None,
    )  # fmt: skip


NGINX_JSON = (
    '{"time_iso8601":"2026-11-02T08:00:01+01:00","remote_addr":"10.0.0.1","remote_user":"-",'
    '"request":"GET /api/search?q=lamp HTTP/1.1","status":"200","body_bytes_sent":"2048",'
    '"http_user_agent":"curl/8","http_x_api_key":"key1","http_x_real_ip":"192.0.2.1"}\n'
    '{"msec":"1793602800.250","remote_addr":"10.0.0.2","request_method":"PUT",'
    '"request_uri":"/api/products/9","status":204,"body_bytes_sent":"0","http_user_agent":"-"}\n'
    '{"time_local":"02/Nov/2026:08:00:02 +0100","remote_addr":"10.0.0.3","remote_user":"bob",'
    '"request_method":"GET","uri":"/api/products/9","args":"x=1","status":"304"}\n'
    '{"remote_addr":"10.0.0.3","request_method":"GET","uri":"/x","status":"200"}\n'
    "[1, 2]\n"
    '{"time_iso8601":"2026-11-02T08:00:03Z","request_method":"GET","request_uri":"/y",'
    '"status":"OK"}\n'
)


def test_nginx_json_logs_with_their_time_fields(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "nginx.json", NGINX_JSON), attributes=["header:X-API-Key"])
    assert trace.format == "jsonl/nginx"
    assert trace.malformed == 3
    assert [(m.line, m.reason.split(" (")[0]) for m in trace.malformed_examples] == [
        (4, "no time field"), (5, "not a JSON object"), (6, "expected a whole number, got 'OK'"),
    ]  # fmt: skip
    write_, search, not_modified = trace.requests()
    assert (write_.time, write_.op, write_.key, write_.user_agent) == (
        T0 + 0.25, Op.WRITE, "/api/products/9", None,
    )  # fmt: skip
    assert (search.time, search.key, search.size, search.user) == (
        T0 + 1, "/api/search?q=lamp", 2048, None,
    )  # fmt: skip
    assert search.attributes == {"header:X-API-Key": "key1"}  # nginx's $http_x_api_key
    # nginx's $uri and $args make the target; a 304 is no read the cache would serve.
    assert (not_modified.time, not_modified.key, not_modified.op, not_modified.user) == (
        T0 + 2, "/api/products/9?x=1", Op.OTHER, "bob",
    )  # fmt: skip


def test_json_field_names_can_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path, "nginx.json", NGINX_JSON)
    first = rows(path, fields={"client": "http_x_real_ip"}, attributes=["field:http_x_api_key"])
    by_line = {r.line: r for r in first}
    assert by_line[1].client == "192.0.2.1"
    assert by_line[1].attributes == {"field:http_x_api_key": "key1"}
    assert by_line[2].client is None  # the overridden field is absent there
    nested = write(
        tmp_path, "nested.json", '{"t": 5, "req": {"m": "GET", "u": "/a/1"}, "s": 200}\n'
    )
    (request,) = rows(
        nested, fields={"time": "t", "method": "req.m", "uri": "req.u", "status": "s"}
    )
    assert (request.time, request.key, request.namespace, request.op) == (
        5.0, "/a/1", "/a/{id}", Op.READ,
    )  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="no role is called 'agent'"):
        read_trace(path, fields={"agent": "ua"})


def test_json_lines_with_a_key_are_a_cache_trace(tmp_path: Path) -> None:
    text = (
        '{"ts": 1793602800000, "key": "user:1", "op": "set", "ttl": 60, "size": 10}\n'
        '{"ts": 1793602801000, "key": "user:1", "client": "app-1"}\n'
    )
    trace = read_trace(write(tmp_path, "trace.jsonl", text))
    assert trace.format == "jsonl/cache"
    set_, get = trace.requests()
    # Epoch milliseconds are told from seconds by their size.
    assert (set_.time, set_.op, set_.ttl, set_.size, set_.namespace) == (
        T0, Op.WRITE, 60.0, 10, "user",
    )  # fmt: skip
    assert (get.time, get.op, get.client) == (T0 + 1, Op.READ, "app-1")


CSV = (
    "timestamp,key,size,op,ttl,client,tenant\n"
    "1793602801.5,user:42,100,get,,c1,acme\n"
    "2026-11-02T07:00:00Z,user:42,,set,30,c2,\n"
    "1793602800,/api/users/7?x=1,5,,0,,\n"
    '1793602802,"a,b",1,GET,,,\n'
    "1793602803,k,1,load,,,\n"
    "bad,k,1,get,,,\n"
    "1793602804,k\n"
    "1793602805,k,-3,get,,,\n"
)


def test_csv_cache_traces(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "trace.csv", CSV), attributes=["field:tenant"])
    assert trace.format == "csv"
    assert (trace.lines_read, trace.malformed, len(trace)) == (8, 3, 5)  # the header is neither
    assert [m.line for m in trace.malformed_examples] == [7, 8, 9]
    got = {r.line: r for r in trace.requests()}
    assert got[2] == Request(
        T0 + 1.5, 2, Op.READ, "user:42", "user", 100, None, "c1",
        attributes={"field:tenant": "acme"},
    )  # fmt: skip
    assert (got[3].time, got[3].op, got[3].ttl, got[3].size, got[3].client) == (
        T0, Op.WRITE, 30.0, None, "c2",
    )  # fmt: skip
    # A path-like key is in its route template; the TTL 0 is none; no op is a read.
    assert (got[4].namespace, got[4].ttl, got[4].op) == ("/api/users/{id}", None, Op.READ)
    assert (got[5].key, got[5].namespace, got[5].op) == ("a,b", "default", Op.READ)
    assert got[6].op is Op.OTHER  # an op the analyses do not know counts for rate limits only
    with pytest.raises(InvalidArgumentError, match="records no request headers"):
        read_trace(write(tmp_path, "t2.csv", CSV), attributes=["header:X-API-Key"])


def test_csv_needs_its_header(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="all 2 lines are malformed") as caught:
        read_trace(write(tmp_path, "t.csv", "time_s,name\n1,a\n"), format="csv")
    assert "header with timestamp and key" in str(caught.value)


TWITTER = (
    "0,keyA,10,200,c1,get,0\n"
    "1,keyA,10,200,c1,set,3600\n"
    "2,ns:keyB,5,0,c2,delete,0\n"
    "3,ns:keyB,5,0,c2,frob,0\n"
    "4,ns:keyB\n"
    "5,odd,key,4,1,c3,gets,0\n"
)


def test_twitter_cache_traces(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "cluster52.0", TWITTER))
    assert trace.format == "twitter"
    assert [(m.line, m.reason) for m in trace.malformed_examples] == [
        (4, "unknown operation 'frob'"), (5, "2 fields, a Twitter trace line has 7 (truncated?)"),
    ]  # fmt: skip
    assert [
        (r.time, r.op, r.key, r.namespace, r.size, r.ttl, r.client) for r in trace.requests()
    ] == [
        (0.0, Op.READ, "keyA", "default", 210, None, "c1"),
        (1.0, Op.WRITE, "keyA", "default", 210, 3600.0, "c1"),
        (2.0, Op.WRITE, "ns:keyB", "ns", 5, None, "c2"),
        (5.0, Op.READ, "odd,key", "default", 5, None, "c3"),
    ]


def test_several_files_merge_by_time_each_in_its_format(tmp_path: Path) -> None:
    clf = write(
        tmp_path,
        "access.log",
        '10.0.0.1 - - [02/Nov/2026:08:00:02 +0100] "GET /a HTTP/1.1" 200 1\n',
    )
    caddy = write(tmp_path, "caddy.log.gz", CADDY, gz=True)
    empty = write(tmp_path, "access.log.0", "")
    trace = read_trace([clf, caddy, empty])
    assert trace.format == "clf+jsonl/caddy"
    assert trace.source == f"{clf}, {caddy}"
    assert [r.key for r in trace.requests()] == ["/api/users/17", "/api/users/17?a=1&b=2", "/a"]
    # With several files, a malformed line's reason names its file.
    assert trace.malformed_examples[0].reason.startswith("caddy.log.gz: ")
    with pytest.raises(InvalidArgumentError, match="every file is empty"):
        read_trace([empty, empty])
    with pytest.raises(InvalidArgumentError, match="at least one file"):
        read_trace([])


def test_a_damaged_gzip_file_keeps_what_it_could_read(tmp_path: Path) -> None:
    line = '10.0.0.1 - - [02/Nov/2026:08:00:02 +0100] "GET /a HTTP/1.1" 200 1\n'
    data = gzip.compress((line * 20000).encode())
    path = write(tmp_path, "cut.log.gz", data[: len(data) // 2])
    trace = read_trace(path)
    assert 0 < len(trace) < 20000
    assert trace.malformed == 1
    assert "gzip stream is damaged or cut short" in trace.malformed_examples[0].reason


def test_a_line_too_long_is_malformed_and_skipped(tmp_path: Path) -> None:
    line = '10.0.0.1 - - [02/Nov/2026:08:00:02 +0100] "GET /a HTTP/1.1" 200 1\n'
    path = write(tmp_path, "long.log", line + "x" * (3 << 20) + "\n" + line)
    trace = read_trace(path)
    assert (len(trace), trace.malformed) == (2, 1)
    assert trace.malformed_examples[0].line == 2
    assert "longer than" in trace.malformed_examples[0].reason


def test_an_explicit_format_skips_detection(tmp_path: Path) -> None:
    # A CSV-looking first line, but the user says it is a Twitter trace: its header is malformed.
    path = write(tmp_path, "t", "timestamp,key,a,b,c,op,ttl\n" + TWITTER)
    trace = read_trace(path, format="twitter")
    assert trace.format == "twitter"
    assert trace.malformed_examples[0].line == 1
    assert read_trace(write(tmp_path, "j", NGINX_JSON), format="json").format == "jsonl/nginx"


@pytest.mark.parametrize("bad", ["x", "header:", "cookie:session", "header"])
def test_attribute_names_are_checked(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidArgumentError, match="header:NAME"):
        read_trace(write(tmp_path, "n.json", NGINX_JSON), attributes=[bad])


# -- any line, any bytes: read or rejected, never a crash -----------------------------------

_GOOD_LINES = {
    "clf": COMBINED.splitlines(),
    "jsonl": CADDY.splitlines()[:2] + NGINX_JSON.splitlines()[:3],
    "csv": CSV.splitlines()[1:6],
    "twitter": TWITTER.splitlines()[:3],
}


@st.composite
def mutated(draw: st.DrawFn, format: str) -> str:
    """A good line of ``format`` with a stretch replaced by arbitrary text (or arbitrary text)."""
    if draw(st.booleans()):
        return draw(st.text(max_size=300))
    line = draw(st.sampled_from(_GOOD_LINES[format]))
    start = draw(st.integers(0, len(line)))
    end = draw(st.integers(start, len(line)))
    return line[:start] + draw(st.text(max_size=20)) + line[end:]


def _reader(format: str) -> Callable[[int, str], Request | None]:
    http = readers._Http(Templates())
    if format == "clf":
        return readers._ClfReader(http)
    if format == "jsonl":
        return readers._JsonReader(http, {}, ["header:X-Api-Key", "field:a.b"])
    if format == "csv":
        reader = readers._CsvReader(http, ["field:tenant"])
        reader(1, CSV.splitlines()[0])
        return reader
    return readers._TwitterReader(http)


@pytest.mark.parametrize("format", sorted(_GOOD_LINES))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_line_is_read_or_rejected_with_a_reason(format: str, data: st.DataObject) -> None:
    line = data.draw(mutated(format))
    reader = _reader(format)
    reason = None
    try:
        request = reader(2, line)
    except readers._Malformed as exc:
        reason = str(exc)  # the only way a reader may refuse a line
    if reason is not None:
        assert reason
    else:
        assert request is not None
        assert isinstance(request.key, str)
        assert isinstance(request.namespace, str)
        assert math.isfinite(request.time)
        assert request.size is None or request.size >= 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    format=st.sampled_from(["auto", "clf", "jsonl", "csv", "twitter"]),
    noise=st.lists(st.binary(max_size=200), max_size=5),
)
def test_any_bytes_in_a_file_never_stop_a_read(format: str, noise: list[bytes]) -> None:
    good = {"auto": COMBINED, "clf": COMBINED, "jsonl": CADDY, "csv": CSV, "twitter": TWITTER}
    data = good[format].encode() + b"\n".join(noise) + b"\n" + good[format].encode()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "log"
        for gz in (False, True):
            path.write_bytes(gzip.compress(data) if gz else data)
            trace = read_trace(path, format=format)
            assert len(trace) + trace.malformed == trace.lines_read
            assert len(trace) >= 2
            # Every rejection is one the readers meant, never the catch-all.
            assert not any(m.reason.startswith("unreadable") for m in trace.malformed_examples)


_COLUMNS = (
    "times", "lines", "ops", "keys", "namespaces", "sizes", "clients", "users", "user_agents",
    "statuses", "methods",
)  # fmt: skip


def _rows(trace: Trace) -> list[tuple[object, ...]]:
    """Every request as its values (strings resolved), for comparing two traces."""
    names = {"keys": trace.key_names, "namespaces": trace.namespace_names}
    columns = []
    for name in _COLUMNS:
        column = getattr(trace, name)
        table = names.get(name, trace.strings if name in _STRING_COLUMNS else None)
        columns.append([table[v] for v in column] if table is not None else list(column))
    ttls = ["nan" if math.isnan(v) else v for v in trace.ttls]
    return list(zip(*columns, ttls, strict=True))


_STRING_COLUMNS = {"clients", "users", "user_agents", "methods"}


def test_the_fast_path_reads_the_sample_as_the_general_parser_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The common line is matched by a quick pattern and added to the columns directly; the
    # general pattern and a Request per line must give the same trace, row for row.
    fast = read_trace(sample_log())
    monkeypatch.setattr(readers, "_CLF_FAST", re.compile(r"(?!)"))  # matches nothing
    general = read_trace(sample_log())
    assert len(fast) == len(general) > 1000
    assert (fast.malformed, fast.lines_read) == (general.malformed, general.lines_read)
    assert _rows(fast) == _rows(general)
