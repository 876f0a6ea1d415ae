"""The trace recorder: a cache's and a rate limiter's real events, sampled per key, hashed."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from redkit.advise import Op, Trace, read_recorded
from redkit.advise.recorder import TraceRecorder
from redkit.cache import AsyncCache, Cache
from redkit.core.ops import command
from redkit.drivers.connect import Connection
from redkit.ratelimit import FixedWindow, Ratelimit, TieredRatelimit
from support.backends import BackendCase, Blocking
from support.probes import closed_port

SECRET = b"a-test-secret-of-32-bytes-length"
#: A key that must never appear in a hashed trace.
PRIVATE = "alice@example.com"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(path: Path) -> list[dict[str, Any]]:
    return [line for line in lines(path) if "redkit_trace" not in line]


def cache_on(backend: BackendCase, recorder: TraceRecorder | None, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    return Blocking(facade(backend.conn, trace=recorder, **options), backend)


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    return tmp_path / "trace.jsonl"


def test_a_cache_records_reads_loads_writes_and_invalidations(
    backend: BackendCase, trace_file: Path
) -> None:
    recorder = TraceRecorder.to_file(trace_file, sample=1.0, secret=SECRET)
    cache = cache_on(backend, recorder, namespace="users", early_refresh=None)

    def load() -> dict[str, str]:
        time.sleep(0.02)
        return {"name": "Alice"}

    assert cache.get(PRIVATE) is None  # a miss
    assert cache.get_or_set(PRIVATE, load, 60, tags=["team:7"]) == {"name": "Alice"}
    assert cache.get_or_set(PRIVATE, load) == {"name": "Alice"}  # a hit
    assert cache.get(PRIVATE) == {"name": "Alice"}  # a hit
    assert cache.set("other", [1, 2, 3], 30)
    assert cache.delete(PRIVATE) == 1
    cache.invalidate_tags("team:7")
    cache.bump_version()
    recorder.close()

    header, *rest = lines(trace_file)
    assert header["redkit_trace"] == 1
    assert header["sample"] == 1.0
    assert header["hashed"] is True
    assert header["keys_id"] == recorder.keys_id
    assert [(e["kind"], e["ns"]) for e in rest] == [("cache", "users")] * len(rest)
    mine = hmac.new(SECRET, f"users\0{PRIVATE}".encode(), hashlib.sha256).digest()[:8].hex()
    other = recorder.key_of("users", "other")
    team = hmac.new(SECRET, b"users\0#tag\0team:7", hashlib.sha256).hexdigest()[:16]
    assert [(e["op"], e["key"]) for e in rest] == [
        ("miss", mine),  # get
        ("miss", mine),  # get_or_set: the miss, then its load
        ("load", mine),
        ("hit", mine),
        ("hit", mine),
        ("write", other),
        ("delete", mine),
        ("invalidate", team),
        ("invalidate", None),
    ]
    miss, load, hit = rest[1], rest[2], rest[3]
    assert miss["size"] is None
    assert miss["load_ms"] is None
    assert load["load_ms"] >= 20  # the loader slept 20 ms
    assert load["ttl"] == 60.0
    assert load["tags"] == [team]
    assert load["size"] > len('{"name":"Alice"}')  # the entry: the value and its header
    assert hit["size"] == load["size"]  # the same entry, read back
    assert hit["ttl"] == 60.0
    assert hit["load_ms"] == round(load["load_ms"])  # what the entry says its load took
    assert rest[5]["size"] > 0
    assert rest[5]["ttl"] == 30.0
    assert [e.get("scope") for e in rest[-2:]] == ["tag", "namespace"]
    assert all(a["ts"] <= b["ts"] for a, b in itertools.pairwise(rest))
    assert abs(rest[0]["ts"] - time.time()) < 60
    text = trace_file.read_text()
    assert PRIVATE not in text
    assert "team:7" not in text
    assert recorder.recorded == len(rest)
    assert recorder.written == len(rest)
    assert recorder.dropped == 0


def test_sampling_is_per_key_every_event_of_a_sampled_key_and_none_of_the_others(
    backend: BackendCase, trace_file: Path
) -> None:
    recorder = TraceRecorder.to_file(trace_file, sample=0.5, secret=SECRET)
    cache = cache_on(backend, recorder, namespace="items", early_refresh=None)
    names = [f"item-{n}" for n in range(40)]
    for name in names:
        cache.get(name)
        cache.get_or_set(name, lambda name=name: name)
        cache.get(name)
        cache.delete(name)
    recorder.close()

    by_key: dict[str, list[str]] = {}
    for event in events(trace_file):
        by_key.setdefault(event["key"], []).append(event["op"])
    sampled = {recorder.key_of("items", name) for name in names} - {None}
    assert 5 < len(sampled) < 35  # about half of the keys
    assert set(by_key) == sampled  # nothing of an unsampled key
    for ops in by_key.values():  # everything of a sampled one
        assert ops == ["miss", "miss", "load", "hit", "delete"]
    # The secret decides: another recorder with it samples (and hashes) the same keys.
    again = TraceRecorder.to_file(trace_file.with_name("again.jsonl"), sample=0.5, secret=SECRET)
    assert {again.key_of("items", name) for name in names} - {None} == sampled
    again.close()


def test_keys_can_be_kept_as_they_are(backend: BackendCase, trace_file: Path) -> None:
    recorder = TraceRecorder.to_file(trace_file, sample=1.0, hash_keys=False)
    cache = cache_on(backend, recorder, namespace="users")
    cache.get(PRIVATE)
    cache.set(PRIVATE, 1, tags=["team:7"])
    recorder.close()
    assert lines(trace_file)[0]["hashed"] is False
    assert [(e["op"], e["key"], e.get("tags")) for e in events(trace_file)] == [
        ("miss", PRIVATE, None),
        ("write", PRIVATE, ["team:7"]),
    ]


def test_a_full_buffer_drops_and_counts_and_never_blocks(trace_file: Path) -> None:
    # A thread that waits a minute between writes: only close() writes here.
    recorder = TraceRecorder.to_file(
        trace_file, sample=1.0, secret=SECRET, buffer=5, flush_interval=60
    )
    for n in range(12):
        recorder.record_cache("miss", "ns", f"k{n}")
    assert (recorder.recorded, recorder.dropped) == (5, 7)
    recorder.close()
    assert [e["key"] for e in events(trace_file)] == [
        recorder.key_of("ns", f"k{n}") for n in range(5)
    ]
    recorder.record_cache("miss", "ns", "late")  # after close: dropped, not raised
    assert recorder.dropped == 8


def test_the_thread_writes_without_being_asked(trace_file: Path) -> None:
    with TraceRecorder.to_file(
        trace_file, sample=1.0, secret=SECRET, flush_interval=0.05
    ) as recorder:
        recorder.record_cache("hit", "ns", "k")
        deadline = time.monotonic() + 10
        while recorder.written < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e["op"] for e in events(trace_file)] == ["hit"]


def test_wrong_settings_are_refused_clearly(trace_file: Path) -> None:
    with pytest.raises(ValueError, match="sample must be"):
        TraceRecorder.to_file(trace_file, sample=0)
    with pytest.raises(ValueError, match="sample must be"):
        TraceRecorder.to_file(trace_file, sample=1.5)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        TraceRecorder.to_file(trace_file, secret="short")
    with pytest.raises(FileNotFoundError):
        TraceRecorder.to_file(trace_file.parent / "missing" / "trace.jsonl")
    with pytest.raises(TypeError, match=r"trace must be a redkit\.advise\.TraceRecorder"):
        Cache("redis://127.0.0.1:1", trace=str(trace_file))  # type: ignore[arg-type]


# -- rate limits ---------------------------------------------------------------------------


def test_rate_limit_decisions_are_recorded(backend: BackendCase, trace_file: Path) -> None:
    recorder = TraceRecorder.to_file(trace_file, sample=1.0, secret=SECRET)
    limiter = backend.ratelimit(FixedWindow(3, "1 m"), prefix="api", trace=recorder)
    results = [limiter.limit(PRIVATE) for _ in range(5)]
    results += limiter.limit_many(["bob", "carol"])
    recorder.close()

    recorded = events(trace_file)
    who = [PRIVATE] * 5 + ["bob", "carol"]
    assert [(e["kind"], e["ns"], e["key"]) for e in recorded] == [
        ("ratelimit", "api", recorder.key_of("api", name)) for name in who
    ]
    assert [e["op"] for e in recorded] == ["allow"] * 3 + ["deny"] * 2 + ["allow"] * 2
    assert [e["remaining"] for e in recorded] == [r.remaining for r in results]
    assert [e["remaining"] for e in recorded[:3]] == [2, 1, 0]
    assert [e.get("reason") for e in recorded] == [r.reason for r in results]
    assert {e["limit"] for e in recorded} == {3}
    assert PRIVATE not in trace_file.read_text()


def test_each_tier_is_recorded_under_its_own_prefix(conn: Connection, trace_file: Path) -> None:
    recorder = TraceRecorder.to_file(trace_file, sample=1.0, secret=SECRET)
    tiers = TieredRatelimit(
        conn, {"free": FixedWindow(1, "1 m"), "pro": FixedWindow(5, "1 m")}, prefix="plans",
        trace=recorder,
    )  # fmt: skip
    tiers.limit("u1", tier="free")
    tiers.limit("u1", tier="free")
    tiers.limit("u1", tier="pro")
    recorder.close()
    assert [(e["ns"], e["op"]) for e in events(trace_file)] == [
        ("plans:free", "allow"),
        ("plans:free", "deny"),
        ("plans:pro", "allow"),
    ]


# -- Redis streams -------------------------------------------------------------------------


def xlen(conn: Connection, stream: str) -> int:
    return int(conn.sync_driver().execute(command("XLEN", stream)))


def test_a_stream_is_bounded_by_maxlen(conn: Connection) -> None:
    exact = TraceRecorder.to_stream(
        conn, "trace:exact", maxlen=50, approximate=False, sample=1.0, secret=SECRET, batch=16
    )
    cheap = TraceRecorder.to_stream(conn, "trace:cheap", maxlen=50, sample=1.0, batch=16)
    names = [f"k{n}" for n in range(300)]
    for recorder in (exact, cheap):
        cache = Cache(conn, namespace="s", trace=recorder)
        for name in names:
            cache.get(name)
        recorder.close()
        assert recorder.written == 300
    assert xlen(conn, "trace:exact") == 50
    # MAXLEN ~ trims whole nodes of the stream (100 entries by default): a little more is kept.
    assert 50 <= xlen(conn, "trace:cheap") <= 50 + 100
    kept = read_recorded(stream=(conn, "trace:exact"))
    assert kept.headers == []  # trimmed away with the oldest events
    assert [kept.key_names[k] for k in kept.keys] == [exact.key_of("s", n) for n in names[-50:]]
    assert set(kept.ops) == {Op.READ}


def test_a_stream_reads_back_as_the_file_does(conn: Connection, trace_file: Path) -> None:
    to_stream = TraceRecorder.to_stream(conn, "trace:both", sample=1.0, secret=SECRET)
    to_file = TraceRecorder.to_file(trace_file, sample=1.0, secret=SECRET)
    for recorder in (to_stream, to_file):
        cache = Cache(conn, namespace=f"both-{id(recorder)}", trace=recorder)
        cache.get_or_set("a", lambda: "x" * 100, tags=["t"])
        cache.get("a")
        cache.invalidate_tags("t")
        limiter = Ratelimit(
            conn, FixedWindow(1, "1 m"), prefix=f"rl-{id(recorder)}", trace=recorder
        )
        limiter.limit("ip-1")
        limiter.limit("ip-1")
        recorder.close()
    from_stream = read_recorded(stream=(conn, "trace:both"))
    from_file = read_recorded(trace_file)
    assert from_stream.format == from_file.format == "redkit-trace"
    assert from_stream.source == "redis stream trace:both"
    assert from_stream.malformed == from_file.malformed == 0
    assert from_stream.sample == from_file.sample == 1.0
    assert from_stream.hashed is True
    assert from_stream.headers[0]["keys_id"] == to_stream.keys_id

    def rows(trace: Trace) -> list[tuple[Any, ...]]:  # the namespaces differ, and the times
        return [
            (r.op, r.size, r.ttl, r.client is None, {**(r.attributes or {}), "load_ms": 0})
            for r in trace.requests()
        ]

    assert rows(from_stream) == rows(from_file)
    (miss, hit, written, allowed, denied) = from_stream.requests()
    assert (miss.op, miss.attributes["result"]) == (Op.READ, "miss")
    assert float(miss.attributes["load_ms"]) >= 0
    assert (miss.size or 0) > 100  # the size of the entry loaded
    assert miss.ttl == 300.0
    assert (hit.op, hit.attributes["result"], hit.size) == (Op.READ, "hit", miss.size)
    assert (written.op, written.key) == (Op.WRITE, miss.key)  # the tag reached the key
    assert (allowed.op, allowed.namespace) == (Op.OTHER, f"rl-{id(to_stream)}")
    assert allowed.client == allowed.key == to_stream.key_of(allowed.namespace, "ip-1")
    assert allowed.attributes == {"decision": "allow", "remaining": "0"}
    assert denied.attributes["decision"] == "deny"


def test_a_stream_on_a_redis_that_is_down_costs_the_caller_nothing(
    conn: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = TraceRecorder.to_stream(
        f"redis://127.0.0.1:{closed_port()}", sample=1.0, flush_interval=0.05
    )
    cache = Cache(conn, namespace="down", trace=recorder)
    with caplog.at_level(logging.WARNING, logger="redkit.advise"):
        for n in range(20):
            assert cache.get_or_set(f"k{n}", lambda n=n: n) == n
        recorder.flush()  # fails: the events are dropped, with a warning
        assert recorder.dropped == 40  # a miss and a load of each key
        for n in range(20):
            assert cache.get(f"k{n}") == n
        deadline = time.monotonic() + 10
        while recorder.dropped < 60 and time.monotonic() < deadline:
            time.sleep(0.02)  # the thread's tries fail too, without another warning
        recorder.close()
    assert recorder.recorded == recorder.dropped == 60
    assert recorder.written == 0
    warnings = [r for r in caplog.records if r.name == "redkit.advise"]
    assert len(warnings) == 1
    assert "events dropped" in warnings[0].getMessage()
    assert cache.stats.loads == 20  # the cache itself never noticed


# -- reading -------------------------------------------------------------------------------


HEADER = '{"redkit_trace": 1, "sample": 0.5, "hashed": true, "started": 1.0}'


def event(ts: float, op: str, key: str | None, **more: Any) -> str:
    kind = "ratelimit" if op in ("allow", "deny") else "cache"
    return json.dumps({"ts": ts, "kind": kind, "op": op, "ns": "n", "key": key, **more})


def test_invalidations_reach_the_keys_they_invalidate() -> None:
    trace = read_recorded(
        [
            HEADER,
            event(1, "miss", "a"),
            event(1.1, "load", "a", size=10, ttl=60, load_ms=5.5, tags=["t1"]),
            event(2, "write", "b", size=20, tags=["t1", "t2"]),
            event(3, "hit", "c", size=30),
            event(4, "invalidate", "t2", scope="tag"),
            event(5, "write", "b", size=20),  # b loses its tags
            event(6, "invalidate", "t1", scope="tag"),
            event(7, "invalidate", None, scope="namespace"),
            event(8, "miss", "c"),  # a plain get: no load follows
        ]
    )
    rows = [(r.time, r.op, r.key, r.size, r.line) for r in trace.requests()]
    assert rows == [
        (1, Op.READ, "a", 10, 2),  # the miss, with its load's size
        (2, Op.WRITE, "b", 20, 4),
        (3, Op.READ, "c", 30, 5),
        (4, Op.WRITE, "b", None, 6),  # t2: b only
        (5, Op.WRITE, "b", 20, 7),
        (6, Op.WRITE, "a", None, 8),  # t1: a, no longer b
        (7, Op.WRITE, "a", None, 9),  # the namespace: every key seen
        (7, Op.WRITE, "b", None, 9),
        (7, Op.WRITE, "c", None, 9),
        (8, Op.READ, "c", 30, 10),  # the last size seen of c
    ]
    first = trace.request(0)
    assert first.ttl == 60
    assert first.attributes == {"result": "miss", "load_ms": "5.5"}
    assert trace.sample == 0.5
    assert trace.hashed is True
    assert len(trace) == 10  # the header and the loads are no requests; invalidations expand


def test_malformed_lines_are_counted_with_their_reasons() -> None:
    trace = read_recorded(
        [
            HEADER,
            "not json",
            "[1, 2]",
            event(1, "peek", "a"),
            json.dumps({"ts": "soon", "kind": "cache", "op": "hit", "ns": "n", "key": "a"}),
            event(2, "hit", "a", size=-1),
            event(3, "invalidate", "t"),
            '{"redkit_trace": 2}',
            "",
            event(4, "hit", "a"),
            event(5, "deny", "ip", remaining=0),
        ]
    )
    assert len(trace) == 2
    assert trace.malformed == 7
    reasons = {m.line: m.reason for m in trace.malformed_examples}
    assert list(reasons) == [2, 3, 4, 5, 6]  # the first five
    assert reasons[2].startswith("not JSON")
    assert reasons[3] == "not a JSON object"
    assert "not a cache event" in reasons[4]
    assert "ts must be a number" in reasons[5]
    assert "size must be a whole number >= 0" in reasons[6]
    assert trace.request(1).attributes == {"decision": "deny", "remaining": "0"}
    with pytest.raises(ValueError, match="holds no recorded trace"):
        read_recorded(["", "  "])
    with pytest.raises(ValueError, match="needs one source"):
        read_recorded()


def test_a_gzipped_file_reads_too(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl.gz"
    with TraceRecorder.to_file(path, sample=1.0) as recorder:
        recorder.record_cache("hit", "n", "k", size=5)
    with gzip.open(path, "rt") as lines:
        assert "redkit_trace" in lines.readline()
    trace = read_recorded(path)
    assert [(r.op, r.size) for r in trace.requests()] == [(Op.READ, 5)]


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_worker_records_with_a_thread_of_its_own(trace_file: Path) -> None:
    recorder = TraceRecorder.to_file(trace_file, sample=1.0, secret=SECRET, flush_interval=0.05)
    recorder.record_cache("hit", "ns", "parent")
    recorder.flush()
    pid = os.fork()
    if pid == 0:  # the child: no close(), as a worker killed by its server; the thread writes
        code = 1
        try:
            recorder.record_cache("hit", "ns", "child")
            deadline = time.monotonic() + 10
            while recorder.written < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            code = 0 if recorder.written == 2 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    recorder.close()
    assert [e["key"] for e in events(trace_file)] == [
        recorder.key_of("ns", "parent"),
        recorder.key_of("ns", "child"),
    ]
