"""The eviction replay against libCacheSim itself, and against a plain LRU with expiry.

Issue 14's proof "LRU / LFU hit ratios at given sizes equal libCacheSim's results on the same
requests": the requests of a trace, each sized in Redis bytes as :meth:`memory_rows` sizes them,
are written as a libCacheSim ``oracleGeneral`` trace and run through its own trace reader and
``process_trace``; the hit counts must be equal. Then :meth:`memory_rows` on its own: expiry and
invalidation applied (a reference LRU written out plainly), key sampling, bad arguments.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redkit.advise.cache_sim import (
    ENTRY_OVERHEAD_BYTES,
    EXACT_READS,
    POLICIES,
    CacheSimulation,
    resource_of,
)
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from support.cache_traces import START, zipf_trace

libcachesim = pytest.importorskip("libcachesim")
NEVER = 1e12  # a TTL no trace reaches


def redis_bytes(request: Request) -> int:
    """What one entry costs Redis, as the model counts it: value, key, per-entry overhead."""
    assert request.size is not None
    return request.size + ENTRY_OVERHEAD_BYTES + len(request.key.encode())


def write_oracle(trace: Trace, path: Path) -> int:
    """The trace's reads as libCacheSim's oracleGeneral records; returns how many."""
    ids: dict[str, int] = {}
    records = []
    for request in trace.requests():
        if request.op == Op.READ:
            obj_id = ids.setdefault(request.key, len(ids) + 1)
            seconds = int(request.time - trace.start)
            # (timestamp u32, object id u64, size u32, next access vtime i64): -1, not known.
            records.append(struct.pack("<IQIq", seconds, obj_id, redis_bytes(request), -1))
    path.write_bytes(b"".join(records))
    return len(records)


def libcachesim_hits(path: Path, engine: str, budget: int, reads: int) -> int:
    """Hits of libCacheSim's ``engine`` at ``budget`` bytes over the trace file, by its reader."""
    reader = libcachesim.TraceReader(str(path), libcachesim.TraceType.ORACLE_GENERAL_TRACE)
    cache = getattr(libcachesim, engine)(budget)
    miss_ratio, _byte_miss_ratio = cache.process_trace(reader)
    hits = (1.0 - miss_ratio) * reads
    assert hits == pytest.approx(round(hits), abs=1e-6)
    return round(hits)


@pytest.mark.parametrize(("seed", "alpha", "keys"), [(1, 0.8, 400), (2, 1.0, 1500), (3, 1.2, 200)])
def test_lru_and_lfu_hit_ratios_equal_libcachesims_on_the_same_requests(
    tmp_path: Path, seed: int, alpha: float, keys: int
) -> None:
    trace = zipf_trace(6000, keys, seed=seed, alpha=alpha, write_share=0.0, span_s=3600)
    sim = CacheSimulation(trace)
    path = tmp_path / "trace.oracleGeneral"
    reads = write_oracle(trace, path)
    assert reads == sim.overall.reads
    peak = sim.ttl_rows([NEVER])[CacheSimulation.OVERALL][0].peak_memory_bytes
    assert peak is not None
    budgets = [peak // 50, peak // 10, peak // 4, peak // 2, peak]
    rows = sim.memory_rows(
        CacheSimulation.OVERALL, NEVER, budgets, ["allkeys-lru", "allkeys-lfu"], exact=True
    )
    ratios = []
    for row in rows:
        engine = {"allkeys-lru": "LRU", "allkeys-lfu": "LFU"}[row.policy]
        want = libcachesim_hits(path, engine, row.budget_bytes, reads)
        assert round(row.hit_ratio * reads) == want, (row, want)
        assert row.hit_ratio == pytest.approx(want / reads, abs=1e-12)
        ratios.append(row.hit_ratio)
    # The budgets do evict: the smaller ones hit clearly less than the whole trace's size.
    assert ratios[0] < ratios[3] - 0.1
    assert ratios[5] < ratios[8] - 0.1


def reference_lru(trace: Trace, ttl: float, budget: int) -> float:
    """Exact LRU by Redis bytes, with expiry (``t < stored + ttl``) and writes deleting."""
    held: OrderedDict[str, tuple[float, int]] = OrderedDict()  # key -> (stored, bytes)
    used = hits = reads = 0
    for request in trace.requests():
        if request.op == Op.WRITE:
            for key in [k for k in held if resource_of(k) == resource_of(request.key)]:
                used -= held.pop(key)[1]
            continue
        if request.op != Op.READ:
            continue
        reads += 1
        key, t = request.key, request.time
        entry = held.get(key)
        if entry is not None and t >= entry[0] + ttl:  # expired: gone before this read
            used -= held.pop(key)[1]
            entry = None
        if entry is not None:
            hits += 1
            held.move_to_end(key)
            continue
        size = redis_bytes(request)
        if size > budget:
            continue  # never fits
        while used + size > budget:
            used -= held.popitem(last=False)[1][1]
        held[key] = (t, size)
        used += size
    return hits / reads if reads else 0.0


_rows = st.lists(
    st.tuples(
        st.integers(0, 60),  # time in seconds: ties happen
        st.sampled_from([Op.READ, Op.READ, Op.READ, Op.WRITE]),
        st.sampled_from(["/a/1", "/a/1?q=1", "/a/2", "/a/3", "/b/1", "/b/1?q=2", "/b/2"]),
    ),
    max_size=60,
)
#: Each key's value size (bytes): fixed per key, as a resource's response usually is.
_SIZES = {"/a/1": 100, "/a/1?q=1": 300, "/a/2": 40, "/a/3": 900, "/b/1": 10}


@settings(max_examples=200, deadline=None)
@given(
    rows=_rows,
    ttl=st.sampled_from([1.0, 5.0, 20.0, NEVER]),
    budget=st.sampled_from([150, 400, 700, 1200, 3000]),
)
def test_lru_with_expiry_and_invalidation_equals_a_plain_reference(
    rows: list[tuple[int, Op, str]], ttl: float, budget: int
) -> None:
    builder = TraceBuilder("h", "test")
    for line, (seconds, op, key) in enumerate(rows, 1):
        size = _SIZES.get(key, 200) if op == Op.READ else None
        builder.add(Request(START + seconds, line, op, key, "/" + key[1] + "/{id}", size=size))
    trace = builder.build()
    sim = CacheSimulation(trace)
    (row,) = sim.memory_rows(CacheSimulation.OVERALL, ttl, [budget], ["allkeys-lru"])
    assert row.hit_ratio == pytest.approx(reference_lru(trace, ttl, budget), abs=1e-12)


def test_with_room_for_everything_every_policy_is_the_ttl_only_replay() -> None:
    # Writes and expiry are applied by the eviction replay too: with a budget no trace fills,
    # each policy hits exactly where the TTL-only replay does, at every TTL.
    trace = zipf_trace(4000, 300, seed=5, span_s=1800, write_share=0.08)
    sim = CacheSimulation(trace)
    ttls = [2.0, 30.0, 300.0, NEVER]
    ttl_rows = sim.ttl_rows(ttls)
    for scope in (CacheSimulation.OVERALL, 0, 1):
        for ttl, ttl_row in zip(ttls, ttl_rows[scope], strict=True):
            rows = sim.memory_rows(scope, ttl, [10**12], POLICIES)
            assert [r.policy for r in rows] == list(POLICIES)
            for row in rows:
                assert row.hit_ratio == ttl_row.hit_ratio, (scope, ttl, row)
    # And expiry matters in the eviction replay: a short TTL hits less at the same budget.
    short, never = (
        sim.memory_rows(CacheSimulation.OVERALL, ttl, [200_000], ["allkeys-lru"])[0].hit_ratio
        for ttl in (30.0, NEVER)
    )
    assert short < never


def test_a_hand_worked_budget() -> None:
    # Entries of 100-byte values: the budget holds two of /a/1, /a/2, /a/3 (each 264 bytes).
    rows = [(0, "/a/1"), (1, "/a/2"), (2, "/a/1"), (3, "/a/3"), (4, "/a/2"), (5, "/a/1")]
    builder = TraceBuilder("h", "test")
    for line, (seconds, key) in enumerate(rows, 1):
        builder.add(Request(START + seconds, line, Op.READ, key, "/a/{id}", size=100))
    sim = CacheSimulation(builder.build())
    entry = 100 + ENTRY_OVERHEAD_BYTES + 4
    lru, lfu, fifo = sim.memory_rows(CacheSimulation.OVERALL, NEVER, [2 * entry], POLICIES)
    # LRU: /a/1 hits at 2; /a/3 evicts /a/2, which misses at 4 and evicts /a/1: 1 hit of 6.
    assert lru.hit_ratio == pytest.approx(1 / 6)
    # LFU: /a/1 (read twice) stays; /a/3 and /a/2 take turns: /a/1 hits at 2 and 5.
    assert lfu.hit_ratio == pytest.approx(2 / 6)
    # FIFO: /a/3 evicts /a/1 (stored first), /a/2 hits at 4, /a/1 misses at 5: 2 hits.
    assert fifo.hit_ratio == pytest.approx(2 / 6)


def test_a_value_larger_than_the_budget_misses_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    # /big never fits (Redis refuses it under maxmemory): each of its reads misses, the small
    # key still hits, and libCacheSim is not asked, so nothing is printed to stderr.
    rows = [(0, "/a/big", 50_000), (1, "/a/1", 100), (2, "/a/big", 50_000), (3, "/a/1", 100)]
    builder = TraceBuilder("h", "test")
    for line, (seconds, key, size) in enumerate(rows, 1):
        builder.add(Request(START + seconds, line, Op.READ, key, "/a/{id}", size=size))
    sim = CacheSimulation(builder.build())
    for row in sim.memory_rows(CacheSimulation.OVERALL, NEVER, [2_000], POLICIES):
        assert row.hit_ratio == pytest.approx(1 / 4), row
    assert capfd.readouterr().err == ""


def test_sampling_keeps_the_hit_ratio_within_a_point_on_a_large_trace() -> None:
    trace = zipf_trace(3 * EXACT_READS, 30_000, seed=9, alpha=0.9, write_share=0.02)
    sim = CacheSimulation(trace)
    assert sim.overall.reads > EXACT_READS  # so the default replay samples keys
    peak = sim.ttl_rows([600.0])[CacheSimulation.OVERALL][0].peak_memory_bytes
    assert peak is not None
    budgets = [peak // 20, peak // 5]
    sampled = sim.memory_rows(CacheSimulation.OVERALL, 600.0, budgets, ["allkeys-lru"])
    exact = sim.memory_rows(CacheSimulation.OVERALL, 600.0, budgets, ["allkeys-lru"], exact=True)
    for s, e in zip(sampled, exact, strict=True):
        assert abs(s.hit_ratio - e.hit_ratio) <= 0.01, (s, e)
    assert exact[0].hit_ratio < exact[1].hit_ratio - 0.05  # the budgets evict, differently


def test_a_bad_policy_is_refused_before_any_replay() -> None:
    sim = CacheSimulation(zipf_trace(50, 5, seed=1))
    with pytest.raises(ValueError, match="policy must be one of allkeys-lru"):
        sim.memory_rows(CacheSimulation.OVERALL, 60.0, [1000], ["allkeys-lru", "noeviction"])
