"""The TTL-only cache replay: a hand-worked trace, and the issue's definition as the reference."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redkit.advise.cache_sim import (
    ENTRY_OVERHEAD_BYTES,
    CacheSimulation,
    TtlRow,
    resource_of,
)
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from support.cache_traces import START, Reference, reference_rows, zipf_trace

A, B = "/a/{id}", "/b/{id}"


def hand_trace() -> Trace:
    """Worked by hand in the test below (times from START, seconds)."""
    rows = [
        (0.0, Op.READ, "/a/1", A, 100),
        (1.0, Op.READ, "/a/1", A, 100),
        (2.0, Op.READ, "/a/1?x=1", A, 50),
        (3.0, Op.WRITE, "/a/1", A, None),  # invalidates /a/1 and /a/1?x=1
        (4.0, Op.READ, "/a/1", A, 100),
        (4.02, Op.READ, "/a/1", A, 100),  # 20 ms after a miss: it would wait on the load
        (5.0, Op.READ, "/a/1?x=1", A, 50),
        (6.0, Op.READ, "/b/2", B, 10),
        (7.0, Op.READ, "/b/2", B, 10),
        (12.0, Op.READ, "/a/1", A, 100),
        (15.0, Op.READ, "/a/1", A, 100),
        (20.0, Op.READ, "/b/2", B, 10),
    ]
    builder = TraceBuilder("hand", "test")
    for line, (t, op, key, namespace, size) in enumerate(rows, 1):
        builder.add(Request(START + t, line, op, key, namespace, size=size))
    return builder.build()


def test_resource_of_drops_the_query() -> None:
    assert resource_of("/a/1?x=1&y=2") == "/a/1"
    assert resource_of("/a/1") == "/a/1"


def test_a_hand_worked_trace_gives_exact_numbers() -> None:
    sim = CacheSimulation(hand_trace())
    assert [s.name for s in sim.scopes] == [A, B]  # most read first
    a, b = sim.scopes
    assert (a.requests, a.reads, a.writes, a.keys, a.writes_seen) == (9, 8, 1, 2, True)
    assert (b.requests, b.reads, b.writes, b.keys, b.writes_seen) == (3, 3, 0, 1, False)
    assert a.mean_bytes == pytest.approx((6 * 100 + 2 * 50) / 8)
    rows = sim.ttl_rows([1.0, 10.0], loader_s=0.05)
    # TTL 10 s: /a/1 hits at 1 and 4.02 (coalesced) and 12; the write at 3 makes 4 and 5 miss.
    ten = rows[0][1]
    assert (ten.hits, ten.misses, ten.coalesced) == (3, 5, 1)
    assert ten.hit_ratio == pytest.approx(3 / 8)
    assert ten.origin_load_per_s == pytest.approx(5 / 20)
    # Not told of the write, a cache would hit at 1, 4, 4.02, 5 and 15; 4, 4.02 and 5 stale.
    assert ten.stale_hit_share == pytest.approx(3 / 5)
    # Entries: /a/1 [0,3) 100, ?x=1 [2,3) 50, /a/1 [4,14), ?x=1 [5,15), /a/1 [15,25): 150 at 5.
    assert ten.peak_bytes == 150
    overhead = 2 * ENTRY_OVERHEAD_BYTES + len("/a/1") + len("/a/1?x=1")
    assert ten.peak_memory_bytes == 150 + overhead
    b_ten = rows[1][1]
    assert (b_ten.hits, b_ten.misses, b_ten.coalesced, b_ten.peak_bytes) == (1, 2, 0, 10)
    assert b_ten.stale_hit_share is None  # no write to /b: cannot be measured
    overall = rows[CacheSimulation.OVERALL][1]
    assert (overall.hits, overall.misses, overall.peak_bytes) == (4, 7, 160)  # 160 at 6 s
    assert overall.stale_hit_share == pytest.approx(3 / 6)
    # TTL 1 s: only the read 20 ms after a miss hits.
    assert [(r.hits, r.coalesced) for r in (rows[0][0], rows[1][0])] == [(1, 1), (0, 0)]


def test_refresh_counts_what_stale_ttl_and_early_refresh_answer_at_once() -> None:
    sim = CacheSimulation(hand_trace())
    rows = sim.refresh(10.0, 5.0, loader_s=0.05)
    # /a/1 expired at 14 and is read at 15, /b/2 expired at 16 and is read at 20: both within
    # 5 s, so served stale; the misses after the write at 3 are not (the entry was deleted).
    assert (rows[0].stale_ttl_misses, rows[0].stale_ttl_hits) == (1, 1)
    assert (rows[1].stale_ttl_misses, rows[1].stale_ttl_hits) == (1, 1)
    assert rows[CacheSimulation.OVERALL].stale_ttl_hits == 2
    assert rows[0].early_refresh_hits == 0  # no key is read often enough near its expiry
    shorter = sim.refresh(10.0, 2.0, loader_s=0.05)
    assert (shorter[0].stale_ttl_hits, shorter[1].stale_ttl_hits) == (1, 0)
    assert sim.refresh(10.0, None)[0].stale_ttl_hits == 0


def test_early_refresh_spares_the_reads_piled_up_behind_a_hot_keys_expiry() -> None:
    # One key read every 1/64 s for 300 reads, TTL 1 s, loads of 50 ms: each miss has three
    # reads waiting on its load; before each of the four expiries, XFetch (beta 1) has almost
    # surely drawn a refresh, which spares those three.
    step = 1 / 64
    builder = TraceBuilder("hot", "test")
    for i in range(300):
        builder.add(Request(START + i * step, i + 1, Op.READ, "/hot", "/hot", size=10))
    sim = CacheSimulation(builder.build())
    (row,) = sim.ttl_rows([1.0], loader_s=0.05)[0]
    assert (row.misses, row.coalesced) == (5, 15)
    survive = math.prod(1 - math.exp(-((64 - k) * step) / 0.05) for k in range(4, 64))
    refresh = sim.refresh(1.0, None, loader_s=0.05)[0]
    assert refresh.early_refresh_hits == round(4 * 3 * (1 - survive)) == 12
    assert sim.refresh(1.0, None, loader_s=0.05, beta=0.0)[0].early_refresh_hits == 0


def check_against_reference(trace: Trace, ttls: list[float], loader_s: float) -> None:
    sim = CacheSimulation(trace)
    rows = sim.ttl_rows(ttls, loader_s=loader_s)
    names = {scope: stats.name for scope, stats in enumerate(sim.scopes)}
    names[CacheSimulation.OVERALL] = "*"
    for index, ttl in enumerate(ttls):
        reference = reference_rows(trace, ttl, loader_s, stale_ttl=ttl / 2)
        refresh = sim.refresh(ttl, ttl / 2, loader_s=loader_s, beta=0.0)
        for scope, name in names.items():
            row: TtlRow = rows[scope][index]
            want = reference.get(name, Reference())
            assert (row.hits, row.misses, row.coalesced) == (want.hits, want.misses, want.coalesced)
            writes_seen = sim.stats(scope).writes_seen
            if not writes_seen:
                assert row.stale_hit_share is None
                assert want.stale_hits == 0
            else:
                share = want.stale_hits / want.pure_hits if want.pure_hits else 0.0
                assert row.stale_hit_share == pytest.approx(share)
            sized = scope == CacheSimulation.OVERALL or sim.stats(scope).mean_bytes is not None
            if sim.has_sizes and sized:
                assert row.peak_bytes == want.peak_bytes
            else:
                assert row.peak_bytes is None
            got = refresh[scope]
            assert (got.stale_ttl_misses, got.stale_ttl_hits) == (
                want.stale_ttl_misses,
                want.stale_ttl_hits,
            )


def test_a_zipf_trace_matches_the_reference() -> None:
    trace = zipf_trace(1500, 60, seed=7, span_s=300, write_share=0.08, whole_seconds=True)
    check_against_reference(trace, [1.0, 5.5, 30.0, 1e9], loader_s=1.5)


_rows = st.lists(
    st.tuples(
        st.integers(0, 40),  # time, in tenths of a second: ties happen
        st.sampled_from([Op.READ, Op.READ, Op.READ, Op.WRITE, Op.OTHER]),
        st.sampled_from(["/a/1", "/a/1?q=1", "/a/2", "/b/1", "/b/1?q=2"]),
        st.one_of(st.none(), st.integers(0, 500)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(rows=_rows, ttl=st.sampled_from([0.1, 0.5, 1.0, 2.5, 100.0]))
def test_any_small_trace_matches_the_reference(
    rows: list[tuple[int, Op, str, int | None]], ttl: float
) -> None:
    builder = TraceBuilder("h", "test")
    for line, (tenths, op, key, size) in enumerate(rows, 1):
        namespace = "/" + key[1] + "/{id}"
        known = size if op == Op.READ else None
        builder.add(Request(START + tenths / 10, line, op, key, namespace, size=known))
    trace = builder.build()
    # Unknown sizes count as their namespace's mean, which the reference cannot know.
    if any(s < 0 for s, o in zip(trace.sizes, trace.ops, strict=True) if o == Op.READ):
        for i, op in enumerate(trace.ops):
            if op == Op.READ and trace.sizes[i] < 0:
                trace.sizes[i] = 0
    check_against_reference(trace, [ttl], loader_s=0.3)


def reference_read_hits(trace: Trace, ttl: float, namespaces: set[str] | None = None) -> list[bool]:
    """Per read, the issue's definition literally: stored at its last miss, no write since."""
    stored: dict[str, float] = {}  # key -> time of its last miss
    written: dict[str, set[str]] = {}  # resource -> its keys stored since its last write
    flags = []
    for request in trace.requests():
        if namespaces is not None and request.namespace not in namespaces:
            continue
        if request.op == Op.WRITE:
            for key in written.pop(resource_of(request.key), set()):
                stored.pop(key, None)
        elif request.op == Op.READ:
            held = stored.get(request.key)
            hit = held is not None and request.time < held + ttl
            flags.append(hit)
            if not hit:
                stored[request.key] = request.time
                written.setdefault(resource_of(request.key), set()).add(request.key)
    return flags


def test_read_hits_are_the_hand_worked_decisions() -> None:
    sim = CacheSimulation(hand_trace())
    # TTL 10 s, reads in time order: /a/1 0 miss, 1 hit, ?x=1 2 miss; the write at 3; /a/1 4
    # miss, 4.02 hit, ?x=1 5 miss, /b/2 6 miss, 7 hit, /a/1 12 hit, 15 miss, /b/2 20 miss.
    assert sim.read_hits(10.0) == [
        False, True, False, False, True, False, False, True, True, False, False,
    ]  # fmt: skip
    assert sum(sim.read_hits(10.0)) == sim.ttl_rows([10.0])[CacheSimulation.OVERALL][0].hits
    with pytest.raises(ValueError, match="ttl must be a positive"):
        sim.read_hits(0)


@settings(max_examples=300, deadline=None)
@given(rows=_rows, ttl=st.sampled_from([0.1, 0.5, 1.0, 2.5, 100.0]), only_a=st.booleans())
def test_read_hits_match_the_definition_read_for_read(
    rows: list[tuple[int, Op, str, int | None]], ttl: float, only_a: bool
) -> None:
    builder = TraceBuilder("h", "test")
    for line, (tenths, op, key, size) in enumerate(rows, 1):
        builder.add(Request(START + tenths / 10, line, op, key, "/" + key[1] + "/{id}", size=size))
    trace = builder.build()
    wanted = {A} if only_a else None
    sim = CacheSimulation(trace, namespaces=wanted)
    assert sim.read_hits(ttl) == reference_read_hits(trace, ttl, wanted)


def test_read_hits_of_a_zipf_trace_match_the_definition() -> None:
    trace = zipf_trace(3000, 80, seed=11, span_s=600, write_share=0.06, whole_seconds=True)
    sim = CacheSimulation(trace)
    for ttl in (1.0, 7.0, 60.0, 1e9):
        flags = sim.read_hits(ttl)
        assert flags == reference_read_hits(trace, ttl)
        assert 0 < sum(flags) < len(flags)
