"""Replay a trace's requests through redkit's rate limiters, decision for decision, in memory.

Each algorithm here decides exactly as its Lua script in :mod:`redkit.ratelimit` does, on the
same integer milliseconds (``int(seconds * 1000)``, as :class:`~redkit.Ratelimit` reads a
clock), for requests of cost 1:

- a refused request consumes nothing (the scripts write nothing when they refuse);
- :class:`~redkit.FixedWindow` and :class:`~redkit.SlidingWindow` count in windows aligned to
  the Unix epoch; the sliding window's estimate is Upstash's,
  ``floor((1 - elapsed / window) * previous) + current``, in IEEE doubles as Lua computes it;
- :class:`~redkit.TokenBucket` refills in whole steps that keep their phase, and a full bucket
  is a new one (its phase starts at the request that finds it full);
- :class:`~redkit.GCRA` runs on microseconds with the emission interval rounded up, as
  ``GCRA.emission_us``;
- :class:`~redkit.SlidingLog` counts the admissions in ``(now - window, now]``.

Key expiry never changes a script's answer (each script treats an expired key and a stale one
alike), so the simulation keeps no TTLs. The ephemeral cache is not modelled: it refuses
exactly what Redis would, as its blocks end at the script's own ``retry`` counted from the
script's own whole-ms ``now`` (tests/integration/test_advise_ratelimit_replay.py checks both).

Speed comes from skipping what cannot change an answer: every request of a refused run is
passed over at once (a bisection to the moment the limiter could admit again), a fixed window
is decided per window from its count, a token bucket per refill period; only admissions of the
windowed algorithms are stepped one by one. :func:`peaks` measures what lets the advice skip a
client altogether (no window of it holds more than the limit).

Requests are grouped per client by :func:`populations` once; :func:`refusals` decides one
client's requests, :func:`decide` gives each decision.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import sub
from typing import Literal, get_args

from redkit.advise.trace import Trace
from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit.limiters import (
    GCRA,
    MAX_LOG_TOKENS,
    CachedFixedWindow,
    FixedWindow,
    Limiter,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Candidate",
    "Layout",
    "Peaks",
    "Population",
    "aligned_max",
    "bound",
    "candidate_refusals",
    "decide",
    "decide_trace",
    "fixed_window",
    "gcra",
    "identities",
    "never_refused",
    "peaks",
    "populations",
    "refusals",
    "refused_clients",
    "sliding_log",
    "sliding_window",
    "span_max",
    "to_ms",
    "token_bucket",
    "token_phases",
    "window_layout",
]

Algorithm = Literal["fixed_window", "sliding_window", "token_bucket", "gcra", "sliding_log"]

#: Every algorithm the simulator knows, in the order the advice lists them.
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)


# -- the algorithms, on one client's sorted request times (epoch ms) --------------------------
#
# Each returns how many of ``times`` it refuses; given ``out`` (a bytearray of len(times),
# all 1), it also writes 0 where a request is refused.


def _refuse(out: bytearray | None, start: int, stop: int) -> int:
    if out is not None and stop > start:
        out[start:stop] = bytes(stop - start)
    return stop - start


def fixed_window(
    times: Sequence[int], limit: int, window_ms: int, out: bytearray | None = None
) -> int:
    """:class:`~redkit.FixedWindow`: the first ``limit`` requests of each epoch-aligned window."""
    refused, i, n = 0, 0, len(times)
    while i < n:
        j = bisect_left(times, (times[i] // window_ms + 1) * window_ms, i)
        if j - i > limit:
            refused += _refuse(out, i + limit, j)
        i = j
    return refused


def _weighted(elapsed: int, count: int, window_ms: int) -> int:
    # Upstash's weight of the previous window, in doubles exactly as the Lua computes it.
    return math.floor((1 - elapsed / window_ms) * count)


def _first_fit(elapsed: int, previous: int, room: int, window_ms: int) -> int:
    """The first offset ``e > elapsed`` (at most the window) with room for one more.

    That is, where the previous window's weighted count is at most ``room``. The weight
    only falls as ``e`` grows, so a closed-form guess is corrected both ways.
    """
    e = math.floor(window_ms * (1 - (room + 1) / previous)) + 1
    e = min(max(e, elapsed + 1), window_ms)
    while e > elapsed + 1 and _weighted(e - 1, previous, window_ms) <= room:
        e -= 1
    while e < window_ms and _weighted(e, previous, window_ms) > room:
        e += 1
    return e


#: One client's requests per epoch-aligned window, in time order: (window numbers, counts).
Layout = tuple[Sequence[int], Sequence[int]]


def window_layout(times: Sequence[int], window_ms: int) -> tuple[list[int], list[int]]:
    """The windows of ``window_ms`` that hold requests, in order, and how many each holds."""
    counted = Counter([t // window_ms for t in times])  # keys in order of first sight: sorted
    return list(counted), list(counted.values())


def sliding_window(
    times: Sequence[int],
    limit: int,
    window_ms: int,
    out: bytearray | None = None,
    layout: Layout | None = None,
) -> int:
    """:class:`~redkit.SlidingWindow`: Upstash's two weighted windows, epoch-aligned.

    Decided window by window (``layout``: :func:`window_layout`, computed when not given): a
    window whose requests plus the previous window's admissions fit in the limit is admitted
    whole, as no estimate in it can reach the limit; the others request by request.
    """
    buckets, counts = layout if layout is not None else window_layout(times, window_ms)
    refused = start = last_admitted = 0
    last_bucket = None
    for bucket, count in zip(buckets, counts, strict=True):
        previous = last_admitted if last_bucket == bucket - 1 else 0
        end = start + count
        if previous + count <= limit:
            admitted = count
        else:
            admitted, r = _sliding_window_in(
                times, start, end, bucket * window_ms, previous, limit, window_ms, out
            )
            refused += r
        last_bucket, last_admitted, start = bucket, admitted, end
    return refused


def _sliding_window_in(
    times: Sequence[int],
    start: int,
    end: int,
    base: int,
    previous: int,
    limit: int,
    window_ms: int,
    out: bytearray | None,
) -> tuple[int, int]:
    """Decide the requests ``times[start:end]`` of the window starting at ``base``.

    ``previous``: what the window before admitted. Returns (admitted, refused).
    """
    current = refused = 0
    i = start
    while i < end:
        elapsed = times[i] - base
        used = current + (math.floor((1 - elapsed / window_ms) * previous) if previous else 0)
        if used < limit:
            # The estimate only falls as time goes on and rises by one per admission: with
            # room for k, the next k requests of this window are admitted too.
            taken = min(limit - used, end - i)
            current += taken
            i += taken
            continue
        # Refused, and so is every request until the estimate has room again: in this window
        # when the previous window's share falls enough, else none of this window.
        room = limit - 1 - current
        if room >= 0 and previous:
            until = base + _first_fit(elapsed, previous, room, window_ms)
            j = bisect_left(times, until, i + 1, end)
        else:
            j = end
        refused += _refuse(out, i, j)
        i = j
    return current, refused


def token_bucket(
    times: Sequence[int],
    max_tokens: int,
    refill_rate: int,
    interval_ms: int,
    out: bytearray | None = None,
) -> int:
    """:class:`~redkit.TokenBucket`: whole refills keeping their phase; a full bucket is new.

    Decided per refill period: between two refills the bucket only loses tokens, so a period
    admits its first ``tokens`` requests and refuses the rest.
    """
    refused, i, n = 0, 0, len(times)
    tokens, refilled_at = max_tokens, None
    while i < n:
        t = times[i]
        if refilled_at is None:
            refilled_at = t  # a new bucket, full
        elif t >= refilled_at + interval_ms:
            refills = (t - refilled_at) // interval_ms
            tokens += refills * refill_rate
            refilled_at += refills * interval_ms
        if tokens >= max_tokens:
            tokens, refilled_at = max_tokens, t
        j = bisect_left(times, refilled_at + interval_ms, i + 1)
        taken = min(tokens, j - i)
        tokens -= taken
        refused += _refuse(out, i + taken, j)
        i = j
    return refused


def token_phases(times: Sequence[int], interval_ms: int) -> list[int]:
    """A token bucket's requests per refill phase, when each refill fills it up.

    With ``refill_rate >= max_tokens`` a request finding the last refill ``interval`` or more
    ago finds the bucket full and starts a new phase; the phases then depend on the request
    times alone, and each admits its first ``max_tokens`` requests (the same at every limit).
    """
    phases: list[int] = []
    i, n = 0, len(times)
    while i < n:
        j = bisect_left(times, times[i] + interval_ms, i + 1)
        phases.append(j - i)
        i = j
    return phases


def gcra(
    times: Sequence[int],
    burst: int,
    emission_us: int,
    out: bytearray | None = None,
    layout: Layout | None = None,
) -> int:
    """:class:`~redkit.GCRA`: admitted iff ``max(TAT, now) + T - now <= burst * T`` (in µs).

    How far the TAT runs ahead of the clock is at most ``B*T``, so after ``B*T`` it owes
    nothing to what came before but the requests since: a request is admitted whenever at most
    ``B`` requests (itself included) came in the ``B*T`` before it. So windows of at least half
    ``B*T`` (``layout``: :func:`window_layout`; by default windows of exactly that) whose
    requests and those of the two windows before number at most ``B`` are admitted whole, and
    only the others are decided request by request.
    """
    capacity = burst * emission_us
    if layout is None:
        layout = window_layout(times, max(1, -(-capacity // 2000)))
    buckets, counts = layout
    refused = start = tat = 0
    # Runs of windows: admitted whole (calm) or to decide one by one, from run_start.
    run_start, run_calm = 0, True
    b1 = b2 = -2  # the two non-empty windows before this one, and their counts
    c1 = c2 = 0
    for bucket, count in zip(buckets, counts, strict=True):
        before = (c1 if b1 >= bucket - 2 else 0) + (c2 if b2 == bucket - 2 else 0)
        calm = before + count <= burst
        if calm != run_calm:
            if run_calm:
                tat = _gcra_admit(times, run_start, start, tat, emission_us)
            else:
                tat, r = _gcra_in(times, run_start, start, tat, capacity, emission_us, out)
                refused += r
            run_start, run_calm = start, calm
        b2, c2, b1, c1 = b1, c1, bucket, count
        start += count
    if run_calm:
        _gcra_admit(times, run_start, start, tat, emission_us)
    else:
        refused += _gcra_in(times, run_start, start, tat, capacity, emission_us, out)[1]
    return refused


def _gcra_admit(times: Sequence[int], start: int, end: int, tat: int, emission_us: int) -> int:
    """The TAT after admitting every request of ``times[start:end]``.

    ``TAT' = max(TAT, t) + T`` unrolled: ``max(TAT + kT, t_j + (k - j + 1)T)`` over the j-th of
    the k requests.
    """
    k = end - start
    if k <= 1:
        if k == 0:
            return tat
        now = times[start] * 1000
        return (tat if tat > now else now) + emission_us
    latest = max([times[j] * 1000 - emission_us * (j - start) for j in range(start, end)])
    return max(tat, latest) + k * emission_us


def _gcra_in(
    times: Sequence[int],
    start: int,
    end: int,
    tat: int,
    capacity: int,
    emission_us: int,
    out: bytearray | None,
) -> tuple[int, int]:
    """Decide the requests ``times[start:end]`` one by one. Returns (the TAT, refused)."""
    refused = 0
    i = start
    while i < end:
        now = times[i] * 1000
        if tat < now:
            tat = now
        if tat + emission_us - now <= capacity:
            # How far the TAT runs ahead of the clock only falls as time goes on and rises by T
            # per admission: with room for k cells now, the next k requests are admitted.
            taken = min((capacity - (tat - now)) // emission_us, end - i)
            tat = _gcra_admit(times, i, i + taken, tat, emission_us)
            i += taken
            continue
        # Refused until now reaches TAT + T - B*T (the first whole ms at or after it).
        until = -((capacity - tat - emission_us) // 1000)
        j = bisect_left(times, until, i + 1, end)
        refused += _refuse(out, i, j)
        i = j
    return tat, refused


def sliding_log(
    times: Sequence[int],
    limit: int,
    window_ms: int,
    out: bytearray | None = None,
    layout: Layout | None = None,
) -> int:
    """:class:`~redkit.SlidingLog`: at most ``limit`` admissions in ``(now - window, now]``.

    Decided window by window as :func:`sliding_window`: only admissions of the previous
    aligned window and this one can lie in a request's sliding window, so a window whose
    requests plus the previous window's admissions fit in the limit is admitted whole.
    """
    buckets, counts = layout if layout is not None else window_layout(times, window_ms)
    refused = start = last_start = 0
    last_bucket = None
    # The previous window's admissions: None when it admitted all its requests.
    last_admitted: list[int] | None = None
    last_count = 0
    for bucket, count in zip(buckets, counts, strict=True):
        previous = last_count if last_bucket == bucket - 1 else 0
        end = start + count
        if previous + count <= limit:
            admitted, admitted_count = None, count
        else:
            if not previous:
                seed: Sequence[int] = ()
            elif last_admitted is None:
                seed = times[last_start:start]
            else:
                seed = last_admitted
            admitted, r = _sliding_log_in(times, start, end, seed, limit, window_ms, out)
            admitted_count = len(admitted)
            refused += r
        last_bucket, last_admitted, last_count = bucket, admitted, admitted_count
        last_start, start = start, end
    return refused


def _sliding_log_in(
    times: Sequence[int],
    start: int,
    end: int,
    seed: Sequence[int],
    limit: int,
    window_ms: int,
    out: bytearray | None,
) -> tuple[list[int], int]:
    """Decide the requests ``times[start:end]`` of one window.

    ``seed``: the admissions of the window before. Returns (this window's admissions, refused).
    """
    admitted = list(seed)
    oldest = 0  # the first admission still in the sliding window
    refused = 0
    i = start
    while i < end:
        t = times[i]
        oldest = bisect_right(admitted, t - window_ms, oldest)
        used = len(admitted) - oldest
        if used < limit:
            # Admissions leave the window only as time goes on: with room for k, the next k
            # requests are admitted.
            taken = min(limit - used, end - i)
            admitted.extend(times[i : i + taken])
            i += taken
            continue
        # Refused until the oldest admission in the window leaves it.
        j = bisect_left(times, admitted[oldest] + window_ms, i + 1, end)
        refused += _refuse(out, i, j)
        i = j
    return admitted[len(seed) :], refused


# -- candidates: an algorithm at "limit per window" ------------------------------------------


def _duration(ms: int) -> str:
    """``ms`` as the duration string a person would write: ``"1 m"``, ``"90 s"``, ``"250 ms"``."""
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


@dataclass(frozen=True)
class Candidate:
    """One algorithm admitting ``limit`` requests per ``window_ms``, per client.

    The bucket algorithms read "limit per window" as a bucket of ``limit`` that regains
    ``limit`` every window: ``TokenBucket(limit, window, limit)`` and
    ``GCRA(limit, window, burst=limit)``.
    """

    algorithm: Algorithm
    limit: int
    window_ms: int
    #: The redkit limiter deciding like this candidate (validated by its own constructor).
    limiter: Limiter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise InvalidArgumentError(
                f"algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}"
            )
        window = self.window_ms / 1000
        limiter: Limiter
        if self.algorithm == "fixed_window":
            limiter = FixedWindow(self.limit, window)
        elif self.algorithm == "sliding_window":
            limiter = SlidingWindow(self.limit, window)
        elif self.algorithm == "token_bucket":
            limiter = TokenBucket(self.limit, window, self.limit)
        elif self.algorithm == "gcra":
            limiter = GCRA(self.limit, window, self.limit)
        else:
            limiter = SlidingLog(self.limit, window)
        object.__setattr__(self, "limiter", limiter)

    @staticmethod
    def fits(algorithm: Algorithm, limit: int, window_ms: int) -> bool:
        """Whether redkit's limiter takes this limit and window.

        A sliding log holds at most :data:`~redkit.ratelimit.limiters.MAX_LOG_TOKENS`; GCRA
        admits at most one cell per µs.
        """
        if algorithm == "sliding_log":
            return limit <= MAX_LOG_TOKENS
        if algorithm == "gcra":
            return limit <= window_ms * 1000
        return True

    def code(self) -> str:
        """The limiter as Python source: ``SlidingWindow(100, "1 m")``."""
        window = _duration(self.window_ms)
        if self.algorithm == "token_bucket":
            return f'TokenBucket({self.limit}, "{window}", {self.limit})'
        if self.algorithm == "gcra":
            return f'GCRA({self.limit}, "{window}", burst={self.limit})'
        return f'{type(self.limiter).__name__}({self.limit}, "{window}")'


def refusals(
    times: Sequence[int],
    limiter: Limiter,
    out: bytearray | None = None,
    layout: Layout | None = None,
) -> int:
    """How many of one client's requests (sorted epoch ms) ``limiter`` refuses.

    ``limiter`` is any of redkit's :class:`FixedWindow`, :class:`SlidingWindow`,
    :class:`TokenBucket`, :class:`GCRA` or :class:`SlidingLog`; ``out`` as for the algorithms;
    ``layout`` (:func:`window_layout` for the limiter's window) saves computing it again.
    """
    if isinstance(limiter, CachedFixedWindow):
        raise InvalidArgumentError(
            "a CachedFixedWindow decides from each process's own count, which a trace does not "
            "record: simulate FixedWindow, which it approaches with one process"
        )
    if isinstance(limiter, FixedWindow):
        return fixed_window(times, limiter.limit, limiter.window_ms, out)
    if isinstance(limiter, SlidingWindow):
        return sliding_window(times, limiter.limit, limiter.window_ms, out, layout)
    if isinstance(limiter, TokenBucket):
        return token_bucket(times, limiter.limit, limiter.refill_rate, limiter.interval_ms, out)
    if isinstance(limiter, GCRA):
        # The layout of the window itself: a bucket of B cells T apart fills up within
        # B*T, at most the period plus B µs, so within two windows (at most 1 cell per µs).
        fits = limiter.limit * limiter.emission_us <= 2000 * limiter.period_ms
        return gcra(times, limiter.limit, limiter.emission_us, out, layout if fits else None)
    if isinstance(limiter, SlidingLog):
        return sliding_log(times, limiter.limit, limiter.log_window_ms, out, layout)
    raise InvalidArgumentError(
        f"cannot simulate {type(limiter).__name__}: give a FixedWindow, SlidingWindow, "
        "TokenBucket, GCRA or SlidingLog"
    )


def decide(times: Sequence[int], limiter: Limiter) -> list[bool]:
    """Each of one client's requests (sorted epoch ms): admitted (True) or refused."""
    out = bytearray(b"\x01") * len(times)
    refusals(times, limiter, out)
    return [bool(b) for b in out]


# -- clients ---------------------------------------------------------------------------------


def to_ms(seconds: Iterable[float]) -> list[int]:
    """Epoch seconds as the integer ms a limiter decides on: ``int(seconds * 1000)``.

    That is how :class:`~redkit.Ratelimit` reads a clock.
    """
    return [int(t * 1000.0) for t in seconds]


def identities(trace: Trace, by: str) -> Sequence[int]:
    """The column naming each request's client for ``by``.

    ``by`` is ``"ip"``, ``"user"`` or an attribute the trace kept (``"header:X-API-Key"``);
    the column holds numbers in ``trace.strings``, -1 where a request has no identity.

    Raises:
        InvalidArgumentError: for an attribute the trace did not keep.

    """
    if by == "ip":
        return trace.clients
    if by == "user":
        return trace.users
    column = trace.attributes.get(by)
    if column is None:
        kept = ", ".join(repr(name) for name in trace.attributes) or "none"
        raise InvalidArgumentError(
            f"by={by!r}: the trace has no such column. Give by='ip', by='user' or an attribute "
            f"the trace was read with (kept: {kept}); to limit by a header, read the log "
            f"asking for it (attributes=[{by!r}])"
        )
    return column


@dataclass
class Population:
    """The clients of one route (or of the whole trace) and their requests.

    ``clients[k]`` is a client's number in ``trace.strings``, ``times[k]`` its requests' epoch
    ms in time order. Requests without an identity for ``by`` are not anyone's: they are
    counted in ``unidentified`` and decided by no limiter.
    """

    name: str
    clients: list[int] = field(default_factory=list)
    times: list[list[int]] = field(default_factory=list)
    unidentified: int = 0

    @property
    def requests(self) -> int:
        """Requests of identified clients."""
        return sum(map(len, self.times))


def populations(
    trace: Trace, by: str, *, overall: str = "all", ms: Sequence[int] | None = None
) -> tuple[Population, dict[str, Population]]:
    """The trace's clients for ``by``: over every request, and per route (namespace).

    One pass over the trace; each client's times stay in time order (the trace is sorted).
    ``ms`` may give the trace's times already in ms (:func:`to_ms`).
    """
    ids = identities(trace, by)
    times = to_ms(trace.times) if ms is None else ms
    everyone: dict[int, list[int]] = {}
    per_route: dict[int, dict[int, list[int]]] = {}
    missing: Counter[int] = Counter()
    for client, route, t in zip(ids, trace.namespaces, times, strict=True):
        if client < 0:
            missing[route] += 1
            continue
        found = everyone.get(client)
        if found is None:
            found = everyone[client] = []
        found.append(t)
        clients = per_route.get(route)
        if clients is None:
            clients = per_route[route] = {}
        found = clients.get(client)
        if found is None:
            found = clients[client] = []
        found.append(t)
    whole = Population(overall, list(everyone), list(everyone.values()), sum(missing.values()))
    routes: dict[str, Population] = {}
    for route in per_route.keys() | missing.keys():
        clients = per_route.get(route, {})
        name = trace.namespace_names[route] or ""
        routes[name] = Population(name, list(clients), list(clients.values()), missing[route])
    return whole, routes


def decide_trace(
    trace: Trace, limiter: Limiter, *, by: str = "ip", route: str | None = None
) -> list[bool | None]:
    """Each request of ``trace`` as ``limiter`` decides it, one limiter per client for ``by``.

    With ``route``, only that route's requests are decided (a limiter of its own); ``None``
    marks requests it does not decide: other routes', and those without an identity.
    """
    ids = identities(trace, by)
    times = to_ms(trace.times)
    rows: dict[int, list[int]] = {}
    names = trace.namespace_names.values
    wanted = None if route is None else names.index(route) if route in names else -2
    for row, (client, namespace) in enumerate(zip(ids, trace.namespaces, strict=True)):
        if client >= 0 and (wanted is None or namespace == wanted):
            rows.setdefault(client, []).append(row)
    decided: list[bool | None] = [None] * len(trace)
    for client_rows in rows.values():
        admitted = decide([times[r] for r in client_rows], limiter)
        for row, decision in zip(client_rows, admitted, strict=True):
            decided[row] = decision
    return decided


# -- peaks: what lets a client be skipped ----------------------------------------------------


def aligned_max(times: Sequence[int], window_ms: int) -> int:
    """The most requests in one epoch-aligned window of ``window_ms`` (sorted times)."""
    n = len(times)
    if n <= 1 or times[0] // window_ms == times[-1] // window_ms:
        return n
    most: int = max(Counter([t // window_ms for t in times]).values())
    return most


def span_max(times: Sequence[int], span_ms: int) -> int:
    """The most requests in any half-open span ``[t, t + span_ms)`` (sorted times)."""
    if len(times) < 2 or times[-1] - times[0] < span_ms:
        return len(times)
    ends = map(partial(bisect_left, times), [t + span_ms for t in times])
    most: int = max(map(sub, ends, range(len(times))))
    return most


@dataclass(frozen=True)
class Peaks:
    """One client's busiest moments for one window length, in requests, and its layout.

    ``aligned``: its most requests in one epoch-aligned window; ``pair``: in two consecutive
    aligned windows; ``triple``: in three. A limiter of ``limit`` per window never refuses the
    client when: ``aligned <= limit`` (fixed window); ``pair <= limit`` (sliding window, and,
    as any window-long span lies in two aligned windows, sliding log and a token bucket
    refilled fully each window); ``triple <= limit`` (GCRA: its rounded-up emission interval
    makes a bucket fill up within two windows, a span that lies in three aligned windows).
    """

    window_ms: int
    aligned: int
    pair: int
    triple: int
    #: The aligned windows holding requests, in order, and how many each holds.
    buckets: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def layout(self) -> Layout:
        """(``buckets``, ``counts``), as :func:`window_layout` gives them."""
        return self.buckets, self.counts


def peaks(times: Sequence[int], window_ms: int) -> Peaks:
    """One client's :class:`Peaks` for windows of ``window_ms``."""
    n = len(times)
    if n == 0:
        return Peaks(window_ms, 0, 0, 0, (), ())
    if times[0] // window_ms == times[-1] // window_ms:
        return Peaks(window_ms, n, n, n, (times[0] // window_ms,), (n,))
    per_window = Counter([t // window_ms for t in times])
    get = per_window.get
    pair = triple = 0
    for b, c in per_window.items():
        before = get(b - 1, 0)
        if c + before > pair:
            pair = c + before
        if c + before + get(b - 2, 0) > triple:
            triple = c + before + get(b - 2, 0)
    return Peaks(
        window_ms,
        max(per_window.values()),
        pair,
        triple,
        tuple(per_window),
        tuple(per_window.values()),
    )


def bound(algorithm: Algorithm, peak: Peaks) -> int:
    """The peak that ``algorithm`` at any limit at or above it surely never refuses.

    See :class:`Peaks` for why each bound holds.
    """
    if algorithm == "fixed_window":
        return peak.aligned
    if algorithm == "gcra":
        return peak.triple
    return peak.pair


def never_refused(algorithm: Algorithm, limit: int, peak: Peaks) -> bool:
    """Whether ``algorithm`` at ``limit`` per window surely admits every request."""
    return bound(algorithm, peak) <= limit


def candidate_refusals(times: Sequence[int], candidate: Candidate, peak: Peaks) -> int:
    """:func:`refusals` for one client, skipping the replay where the peaks settle it."""
    limit = candidate.limit
    if never_refused(candidate.algorithm, limit, peak):
        return 0
    if candidate.algorithm == "fixed_window":
        return sum(c - limit for c in peak.counts if c > limit)
    return refusals(times, candidate.limiter, layout=peak.layout)


def refused_clients(
    times: Sequence[Sequence[int]], window_peaks: Sequence[Peaks], candidates: Iterable[Candidate]
) -> list[dict[int, int]]:
    """For each candidate, the clients it refuses: their position in ``times`` -> refusals.

    ``times`` holds each client's requests, ``window_peaks`` their :func:`peaks` for the
    candidates' window (one window for all). Clients are visited from the highest bound down,
    so each candidate looks only at those its limit might refuse.
    """
    orders: dict[Algorithm, tuple[list[int], list[int]]] = {}
    phases: dict[int, list[int]] = {}  # token buckets: per client, shared by every limit
    found: list[dict[int, int]] = []
    for candidate in candidates:
        algorithm, limit = candidate.algorithm, candidate.limit
        if algorithm not in orders:
            bounds = [bound(algorithm, peak) for peak in window_peaks]
            order = sorted(range(len(bounds)), key=bounds.__getitem__, reverse=True)
            orders[algorithm] = (order, bounds)
        order, bounds = orders[algorithm]
        refused_by: dict[int, int] = {}
        for k in order:
            if bounds[k] <= limit:
                break  # and so are all the others
            peak = window_peaks[k]
            if algorithm == "fixed_window":
                refused = sum(c - limit for c in peak.counts if c > limit)
            elif algorithm == "token_bucket":  # refilled fully: per phase, as a fixed window
                counts = phases.get(k)
                if counts is None:
                    counts = phases[k] = token_phases(times[k], candidate.window_ms)
                refused = sum(c - limit for c in counts if c > limit)
            else:
                refused = refusals(times[k], candidate.limiter, layout=peak.layout)
            if refused:
                refused_by[k] = refused
        found.append(refused_by)
    return found
