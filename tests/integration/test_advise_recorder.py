"""The trace recorder: a cache's and a rate limiter's real events, sampled per key, hashed."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from redkit.advise.recorder import TraceRecorder
from redkit.cache import AsyncCache, Cache
from support import Backend, Blocking

SECRET = b"a-test-secret-of-32-bytes-length"
#: A key that must never appear in a hashed trace.
PRIVATE = "alice@example.com"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def events(path: Path) -> list[dict[str, Any]]:
    return [line for line in lines(path) if "redkit_trace" not in line]


def cache_on(backend: Backend, recorder: TraceRecorder | None, **options: Any) -> Any:
    facade = AsyncCache if backend.is_async else Cache
    return Blocking(facade(backend.conn, trace=recorder, **options), backend)


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    return tmp_path / "trace.jsonl"


def test_a_cache_records_reads_loads_writes_and_invalidations(
    backend: Backend, trace_file: Path
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
    backend: Backend, trace_file: Path
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


def test_keys_can_be_kept_as_they_are(backend: Backend, trace_file: Path) -> None:
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
