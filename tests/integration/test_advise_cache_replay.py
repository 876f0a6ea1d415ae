"""The cache strategist's simulation equals reality: traces replayed through the real cache.

Issue 14's proof. A trace's reads go through ``Cache.get_or_set`` (``AsyncCache`` in async
mode) on a real Redis, standalone and cluster, and its writes delete the resource's keys; a
read is a miss exactly when its loader ran. Under a :class:`VirtualClock` the cache's entries
expire by the trace's time, read for read as :meth:`CacheSimulation.read_hits` says. The TTLs
are minutes long in real time too, so Redis's own expiry never comes first.

With ``maxmemory`` and ``allkeys-lru`` a real Redis evicts, and its measured hit ratio is within
two points of what :meth:`CacheSimulation.memory_rows` predicts at the same budget (the replay
paced over 20 s, since Redis's LRU clock ticks in whole seconds; ``maxmemory-samples`` 10).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from redkit.advise.cache_sim import ENTRY_OVERHEAD_BYTES, CacheSimulation, resource_of
from redkit.advise.trace import Op, Trace
from redkit.cache import AsyncCache, Cache
from redkit.core.clock import ServerClock, VirtualClock
from redkit.core.errors import InvalidArgumentError
from redkit.drivers.embedded import EmbeddedRedis
from support.backends import BackendCase, Blocking
from support.cache_traces import zipf_trace


def test_a_cache_on_a_virtual_clock_expires_its_entries_by_that_clock(backend: BackendCase) -> None:
    facade = AsyncCache if backend.is_async else Cache
    for bad in ("server", ServerClock(), 5):
        with pytest.raises(InvalidArgumentError, match="clock must be a local clock"):
            facade(backend.conn, clock=bad)
    clock = VirtualClock()
    cache = Blocking(
        facade(backend.conn, namespace="v", default_ttl=60, early_refresh=None, clock=clock),
        backend,
    )
    assert cache.get_or_set("k", lambda: 1) == 1
    clock.advance(59_999)
    assert cache.get_or_set("k", lambda: 2) == 1  # fresh for one more millisecond
    clock.advance(1)
    assert cache.get("k") is None  # expired by the clock while Redis still holds it
    assert cache.ttl("k") is not None
    assert cache.get_or_set("k", lambda: 3) == 3
    assert (cache.stats.hits, cache.stats.misses) == (1, 3)


def replay(
    backend: BackendCase, trace: Trace, ttl_s: float, namespace: str
) -> tuple[list[bool], Any]:
    """Each read's outcome in the real cache (``True``: a hit, its loader did not run)."""
    clock = VirtualClock(trace.start * 1000)
    facade = AsyncCache if backend.is_async else Cache
    # TTL-only: no early refresh, no stale window, no local tier (the defaults of the last two).
    cache = Blocking(
        facade(
            backend.conn, namespace=namespace, default_ttl=ttl_s, early_refresh=None,
            stale_ttl=None, clock=clock,
        ),
        backend,
    )  # fmt: skip
    keys_of: dict[str, set[str]] = {}  # resource -> the keys of it the app has cached
    outcomes: list[bool] = []
    for request in trace.requests():
        clock.set(request.time * 1000)  # whole seconds: exact in epoch ms
        if request.op == Op.WRITE:
            held = keys_of.get(resource_of(request.key))
            if held:
                cache.delete(*sorted(held))
        elif request.op == Op.READ:
            loads: list[str] = []

            def load(key: str = request.key, loads: list[str] = loads) -> str:
                loads.append(key)
                return "value of " + key

            assert cache.get_or_set(request.key, load) == "value of " + request.key
            assert len(loads) <= 1
            outcomes.append(not loads)
            keys_of.setdefault(resource_of(request.key), set()).add(request.key)
    return outcomes, cache.stats


def test_the_real_cache_hits_and_misses_read_for_read_as_simulated(backend: BackendCase) -> None:
    # Six hours of Zipf traffic over 150 resources with writes: TTLs of 5 and 30 minutes
    # expire many entries in virtual time and none in the seconds the replay takes.
    trace = zipf_trace(1200, 150, seed=14, span_s=6 * 3600, write_share=0.06, whole_seconds=True)
    sim = CacheSimulation(trace)
    unbounded = sim.read_hits(1e12)
    for ttl_s in (300.0, 1800.0):
        expected = sim.read_hits(ttl_s)
        # The trace must exercise expiry: some reads miss only because their entry expired.
        assert expected != unbounded
        assert 0.2 < sum(expected) / len(expected) < 0.9
        outcomes, stats = replay(backend, trace, ttl_s, namespace=f"replay{int(ttl_s)}")
        assert len(outcomes) == len(expected)
        wrong = [i for i, (a, b) in enumerate(zip(outcomes, expected, strict=True)) if a != b]
        assert not wrong, f"reads {wrong[:10]} differ at ttl {ttl_s}"
        assert (stats.hits, stats.misses) == (sum(expected), len(expected) - sum(expected))


#: The real seconds the maxmemory replay takes: Redis's LRU clock ticks in whole seconds, so a
#: replay squeezed into one or two leaves its sampling only ties to choose among.
PACE_S = 20.0
#: Entries stored to weigh the server's bytes against the model's (see _server_bytes_per_byte).
CALIBRATION_ENTRIES = 1000


def _server_bytes_per_byte(cache: Cache, admin: Any, trace: Trace) -> float:
    """This server's memory for an entry over the model's, on entries of the trace's own sizes.

    The model counts a value, its key and :data:`ENTRY_OVERHEAD_BYTES` (Redis 6.2 with libc's
    malloc); a jemalloc build (Debian's Redis 7) or Valkey spends other bytes on the same
    entries. The budget handed to ``maxmemory`` is the model's scaled by this, so the test
    weighs the eviction model, not the allocator. The entries are deleted again.
    """
    sizes: dict[str, int] = {}
    for request in trace.requests():
        assert request.size is not None
        sizes.setdefault(request.key, request.size)
        if len(sizes) == CALIBRATION_ENTRIES:
            break
    before = int(admin.info("memory")["used_memory"])
    for key, size in sizes.items():
        cache.set(key, "x" * (size - 2))
    taken = int(admin.info("memory")["used_memory"]) - before
    assert cache.delete(*sizes) == len(sizes)
    modelled = sum(size + ENTRY_OVERHEAD_BYTES + len(key.encode()) for key, size in sizes.items())
    return taken / modelled


@pytest.mark.slow
def test_with_maxmemory_and_allkeys_lru_the_hit_ratio_is_within_two_points_of_the_model() -> None:
    # An hour of Zipf traffic (no writes, no expiry within it) with response sizes.
    trace = zipf_trace(4000, 1000, seed=1, alpha=0.9, write_share=0.0, query_share=0.0)
    sim = CacheSimulation(trace)
    ttl_s = 86400.0
    (unbounded,) = sim.ttl_rows([ttl_s])[CacheSimulation.OVERALL]
    assert unbounded.peak_memory_bytes is not None
    budget = int(unbounded.peak_memory_bytes * 0.3)
    (predicted,) = sim.memory_rows(
        CacheSimulation.OVERALL, ttl_s, [budget], ["allkeys-lru"], exact=True
    )
    with EmbeddedRedis() as server, server.client() as admin:
        conn = server.connect()
        try:
            # No lease: its keys (and the write fences) are not entries and would take memory.
            cache = Cache(conn, default_ttl=ttl_s, early_refresh=None, lease=None)
            cache.get("warm-up")  # the connection and the namespace read: part of the baseline
            scale = _server_bytes_per_byte(cache, admin, trace)
            baseline = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory", baseline + int(budget * scale))
            admin.config_set("maxmemory-policy", "allkeys-lru")
            admin.config_set("maxmemory-samples", 10)  # Redis's default is 5
            hits = reads = 0
            began = time.monotonic()
            for request in trace.requests():
                due = began + (request.time - trace.start) / trace.duration * PACE_S
                time.sleep(max(0.0, due - time.monotonic()))
                assert request.op == Op.READ
                assert request.size is not None
                loads: list[int] = []
                # A JSON string of the recorded size: the value Redis holds is that many bytes.
                value = "x" * (request.size - 2)
                cache.get_or_set(request.key, lambda v=value, n=loads: n.append(1) or v)
                reads += 1
                hits += not loads
            evicted = int(admin.info("stats")["evicted_keys"])
        finally:
            conn.close()
    measured = hits / reads
    print(
        f"allkeys-lru at {budget} B (x {scale:.3f} on this server): measured {measured:.4f}, "
        f"predicted {predicted.hit_ratio:.4f}"
    )
    assert evicted > 500  # the budget does evict, a lot
    assert measured < unbounded.hit_ratio - 0.1
    assert abs(measured - predicted.hit_ratio) <= 0.02
