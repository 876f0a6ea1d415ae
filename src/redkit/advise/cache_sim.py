"""What a cache would have done with a trace: TTL-only replay, and eviction under a memory budget.

**TTL-only cache-aside** (issue 14, "exact semantics"). Per key, in time order (the trace's
stable order breaks ties of time): a read at ``t`` is a **hit** when the key was stored at
``s`` (its last miss), ``t < s + ttl``, and no write to its resource came after that miss;
otherwise it is a **miss**, which stores the key at ``t``. A write to a resource (an HTTP
``POST`` to ``/a/1``) invalidates every key of that resource (``/a/1``, ``/a/1?page=2``): the
resource of a key is the key without its query (:func:`resource_of`). Memory is unbounded
here; :class:`CacheSimulation.memory_rows` adds eviction.

Per TTL and per namespace (and overall) a :class:`TtlRow` reports:

- ``hits``, ``misses``, ``hit_ratio`` (hits over reads) and ``origin_load_per_s``: misses per
  second of the trace (its duration, 1 s when it has none), the load left for the origin;
- ``stale_hit_share``: under the semantics above a write deletes the entry, so no hit is ever
  stale. What the share measures is the **other** cache, one that is *not* told of writes
  (pure TTL: a write changes nothing in it): the share of *its* hits served after the
  resource was written since the value was stored. That is what invalidation buys, and what
  a TTL alone risks. It is ``None`` when no write to the namespace's resources appears in the
  trace (``writes_seen`` false): staleness then cannot be measured from the trace;
- ``peak_bytes``: the most bytes of values held at once (an entry lives from its miss to its
  expiry or to the first write to its resource), from the sizes the log records (a read
  without one counts as its namespace's mean size); ``None`` when the log records no sizes;
- ``coalesced``: reads less than ``loader_ms`` after a miss of the same key. The replay stores
  a value the moment it misses; a real loader takes time, so these reads would find the value
  still loading. Without single flight each would load again: the count is what single flight
  (and redkit's cross-process lease) saves.

**Refresh** (:meth:`CacheSimulation.refresh`), for one TTL. Both count reads that would have
waited for a load and are answered at once instead:

- ``stale_ttl``: redkit keeps an entry ``stale_ttl`` past its TTL and serves it while one
  caller reloads it in the background (invalidated entries are deleted, never served). So a
  miss at most ``stale_ttl`` after the key's expiry (no write since) is served at once, and so
  are the reads that would have waited on its load (its coalesced reads). The background
  reload stores the value at the same moment the miss would have, so the rest of the replay
  is unchanged: this is exact, for a loader that takes ``loader_ms``.
- ``early_refresh`` (XFetch, as :class:`redkit.Cache` does it): a read at ``t`` of an entry
  fresh until ``e`` reloads it early with probability ``exp(-(e - t) / (delta * beta))``, with
  ``delta`` the load time (``loader_ms``) and ``beta`` the ``early_refresh`` factor. redkit
  reloads in the read that draws the refresh, so that read pays the load the expiry miss
  would have paid: what XFetch saves is the reads piled up behind the expiry miss (its
  coalesced reads). The model: for each miss at an expiry, ``P`` = the probability that some
  read of the entry's life drew a refresh; ``early_refresh_hits`` is the sum over those
  misses of ``P`` times their coalesced reads (an expectation, rounded; it ignores that an
  early reload shifts the entry's next expiry a little earlier). It is near zero unless keys
  are read many times per load time, which is when XFetch matters.

**Eviction** (:meth:`CacheSimulation.memory_rows`): the same replay with a memory budget, the
eviction engines of libCacheSim (the ``advise`` extra): ``allkeys-lru`` is its exact LRU,
``allkeys-lfu`` its exact LFU, ``volatile-ttl`` its FIFO. Redis evicts by sampling
(``maxmemory-samples``, 5 by default, with an eviction pool, on an LRU clock of whole
seconds): exact LRU is what Redis's ``allkeys-lru`` comes close to (within a point, measured,
when the entries held span many seconds of idle time; a replay squeezed into a few seconds
leaves Redis only ties to choose from, and a couple of points lower); Redis's LFU counts in a
logarithmic, decaying 8-bit counter where libCacheSim's counts exactly. ``volatile-ttl`` evicts
the key with the shortest time left; in a cache whose entries all take the same TTL that is
the one stored first, so FIFO (by store time: a hit does not move an entry) is exact for it.
Expiry and invalidation are applied here, not by libCacheSim (whose build on PyPI ignores
``ttl`` on requests): an entry leaves the cache at its expiry (Redis's active expiry reclaims
expired keys soon after they expire) or at a write to its resource. Sizes are bytes of Redis
memory: the value and :data:`ENTRY_OVERHEAD_BYTES` plus the key's length per entry (measured
with ``INFO memory`` on Redis 6.2 with libc's malloc: key, envelope, dict entries, allocator
rounding; a jemalloc build, as Debian's Redis 7.0, takes about 10% more, docs/servers.md).
Traces of more than :data:`EXACT_READS` reads are sampled by key (SHARDS, Waldspurger et al.,
FAST 2015: keep the keys whose hash falls under a rate, scale the budget by it, and count out
of the hits the reads the sample holds beyond its expected share, "SHARDS-adj": on Zipf traffic
whether the few hottest keys fall in the sample otherwise swings the ratio by ten points),
which keeps the hit ratio within about a point on large traces at a fraction of the time.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress, count, repeat
from operator import add, and_, or_
from typing import Any

from redkit.advise.templates import resource_of
from redkit.advise.trace import Op, Trace

__all__ = [
    "DEFAULT_TTLS",
    "ENTRY_OVERHEAD_BYTES",
    "EXACT_READS",
    "POLICIES",
    "CacheSimulation",
    "MemoryRow",
    "RefreshRow",
    "ScopeStats",
    "TtlRow",
    "resource_of",
]

#: The TTLs every analysis tries (seconds): 1, 5, 15, 30 s, 1, 2, 5, 10, 30 min, 1, 6 h, 1 d.
DEFAULT_TTLS: tuple[float, ...] = (
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0,
)  # fmt: skip
#: Redis memory per cache entry beyond its value and its key (bytes): redkit's envelope
#: (38), the namespace prefix, the key object, dict and expiry entries, allocator rounding.
ENTRY_OVERHEAD_BYTES = 160
#: Reads of one scope above which the eviction replay samples keys (see the module's text).
EXACT_READS = 200_000
#: Redis's eviction policies modelled, in the order reported.
POLICIES: tuple[str, ...] = ("allkeys-lru", "allkeys-lfu", "volatile-ttl")
_ENGINES = {"allkeys-lru": "LRU", "allkeys-lfu": "LFU", "volatile-ttl": "FIFO"}
#: XFetch draws farther than this many ``delta * beta`` from expiry are ignored (p < 1e-13).
_XFETCH_REACH = 30.0
_INF = math.inf
_READ, _WRITE = int(Op.READ), int(Op.WRITE)


@dataclass(frozen=True)
class TtlRow:
    """The TTL-only replay at one TTL (see the module's text for each field)."""

    ttl_s: float
    hits: int
    misses: int
    hit_ratio: float
    origin_load_per_s: float
    stale_hit_share: float | None
    peak_bytes: int | None
    coalesced: int
    #: The most Redis memory the entries took at once (values and per-entry overhead).
    peak_memory_bytes: int | None = None


@dataclass(frozen=True)
class MemoryRow:
    """The hit ratio of the replay at one TTL with a memory budget and an eviction policy."""

    budget_bytes: int
    policy: str
    ttl_s: float
    hit_ratio: float


@dataclass(frozen=True)
class RefreshRow:
    """What ``early_refresh`` and ``stale_ttl`` would answer at once, at one TTL."""

    ttl_s: float
    early_refresh_hits: int
    stale_ttl_s: float | None
    stale_ttl_hits: int
    #: Of ``stale_ttl_hits``, the misses themselves (the rest were waiting on their loads).
    stale_ttl_misses: int
    #: The most Redis memory held when entries are kept ``stale_ttl`` past their TTL.
    peak_memory_bytes: int | None


@dataclass(frozen=True)
class ScopeStats:
    """The counts of one namespace (or of the whole trace)."""

    name: str
    requests: int
    reads: int
    writes: int
    keys: int
    mean_bytes: float | None
    #: Whether a write to one of the scope's resources appears in the trace.
    writes_seen: bool


@dataclass
class _Segment:
    """A run of flat positions: the reads of some keys of one namespace, key after key."""

    scope: int
    start: int
    stop: int
    written: bool  # its keys' resources are written in the trace


def _hashed_in(key: int, rate: float) -> bool:
    # Fibonacci hashing: key ids come in order of arrival, their high product bits do not.
    # Id 0 would hash to 0, always in: the first key to arrive, often the hottest, is not.
    return (((key + 1) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) >> 40 < rate * (1 << 24)


def _libcachesim() -> Any:
    try:
        import libcachesim  # type: ignore[import-untyped]
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the eviction replay needs libCacheSim ({exc}): pip install 'redkit[advise]'",
            name=exc.name,
        ) from exc
    return libcachesim


def _numpy() -> Any:
    try:
        import numpy
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"the cache replay needs numpy ({exc}): pip install 'redkit[advise]'", name=exc.name
        ) from exc
    return numpy


class CacheSimulation:
    """A trace prepared once for every cache replay (TTLs, refresh, eviction).

    ``namespaces`` keeps only those namespaces' reads and writes (``None``: all). Each key
    belongs to the namespace of its first read. Scopes are numbered: ``0 .. len(names) - 1``
    the namespaces (most read first), :attr:`OVERALL` all of them together.
    """

    OVERALL = -1

    def __init__(self, trace: Trace, *, namespaces: Iterable[str] | None = None) -> None:
        self.duration = trace.duration
        self.start = trace.start if len(trace) else 0.0
        wanted = None if namespaces is None else set(namespaces)
        ns_names = trace.namespace_names
        n_ns = len(ns_names)
        keep = [wanted is None or name in wanted for name in ns_names.values]
        times = trace.times.tolist()
        ops = trace.ops.tolist()
        keys = trace.keys.tolist()
        nss = trace.namespaces.tolist()
        key_names = trace.key_names.values
        resources: dict[str, int] = {}
        key_res = [resources.setdefault(resource_of(k), len(resources)) for k in key_names]
        n_res = len(resources)

        # The reads and the writes as columns, with C-speed passes (a million rows each).
        is_read = [op == _READ for op in ops]
        is_write = [op == _WRITE for op in ops]
        if wanted is not None:
            kept = [keep[ns] for ns in nss]
            is_read = list(map(and_, is_read, kept))
            is_write = list(map(and_, is_write, kept))
        rt = list(compress(times, is_read))
        rk = list(compress(keys, is_read))
        rns = list(compress(nss, is_read))
        rz = list(compress(trace.sizes.tolist(), is_read))
        ri = list(compress(range(len(times)), is_read))
        wt = list(compress(times, is_write))
        wres = [key_res[k] for k in compress(keys, is_write)]
        wi = list(compress(range(len(times)), is_write))
        # Reads (their rank, >= 0) and writes (~ their rank), in time order.
        self._events = [
            reads - 1 if read else ~(writes - 1)
            for read, reads, writes in compress(
                zip(is_read, accumulate(is_read), accumulate(is_write), strict=False),
                map(or_, is_read, is_write),
            )
        ]
        requests = Counter(ns for ns in nss if keep[ns])
        writes_of = Counter(compress(nss, is_write))
        first_ns = dict(zip(reversed(rk), reversed(rns), strict=False))  # the first read's wins
        key_ns = [first_ns.get(k, -1) for k in range(len(key_names))]
        written = bytearray(n_res)
        res_writes: dict[int, list[int]] = {}  # resource -> trace indices of its writes
        for res, i in zip(wres, wi, strict=False):
            written[res] = 1
            res_writes.setdefault(res, []).append(i)
        self._rt, self._rk, self._wt, self._wres = rt, rk, wt, wres
        self._key_res, self._key_ns = key_res, key_ns
        self._key_written = bytes(written[r] for r in key_res)

        # Scopes: namespaces with reads or writes, most read first.
        reads = [0] * n_ns
        known_bytes = [0] * n_ns
        known_count = [0] * n_ns
        for k, z in zip(rk, rz, strict=False):
            ns = key_ns[k]
            reads[ns] += 1
            if z >= 0:
                known_bytes[ns] += z
                known_count[ns] += 1
        ns_keys = [0] * n_ns
        ns_written = [False] * n_ns
        for k, ns in enumerate(key_ns):
            if ns >= 0:
                ns_keys[ns] += 1
                ns_written[ns] = ns_written[ns] or bool(written[key_res[k]])
        order = sorted(
            (ns for ns in range(n_ns) if keep[ns] and (requests[ns] or reads[ns])),
            key=lambda ns: (-reads[ns], ns_names[ns] or ""),
        )
        scope_of_ns = [-1] * n_ns
        for scope, ns in enumerate(order):
            scope_of_ns[ns] = scope

        def mean(total: int, number: int) -> float | None:
            return total / number if number else None

        self.scopes: list[ScopeStats] = [
            ScopeStats(
                name=ns_names[ns] or "",
                requests=requests[ns],
                reads=reads[ns],
                writes=writes_of[ns],
                keys=ns_keys[ns],
                mean_bytes=mean(known_bytes[ns], known_count[ns]),
                writes_seen=ns_written[ns],
            )
            for ns in order
        ]
        self.overall = ScopeStats(
            name="(all)", requests=sum(requests.values()), reads=len(rt), writes=len(wt),
            keys=sum(ns_keys), mean_bytes=mean(sum(known_bytes), sum(known_count)),
            writes_seen=any(ns_written[ns] for ns in order),
        )  # fmt: skip
        self.has_sizes = any(known_count)
        # Each read's size in bytes (an unknown one: its namespace's mean), and in Redis bytes.
        self._key_scope = [-1 if ns < 0 else scope_of_ns[ns] for ns in key_ns]
        means = [round(s.mean_bytes) if s.mean_bytes is not None else 0 for s in self.scopes]
        key_scope = self._key_scope
        self._rz = [z if z >= 0 else means[key_scope[k]] for k, z in zip(rk, rz, strict=False)]
        self._key_overhead = [ENTRY_OVERHEAD_BYTES + len(name.encode()) for name in key_names]
        overhead = self._key_overhead
        self._rm = [z + overhead[k] for k, z in zip(rk, self._rz, strict=False)]
        self._next_write: list[float] | None = None
        self._np_reads: tuple[Any, Any, Any] | None = None
        self._np_next_write: Any = None
        self._build_flat(ri, res_writes)

    # -- preparation ---------------------------------------------------------------------

    def _build_flat(self, ri: list[int], res_writes: dict[int, list[int]]) -> None:
        """The reads key after key (keys grouped by scope, written ones apart), with bars.

        A read's *bar* is the flat position of the first read of its key that came after the
        last write to its resource before it: a hit needs the key's last miss at or after its
        bar. The first read of a key has itself as bar, so nothing of another key counts.
        """
        rk, key_scope, key_written = self._rk, self._key_scope, self._key_written
        n_keys = len(key_scope)
        # Keys by scope, unwritten then written, then by number: a segment is keys whole.
        rank = [(2 * key_scope[k] + key_written[k]) * n_keys + k for k in range(n_keys)]
        order = sorted(range(len(rk)), key=[rank[k] for k in rk].__getitem__)  # stable
        reads_of = Counter(rk)
        key_order = sorted(reads_of, key=rank.__getitem__)
        starts: list[int] = []  # per read, the flat position of its key's first read
        segments: list[_Segment] = []
        written_keys: list[tuple[int, int, int]] = []  # (key, first position, reads)
        position = 0
        for k in key_order:
            number = reads_of[k]
            starts.extend(repeat(position, number))
            scope, is_written = key_scope[k], bool(key_written[k])
            if segments and segments[-1].scope == scope and segments[-1].written == is_written:
                segments[-1].stop = position + number
            else:
                segments.append(_Segment(scope, position, position + number, is_written))
            if is_written:
                written_keys.append((k, position, number))
            position += number
        bars = starts.copy()
        key_res = self._key_res
        for k, first, number in written_keys:
            writes = res_writes[key_res[k]]  # trace indices, in order
            before = [-1, *writes]  # before[j]: the j-th write (-1: none yet)
            indices = list(map(ri.__getitem__, order[first : first + number]))
            # Per read: the last write before it, then the first read of the key after that.
            last_writes = map(before.__getitem__, map(bisect_left, repeat(writes), indices))
            bars[first : first + number] = map(
                add, repeat(first), map(bisect_right, repeat(indices), last_writes)
            )
        self._order = order
        self._flat_t = list(map(self._rt.__getitem__, order))
        self._bars, self._starts, self._segments = bars, starts, segments

    def _next_writes(self) -> list[float]:
        """Per read, the time of the next write to its resource after it (inf: none)."""
        if self._next_write is None:
            rk, key_res, wt, wres = self._rk, self._key_res, self._wt, self._wres
            following = [_INF] * len(self._key_written)
            out = [_INF] * len(rk)
            for e in reversed(self._events):
                if e >= 0:
                    out[e] = following[key_res[rk[e]]]
                else:
                    following[wres[~e]] = wt[~e]
            self._next_write = out
        return self._next_write

    def _per_second(self, misses: int) -> float:
        return misses / (self.duration if self.duration > 0 else 1.0)

    def stats(self, scope: int) -> ScopeStats:
        """The counts of ``scope`` (:attr:`OVERALL` or a namespace's number)."""
        return self.overall if scope == self.OVERALL else self.scopes[scope]

    # -- TTL-only replay -----------------------------------------------------------------

    def ttl_rows(self, ttls: Sequence[float], *, loader_s: float = 0.05) -> dict[int, list[TtlRow]]:
        """The TTL-only replay at each TTL, per scope (and :attr:`OVERALL`), in ``ttls`` order."""
        n_scopes = len(self.scopes)
        rows: dict[int, list[TtlRow]] = {s: [] for s in (self.OVERALL, *range(n_scopes))}
        for ttl in ttls:
            hits = [0] * n_scopes
            coalesced = [0] * n_scopes
            pure_hits = [0] * n_scopes  # hits of the cache not told of writes
            stale = [0] * n_scopes
            stores: dict[int, list[int]] | None = {} if self.has_sizes else None
            for seg in self._segments:
                misses = None if stores is None else stores.setdefault(seg.scope, [])
                h, c = self._replay(seg, ttl, loader_s, misses)
                hits[seg.scope] += h
                coalesced[seg.scope] += c
                if seg.written:
                    ph, st = self._replay_uninformed(seg, ttl)
                    pure_hits[seg.scope] += ph
                    stale[seg.scope] += st
                else:
                    pure_hits[seg.scope] += h
            peaks = self._peaks(stores, ttl) if stores is not None else None
            for scope in (self.OVERALL, *range(n_scopes)):
                stats = self.stats(scope)
                if scope == self.OVERALL:
                    h, c, ph, st = sum(hits), sum(coalesced), sum(pure_hits), sum(stale)
                else:
                    h, c, ph = hits[scope], coalesced[scope], pure_hits[scope]
                    st = stale[scope]
                missed = stats.reads - h
                peak = memory = None
                if peaks is not None and (scope == self.OVERALL or stats.mean_bytes is not None):
                    peak, memory = peaks[scope]
                rows[scope].append(
                    TtlRow(
                        ttl_s=float(ttl),
                        hits=h,
                        misses=missed,
                        hit_ratio=h / stats.reads if stats.reads else 0.0,
                        origin_load_per_s=self._per_second(missed),
                        stale_hit_share=(st / ph if ph else 0.0) if stats.writes_seen else None,
                        peak_bytes=peak,
                        coalesced=c,
                        peak_memory_bytes=memory,
                    )
                )
        return rows

    def _replay(
        self, seg: _Segment, ttl: float, loader_s: float, misses: list[int] | None
    ) -> tuple[int, int]:
        """Hits and coalesced reads of one segment; each miss's read rank goes to ``misses``."""
        a, b = seg.start, seg.stop
        hits = coalesced = 0
        last = -1  # flat position of the key's last miss
        end = loader_end = -_INF
        # The hot loop of the analysis: locals only, one comparison per read on a hit.
        if misses is None:
            for p, t, bar in zip(count(a), self._flat_t[a:b], self._bars[a:b]):
                if last >= bar and t < end:
                    hits += 1
                    if t < loader_end:
                        coalesced += 1
                else:
                    last, end, loader_end = p, t + ttl, t + loader_s
        else:
            store = misses.append
            for p, t, bar, r in zip(count(a), self._flat_t[a:b], self._bars[a:b], self._order[a:b]):
                if last >= bar and t < end:
                    hits += 1
                    if t < loader_end:
                        coalesced += 1
                else:
                    last, end, loader_end = p, t + ttl, t + loader_s
                    store(r)
        return hits, coalesced

    def read_hits(self, ttl: float) -> list[bool]:
        """Per read, in time order (the kept namespaces' reads only): whether it hits at ``ttl``.

        The decisions :meth:`ttl_rows` counts, one by one: what a real cache replaying the
        trace must do read for read (``True`` a hit, ``False`` a miss that loads and stores).
        """
        if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        flags = [False] * len(self._rt)
        for seg in self._segments:
            a, b = seg.start, seg.stop
            last = -1
            end = -_INF
            for p, t, bar, r in zip(count(a), self._flat_t[a:b], self._bars[a:b], self._order[a:b]):
                if last >= bar and t < end:
                    flags[r] = True
                else:
                    last, end = p, t + ttl
        return flags

    def _replay_uninformed(self, seg: _Segment, ttl: float) -> tuple[int, int]:
        """Hits, and stale hits, of a cache that is not told of writes (pure TTL)."""
        a, b = seg.start, seg.stop
        hits = stale = 0
        last = -1
        end = -_INF
        for p, t, bar, first in zip(
            count(a), self._flat_t[a:b], self._bars[a:b], self._starts[a:b]
        ):
            if last >= first and t < end:
                hits += 1
                if last < bar:  # the resource was written after the value was stored
                    stale += 1
            else:
                last, end = p, t + ttl
        return hits, stale

    def _peaks(self, stores: dict[int, list[int]], retention: float) -> dict[int, tuple[int, int]]:
        """Per scope: the most value bytes, and Redis bytes, held at once.

        ``stores`` holds per scope the ranks of the reads that stored a value; each entry lives
        ``retention`` seconds or until the next write to its resource (an entry written away
        the instant it is stored is never held).
        """
        result = {scope: self._peak(ranks, retention) for scope, ranks in stores.items() if ranks}
        result[self.OVERALL] = self._peak(list(chain.from_iterable(stores.values())), retention)
        for scope in range(len(self.scopes)):
            result.setdefault(scope, (0, 0))
        return result

    def _peak(self, ranks: list[int], retention: float) -> tuple[int, int]:
        """The most value bytes, and Redis bytes, that the entries stored at ``ranks`` held.

        At the start ``t`` of entry ``j`` (in time order) the entries held are those started
        up to ``j`` less those ended by ``t``: a prefix sum less the sizes of the ends up to
        ``t``, in whole-array passes (numpy, which the ``advise`` extra's libraries need).
        """
        if not ranks:
            return 0, 0
        np = _numpy()
        rt, rz, rm = self._arrays()
        at = np.sort(np.asarray(ranks, dtype=np.int64))
        starts = rt[at]
        ends = starts + retention
        sizes, memory = rz[at], rm[at]
        by_end = None  # a fixed lifetime: ends come in the order of starts
        if self._wt:
            ends = np.minimum(ends, self._next_write_array()[at])
            held = starts < ends
            if not held.all():  # written away at once: never held
                starts, ends, sizes, memory = starts[held], ends[held], sizes[held], memory[held]
            by_end = np.argsort(ends, kind="stable")
            ends = ends[by_end]
        ended = np.searchsorted(ends, starts, side="right")  # ends up to each start
        peaks = []
        for column in (sizes, memory):
            if not len(column):
                peaks.append(0)
                continue
            gone = np.concatenate(([0], np.cumsum(column if by_end is None else column[by_end])))
            peaks.append(int((np.cumsum(column) - gone[ended]).max()))
        return peaks[0], peaks[1]

    def _arrays(self) -> tuple[Any, Any, Any]:
        """Each read's time, value bytes and Redis bytes, as numpy arrays (made once)."""
        if self._np_reads is None:
            np = _numpy()
            self._np_reads = (
                np.asarray(self._rt, dtype=np.float64),
                np.asarray(self._rz, dtype=np.int64),
                np.asarray(self._rm, dtype=np.int64),
            )
        return self._np_reads

    def _next_write_array(self) -> Any:
        if self._np_next_write is None:
            np = _numpy()
            self._np_next_write = np.asarray(self._next_writes(), dtype=np.float64)
        return self._np_next_write

    # -- refresh -------------------------------------------------------------------------

    def refresh(
        self,
        ttl: float,
        stale_ttl: float | None,
        *,
        loader_s: float = 0.05,
        beta: float = 1.0,
        scopes: Iterable[int] | None = None,
    ) -> dict[int, RefreshRow]:
        """What ``early_refresh`` (XFetch, factor ``beta``) and ``stale_ttl`` answer at once.

        Per scope (those of ``scopes``, or all, and :attr:`OVERALL`); see the module's text.
        """
        wanted = set(range(len(self.scopes)) if scopes is None else scopes)
        n = len(self.scopes)
        early = [0.0] * n
        stale_hits = [0] * n
        stale_misses = [0] * n
        stores: dict[int, list[int]] | None = {} if self.has_sizes else None
        window = stale_ttl or 0.0
        delta = loader_s * beta
        reach = _XFETCH_REACH * delta
        log1p, exp = math.log1p, math.exp
        for seg in self._segments:
            a, b = seg.start, seg.stop
            misses = None if stores is None else stores.setdefault(seg.scope, [])
            last = -1
            end = loader_end = -_INF
            survive = 0.0  # log of the chance that no read of the entry drew a refresh
            chance = 0.0  # that chance's complement, for the miss that started the entry
            from_stale = False  # the entry's miss was served stale
            e_sum = 0.0
            s_hits = s_misses = 0
            for p, t, bar, r in zip(count(a), self._flat_t[a:b], self._bars[a:b], self._order[a:b]):
                if last >= bar and t < end:
                    if t < loader_end:  # waits on the entry's load, unless that was spared
                        e_sum += chance
                        if from_stale:
                            s_hits += 1
                    elif delta > 0 and end - t < reach:
                        drawn = exp(-(end - t) / delta)  # this read's chance to refresh
                        survive = survive + log1p(-drawn) if drawn < 1.0 else -_INF
                    continue
                expired = last >= bar  # same key, no write since: it missed at its expiry
                chance = 1.0 - exp(survive) if expired and delta > 0 else 0.0
                from_stale = expired and t < end + window
                if from_stale:
                    s_misses += 1
                    s_hits += 1
                last, end, loader_end, survive = p, t + ttl, t + loader_s, 0.0
                if misses is not None:
                    misses.append(r)
            early[seg.scope] += e_sum
            stale_hits[seg.scope] += s_hits
            stale_misses[seg.scope] += s_misses
        peaks = self._peaks(stores, ttl + window) if stores is not None else None
        out: dict[int, RefreshRow] = {}
        for scope in (self.OVERALL, *sorted(wanted)):
            if scope == self.OVERALL:
                e, sh, sm = sum(early), sum(stale_hits), sum(stale_misses)
            else:
                e, sh, sm = early[scope], stale_hits[scope], stale_misses[scope]
            memory = None
            if peaks is not None and (
                scope == self.OVERALL or self.scopes[scope].mean_bytes is not None
            ):
                memory = peaks[scope][1]
            out[scope] = RefreshRow(
                ttl_s=float(ttl), early_refresh_hits=round(e),
                stale_ttl_s=None if stale_ttl is None else float(stale_ttl),
                stale_ttl_hits=sh if stale_ttl else 0, stale_ttl_misses=sm if stale_ttl else 0,
                peak_memory_bytes=memory,
            )  # fmt: skip
        return out

    # -- eviction ------------------------------------------------------------------------

    def memory_rows(
        self,
        scope: int,
        ttl: float,
        budgets: Sequence[int],
        policies: Sequence[str] = POLICIES,
        *,
        exact: bool = False,
        unbounded: TtlRow | None = None,
    ) -> list[MemoryRow]:
        """The hit ratio of ``scope`` at ``ttl`` under each budget (Redis bytes) and policy.

        Keys are sampled when the scope has more than :data:`EXACT_READS` reads, unless
        ``exact``. ``unbounded``, the scope's :class:`TtlRow` at ``ttl``, saves replays: a
        budget that holds its peak memory never evicts, so it gets that row's hit ratio, as
        every policy would (exactly, even where a replay would sample).
        """
        for policy in policies:
            if policy not in _ENGINES:
                raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        if unbounded is not None and unbounded.ttl_s != ttl:
            raise ValueError(f"unbounded is the row of TTL {unbounded.ttl_s}, not of {ttl}")
        room = None if unbounded is None else unbounded.peak_memory_bytes
        events, reads, rate = self._scope_events(scope, exact=exact)
        # The sample holds ``rate`` of the keys: of the bytes too, so the budget scales by it.
        expected = rate * self.stats(scope).reads
        # libCacheSim's table starts at 2**24 buckets unless told (tens of ms to build, per
        # cache); it grows by itself, so size it to the keys: the hits are the same.
        rk = self._rk
        keys = len({rk[e] for e in events if e >= 0})
        hashpower = min(24, max(8, keys.bit_length()))
        rows = []
        for policy in policies:
            for budget in budgets:
                if unbounded is not None and room is not None and budget >= room:
                    rows.append(MemoryRow(int(budget), policy, float(ttl), unbounded.hit_ratio))
                    continue
                hits = self._evict(events, policy, max(1, round(budget * rate)), ttl, hashpower)
                if rate < 1.0:
                    # SHARDS-adj: the reads the sample has beyond its expected share are those
                    # of the hot keys it happened to take, nearly all hits: count them out.
                    ratio = min(1.0, max(0.0, (hits - (reads - expected)) / expected))
                else:
                    ratio = hits / reads if reads else 0.0
                rows.append(MemoryRow(int(budget), policy, float(ttl), ratio))
        return rows

    def _scope_events(self, scope: int, *, exact: bool) -> tuple[list[int], int, float]:
        """The scope's reads and writes in time order (see ``events``), keys sampled at a rate.

        Returns the events, the reads among them, and the rate (1.0: every key).
        """
        rk, key_scope = self._rk, self._key_scope
        reads = self.stats(scope).reads
        rate = 1.0 if exact or reads <= EXACT_READS else EXACT_READS / reads
        keys_in = [
            (scope == self.OVERALL or s == scope) and (rate >= 1.0 or _hashed_in(k, rate))
            for k, s in enumerate(key_scope)
        ]
        res_in = bytearray(len(self._key_written))
        key_res = self._key_res
        for k, inside in enumerate(keys_in):
            if inside:
                res_in[key_res[k]] = 1
        wres = self._wres
        events = [e for e in self._events if (keys_in[rk[e]] if e >= 0 else res_in[wres[~e]])]
        return events, sum(1 for e in events if e >= 0), rate

    def _evict(
        self, events: list[int], policy: str, budget: int, ttl: float, hashpower: int = 24
    ) -> int:
        """Hits of one replay of ``events`` through libCacheSim's ``policy`` at ``budget``."""
        lcs = _libcachesim()
        # Expiry is ours (see the module's text): libCacheSim's own TTL is set out of reach.
        cache = getattr(lcs, _ENGINES[policy])(budget, default_ttl=2**62, hashpower=hashpower)
        request = lcs.Request()
        request.op = lcs.ReqOp.OP_GET
        # The compiled cache's own methods: the Python wrapper's are one call more per read.
        engine = getattr(cache, "_cache", cache)
        get, remove = engine.get, engine.remove
        rt, rk, rz, wt, wres = self._rt, self._rk, self._rz, self._wt, self._wres
        overhead, key_res = self._key_overhead, self._key_res
        stored: dict[int, float] = {}  # key -> when its entry was stored
        by_resource: dict[int, set[int]] = {}  # resource -> keys stored
        # (expiry, key, stored at): one TTL for all, so expiries come in the order of stores.
        expiries: deque[tuple[float, int, float]] = deque()
        pop, push = expiries.popleft, expiries.append
        track = bool(wt)
        start = self.start
        hits = 0
        for e in events:
            if e < 0:
                for k in by_resource.pop(wres[~e], ()):
                    if stored.pop(k, None) is not None:
                        remove(k)
                continue
            t = rt[e]
            while expiries and expiries[0][0] <= t:
                _, k, s = pop()
                if stored.get(k) == s:
                    del stored[k]
                    remove(k)
                    if track:
                        by_resource[key_res[k]].discard(k)
            k = rk[e]
            size = rz[e] + overhead[k]
            if size > budget and k not in stored:
                # A miss that cannot be stored (Redis refuses a value above maxmemory); asking
                # libCacheSim would change nothing but print a warning to stderr.
                continue
            request.obj_id = k
            request.obj_size = size
            request.clock_time = int(t - start)
            if get(request):  # what it holds is stored and live: expiry removed the rest
                hits += 1
                continue
            stored[k] = t
            push((t + ttl, k, t))
            if track:
                held = by_resource.get(key_res[k])
                if held is None:
                    by_resource[key_res[k]] = {k}
                else:
                    held.add(k)
        return hits
