"""Synthetic traces for the cache strategist's tests: Zipf keys, writes, sizes, and a reference.

:func:`zipf_trace` makes a trace the way a busy service's log looks (a few hot keys, a long tail,
some query strings, writes that invalidate a path); :func:`reference_rows` replays one by the
issue's definition, request by request, with no cleverness, for the simulator to be checked on.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from redkit.advise.trace import Op, Request, Trace, TraceBuilder

START = 1_700_000_000.0


def zipf_trace(
    requests: int,
    keys: int,
    *,
    seed: int,
    alpha: float = 1.0,
    write_share: float = 0.05,
    span_s: float = 3600.0,
    namespaces: Sequence[str] = ("/api/items/{id}", "/api/users/{id}"),
    query_share: float = 0.2,
    sizes: bool = True,
    whole_seconds: bool = False,
) -> Trace:
    """A trace of ``requests`` over ``keys`` resources, Zipf(``alpha``) popular, time-sorted."""
    rng = random.Random(seed)
    weights = [1.0 / (rank**alpha) for rank in range(1, keys + 1)]
    cumulative = []
    total = 0.0
    for weight in weights:
        total += weight
        cumulative.append(total)
    resource_size = [rng.randint(50, 4000) for _ in range(keys)]
    times = sorted(rng.uniform(0, span_s) for _ in range(requests))
    builder = TraceBuilder("synthetic", "test")
    for line, offset in enumerate(times, 1):
        index = min(_bisect(cumulative, rng.uniform(0, total)), keys - 1)
        template = namespaces[index % len(namespaces)]
        path = template.replace("{id}", str(index))
        t = START + (math.floor(offset) if whole_seconds else offset)
        if rng.random() < write_share:
            builder.add(Request(t, line, Op.WRITE, path, template, method="POST"))
            continue
        key = path + (f"?page={rng.randint(1, 3)}" if rng.random() < query_share else "")
        size = resource_size[index] + (len(key) if sizes else 0)
        builder.add(Request(t, line, Op.READ, key, template, size=size if sizes else None))
    return builder.build()


def _bisect(cumulative: list[float], value: float) -> int:
    low, high = 0, len(cumulative)
    while low < high:
        middle = (low + high) // 2
        if cumulative[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


@dataclass
class Reference:
    """What :func:`reference_rows` found for one scope."""

    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    pure_hits: int = 0
    stale_hits: int = 0
    peak_bytes: int = 0
    stale_ttl_misses: int = 0
    stale_ttl_hits: int = 0


def resource(key: str) -> str:
    """The key without its query."""
    return key.split("?", 1)[0]


def reference_rows(
    trace: Trace, ttl: float, loader_s: float, stale_ttl: float = 0.0
) -> dict[str, Reference]:
    """The issue's definition, literally, per namespace (a key's first read names it) and "*"."""
    requests = list(trace.requests())
    out: dict[str, Reference] = {"*": Reference()}
    namespace_of: dict[str, str] = {}
    stored: dict[str, tuple[float, int]] = {}  # key -> (time, index) of its last miss
    pure: dict[str, tuple[float, int]] = {}  # the same, for the cache not told of writes
    last_write: dict[str, int] = {}
    entries: list[tuple[float, int, str, str]] = []  # (start, index, key, namespace)
    waiting_stale: dict[str, int] = {}  # key -> the index of its last miss served stale
    for index, request in enumerate(requests):
        if request.op == Op.WRITE:
            last_write[resource(request.key)] = index
            continue
        if request.op != Op.READ:
            continue
        key, t = request.key, request.time
        namespace = namespace_of.setdefault(key, request.namespace)
        scopes = [out.setdefault(namespace, Reference()), out["*"]]
        written = last_write.get(resource(key), -1)
        held = stored.get(key)
        if held is not None and t < held[0] + ttl and written < held[1]:
            for scope in scopes:
                scope.hits += 1
                if t < held[0] + loader_s:
                    scope.coalesced += 1
                    if waiting_stale.get(key) == held[1]:
                        scope.stale_ttl_hits += 1
        else:
            if held is not None and written < held[1] and t < held[0] + ttl + stale_ttl:
                waiting_stale[key] = index
                for scope in scopes:
                    scope.stale_ttl_misses += 1
                    scope.stale_ttl_hits += 1
            for scope in scopes:
                scope.misses += 1
            stored[key] = (t, index)
            entries.append((t, index, key, namespace))
        held = pure.get(key)
        if held is not None and t < held[0] + ttl:
            for scope in scopes:
                scope.pure_hits += 1
                if written > held[1]:
                    scope.stale_hits += 1
        else:
            pure[key] = (t, index)
    # Peak bytes: an entry lives from its miss to its expiry or the next write to its resource.
    sizes = {i: r.size or 0 for i, r in enumerate(requests)}
    ends = []
    for start, index, key, _namespace in entries:
        end = start + ttl
        for later in requests[index + 1 :]:
            if later.op == Op.WRITE and resource(later.key) == resource(key):
                end = min(end, later.time)
                break
        ends.append(end)
    for name, scope in out.items():
        # An entry written away the instant it was stored is never held.
        chosen = [
            j for j, e in enumerate(entries) if (name == "*" or e[3] == name) and ends[j] > e[0]
        ]
        best = 0
        for j in chosen:
            t = entries[j][0]
            held_bytes = sizes[entries[j][1]] + sum(
                sizes[entries[i][1]] for i in chosen if i < j and ends[i] > t
            )
            best = max(best, held_bytes)
        scope.peak_bytes = best
    return out
