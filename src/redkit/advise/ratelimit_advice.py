"""Rate-limit advice: per route and tier, the limit that spares ordinary clients, caps the rest.

:func:`advise_ratelimit` groups a trace's requests per client (``by``: the address, the user, or
an attribute such as ``header:X-API-Key``), per route template and over the whole trace, and
replays each client's requests through redkit's limiters at candidate limits with
:mod:`redkit.advise.ratelimit_sim` (exact, the Lua scripts' own decisions). Its
:class:`RatelimitAdvice` gives, per route:

- **rates**: per client, its busiest epoch-aligned second, minute and hour (the requests in it),
  as percentiles over the route's clients (p50/p90/p99 by nearest rank, so "p99 = 38" reads
  "99 % of clients never sent more than 38 in one minute"), and **burst**: the most requests a
  client sent within any 1 s span (not aligned), as percentiles too;
- **top talkers**: the clients with the most requests, their share and their most frequent user
  agent (bots show themselves there);
- **candidates**: each algorithm at each candidate limit per window: the share of requests,
  of clients and of ordinary clients' requests it refuses, and who it refuses most;
- a **recommendation**, as redkit code to paste.

Who is ordinary, who is heavy (per route, or per route and tier, and over the whole trace):
for a window ``w`` of the candidates, a client's *peak* is the most requests it sent in one
epoch-aligned window of ``w``. A client is **heavy** when, for some candidate window, its peak
is more than :data:`HEAVY_FACTOR` (10) times the median client's peak for that window (the
lower median, an observed value); every other client is **ordinary**. The median stands until
half the clients are heavy, so one bot among five people is found on the smallest trace, a
population of similar clients has no heavy client at all, and a thousand one-off visitors do
not make one regular look ordinary.

Candidate limits, when ``limits`` is not given: per window, :data:`CANDIDATES_PER_WINDOW` (8)
round numbers (:func:`candidate_limits`: 1, 2, 3, 4, 5, 6, 8, then 10, 12, 15, 20, 25, 30, 40,
50, 60, 80 times each power of ten) spanning the ordinary clients' median peak to the most an
ordinary client sent in two consecutive windows (where a sliding window surely refuses no
ordinary client); when that span holds fewer than eight, the next round numbers above it.

The recommendation, per route (``protect``: the share of ordinary clients' requests to spare):

1. per window and algorithm, the **lowest** candidate limit that refuses at most
   ``100 - protect`` % of ordinary clients' requests (the lowest such limit caps heavy clients
   hardest within that budget);
2. per window, the algorithm: **sliding_window** by default, the fair one (no double burst at a
   window's edge, as a fixed window allows) that is cheap (two counters per client, where a
   sliding log keeps one entry per request). Another algorithm replaces it only when, at the
   same limit and within the budget, it caps as many heavy clients and refuses at most half as
   many ordinary requests (so small differences never flip the advice). Without
   sliding_window among ``algorithms``, the first of :data:`PREFERENCE` given is the default;
3. across windows: the choice capping the most heavy clients, then refusing the most of their
   requests, then the fewest ordinary requests, then the window nearest a minute.

When no candidate refuses anybody, the advice says so and names the smallest candidate (it
costs nobody); when no candidate keeps within the budget, the one refusing the fewest ordinary
requests, with a reason that says to try higher limits.

With ``tier_by`` (an attribute column naming each request's tier, such as ``header:X-Plan``),
each route is analysed once per tier (route entries named ``"<route> (tier <name>)"``) and every
tier's entry carries the route's whole :class:`~redkit.TieredRatelimit` code, one limiter per
tier; requests without a tier form a tier of their own, the ``default_tier``. The overall entry
stays untiered: the whole trace's clients against one limit.

Routes: the :data:`max_routes <advise_ratelimit>` busiest (most identified requests) are
analysed; the others count in the overall entry only, and ``settings["routes_left_out"]`` says
how many there were. Requests without an identity for ``by`` are decided by no limiter: they
are counted in ``settings["unidentified_requests"]`` and left out of every share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from redkit.advise.ratelimit_sim import (
    ALGORITHMS,
    Algorithm,
    Candidate,
    Peaks,
    Population,
    aligned_max,
    identities,
    peaks,
    populations,
    refused_clients,
    span_max,
    to_ms,
)
from redkit.advise.summary import trace_summary
from redkit.advise.trace import Strings, Trace
from redkit.core.durations import duration_ms
from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit.limiters import MAX_TOKENS

__all__ = [
    "CANDIDATES_PER_WINDOW",
    "DEFAULT_WINDOWS",
    "HEAVY_FACTOR",
    "PREFERENCE",
    "RatelimitAdvice",
    "RatelimitRecommendation",
    "RouteAdvice",
    "advise_ratelimit",
    "candidate_limits",
]

#: The candidate windows by default: one minute, the window limits are usually written in (a
#: per-minute limit catches a steady bot and spares a person's bursts). The rates per second,
#: minute and hour are reported whatever the windows; ask for ``windows=(1, 60, 3600)`` to
#: compare limits per second and per hour too (three times the replays).
DEFAULT_WINDOWS: tuple[float, ...] = (60.0,)
#: How many times the median client's peak a heavy client's peak exceeds.
HEAVY_FACTOR = 10
#: Candidate limits derived per window.
CANDIDATES_PER_WINDOW = 8
#: The algorithms in the order the recommendation prefers them at equal merit.
PREFERENCE: tuple[Algorithm, ...] = (
    "sliding_window",
    "fixed_window",
    "gcra",
    "token_bucket",
    "sliding_log",
)
#: Top talkers listed per route, and clients named per candidate row.
TOP_TALKERS = 5
REFUSED_TOP = 5
#: The windows of the ``rates`` block, in ms, and their keys.
_RATE_WINDOWS = (("per_second", 1000), ("per_minute", 60_000), ("per_hour", 3_600_000))
#: The prefix of the keys in the recommended code: ``ratelimit:<route>``.
CODE_PREFIX = "ratelimit"
_WHY_ALGORITHM = {
    "sliding_window": "fair at a window's edge and cheap (two counters per client)",
    "fixed_window": "the cheapest (one counter per client), though it admits a double burst "
    "at a window's edge",
    "gcra": "smooth (one request every window / limit after the burst) and O(1) state",
    "token_bucket": "a burst of the limit, refilled every window",
    "sliding_log": "exact (one entry per admitted request)",
}


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RatelimitRecommendation:
    """The limit recommended for one route (or tier, or the whole trace), with its code.

    ``refused_ordinary_share``: the share of ordinary clients' requests it refuses;
    ``refused_heavy_clients``: how many heavy clients it refuses at least once.
    """

    algorithm: Algorithm
    limit: int
    window_s: float
    refused_ordinary_share: float
    refused_heavy_clients: int
    reason: str
    code: str

    def to_json(self) -> dict[str, Any]:
        """The schema's ``recommendation`` block."""
        return {
            "algorithm": self.algorithm,
            "limit": self.limit,
            "window_s": self.window_s,
            "refused_ordinary_share": self.refused_ordinary_share,
            "refused_heavy_clients": self.refused_heavy_clients,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass(frozen=True)
class RouteAdvice:
    """The analysis of one route (or one tier of it, or the whole trace).

    ``rates``, ``burst``, ``top_talkers`` and ``candidates`` are the schema's blocks (plain
    dicts and lists, as ``to_json`` gives them). ``tier`` names the tier of a tiered entry;
    ``heavy`` lists the heavy clients (see the module's docstring).
    """

    name: str
    requests: int
    clients: int
    rates: dict[str, dict[str, float]]
    burst: dict[str, int]
    top_talkers: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    recommendation: RatelimitRecommendation
    route: str = ""
    tier: str | None = None
    heavy: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The schema's block of one route."""
        return {
            "name": self.name,
            "requests": self.requests,
            "clients": self.clients,
            "rates": {key: dict(values) for key, values in self.rates.items()},
            "burst": dict(self.burst),
            "top_talkers": [dict(t) for t in self.top_talkers],
            "candidates": [
                {**row, "refused_top": [dict(t) for t in row["refused_top"]]}
                for row in self.candidates
            ],
            "recommendation": self.recommendation.to_json(),
        }


@dataclass(frozen=True)
class RatelimitAdvice:
    """:func:`advise_ratelimit`'s answer: the trace, the settings, the whole trace, each route."""

    trace: dict[str, Any]
    settings: dict[str, Any]
    overall: RouteAdvice
    routes: tuple[RouteAdvice, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The advice as the ``redkit.advise/1`` dict the reports render (``--json``)."""
        return {
            "schema": "redkit.advise/1",
            "kind": "ratelimit",
            "trace": {
                **self.trace,
                "malformed_examples": [dict(m) for m in self.trace["malformed_examples"]],
            },
            "settings": {
                key: list(value) if isinstance(value, (list, tuple)) else value
                for key, value in self.settings.items()
            },
            "overall": self.overall.to_json(),
            "routes": [route.to_json() for route in self.routes],
        }


# -- small helpers ---------------------------------------------------------------------------


def _rank(values: Sequence[int], q: float) -> int:
    """The nearest-rank ``q`` quantile of sorted ``values``: ``q`` of them are at most it."""
    return values[max(0, math.ceil(q * len(values)) - 1)]


def _percentiles(values: Iterable[int]) -> dict[str, int]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0, "p90": 0, "p99": 0, "max": 0}
    return {
        "p50": _rank(ordered, 0.5),
        "p90": _rank(ordered, 0.9),
        "p99": _rank(ordered, 0.99),
        "max": ordered[-1],
    }


def _nice_numbers(upto: int) -> list[int]:
    """The round numbers from 1 to the first at or above ``upto``, ascending."""
    found: list[int] = []
    scale = 1
    while True:
        for mantissa in (10, 12, 15, 20, 25, 30, 40, 50, 60, 80):
            value = mantissa * scale
            if value % 10:
                continue
            number = value // 10
            if not found or number > found[-1]:
                found.append(number)
            if number >= upto:
                return found
        scale *= 10


def candidate_limits(low: int, high: int, count: int = CANDIDATES_PER_WINDOW) -> list[int]:
    """``count`` round numbers spanning ``low`` to ``high`` (the next ones above when too few).

    The round numbers are 1, 2, 3, 4, 5, 6, 8, then 10, 12, 15, 20, 25, 30, 40, 50, 60, 80
    times each power of ten; the first is the largest at or below ``low``, the last the
    smallest at or above ``high`` when they hold ``count`` or more (evenly chosen among them,
    so evenly spread on a log scale).
    """
    low = max(1, min(low, MAX_TOKENS))
    high = max(low, min(high, MAX_TOKENS))
    series = _nice_numbers(high)
    first = max(i for i, n in enumerate(series) if n <= low)
    span = series[first:]
    if len(span) <= count:
        while len(span) < count and span[-1] < MAX_TOKENS:
            span.append(_nice_numbers(span[-1] + 1)[-1])
        return span
    last = len(span) - 1
    picked = sorted({round(i * last / (count - 1)) for i in range(count)})
    return [span[i] for i in picked]


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _literal(text: str) -> str:
    """``text`` as a double-quoted Python literal that any ``text`` turns into safely."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _slug(name: str) -> str:
    """``name`` as lower-case ASCII letters, digits and single underscores (may be empty)."""
    chars = [ch if ch.isascii() and ch.isalnum() else "_" for ch in name.lower()]
    return "_".join(part for part in "".join(chars).split("_") if part)[:40].strip("_")


class _Names:
    """Python identifiers and key prefixes for the code, one per route, never twice."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, name: str) -> str:
        slug = _slug(name.replace("{id}", "id")) or "route"
        if slug[0].isdigit():
            slug = f"route_{slug}"
        unique, n = slug, 1
        while unique in self._taken:
            n += 1
            unique = f"{slug}_{n}"
        self._taken.add(unique)
        return unique


def _call(head: str, args: Sequence[str]) -> str:
    """``head(args...)`` on one line when short, else one argument a line (as ruff writes it)."""
    line = f"{head}({', '.join(args)})"
    if len(line) <= 88:
        return line
    return head + "(\n" + "".join(f"    {arg},\n" for arg in args) + ")"


# -- the analysis of one population ----------------------------------------------------------


@dataclass
class _Row:
    """One candidate's outcome, with what the choice needs besides the schema's row."""

    candidate: Candidate
    refused: int
    refused_clients: int
    ordinary_refused: int
    heavy_clients: int
    heavy_refused: int
    top: list[tuple[int, int]]  # (client position, refused), most refused first

    @property
    def window_s(self) -> float:
        return self.candidate.window_ms / 1000


@dataclass
class _Settings:
    by: str
    protect: float
    algorithms: tuple[Algorithm, ...]
    windows_ms: tuple[int, ...]
    limits: tuple[int, ...] | None


@dataclass
class _Analysis:
    population: Population
    rates: dict[str, dict[str, float]]
    burst: dict[str, int]
    heavy: set[int]
    ordinary_requests: int
    rows: list[_Row]
    chosen: _Row
    reason: str


def _fits_budget(row: _Row, ordinary_requests: int, protect: float) -> bool:
    # refused / total <= (100 - protect) / 100, without a division's rounding.
    return row.ordinary_refused * 100 <= (100 - protect) * ordinary_requests + 1e-9


def _window_rank(window_ms: int) -> float:
    return abs(math.log(window_ms / 60_000))


def _analyse(population: Population, settings: _Settings, names: Strings) -> _Analysis:
    """Rates, heavy clients, candidates and the choice for one population (with clients)."""
    times = population.times
    window_peaks: dict[int, list[Peaks]] = {
        w: [peaks(t, w) for t in times] for w in settings.windows_ms
    }
    # Rates need only the aligned peaks: reuse a candidate window's, else count them alone.
    rate_peaks = {
        key: [p.aligned for p in window_peaks[window]]
        if window in window_peaks
        else [aligned_max(t, window) for t in times]
        for key, window in _RATE_WINDOWS
    }
    rates = {
        key: {p: float(v) for p, v in _percentiles(values).items()}
        for key, values in rate_peaks.items()
    }
    # The schema's burst block has no p90.
    burst = {p: v for p, v in _percentiles(span_max(t, 1000) for t in times).items() if p != "p90"}

    heavy: set[int] = set()
    for found in window_peaks.values():
        aligned = sorted(p.aligned for p in found)
        median = aligned[(len(aligned) - 1) // 2]
        heavy.update(k for k, p in enumerate(found) if p.aligned > HEAVY_FACTOR * median)
    ordinary_requests = sum(len(t) for k, t in enumerate(times) if k not in heavy)

    rows: list[_Row] = []
    for window_ms, found in window_peaks.items():
        if settings.limits is not None:
            limits = list(settings.limits)
        else:
            usual = [p for k, p in enumerate(found) if k not in heavy] or found
            aligned = sorted(p.aligned for p in usual)
            limits = candidate_limits(_rank(aligned, 0.5), max(p.pair for p in usual))
        candidates = [
            Candidate(algorithm, limit, window_ms)
            for algorithm in settings.algorithms
            for limit in limits
            if Candidate.fits(algorithm, limit, window_ms)
        ]
        for candidate, refused_by in zip(
            candidates, refused_clients(times, found, candidates), strict=True
        ):
            top = sorted(refused_by.items(), key=lambda item: (-item[1], item[0]))
            heavy_refused = [r for k, r in refused_by.items() if k in heavy]
            rows.append(
                _Row(
                    candidate,
                    refused=sum(refused_by.values()),
                    refused_clients=len(refused_by),
                    ordinary_refused=sum(refused_by.values()) - sum(heavy_refused),
                    heavy_clients=len(heavy_refused),
                    heavy_refused=sum(heavy_refused),
                    top=top[:REFUSED_TOP],
                )
            )
    chosen, reason = _choose(rows, heavy, ordinary_requests, settings, population, names)
    return _Analysis(population, rates, burst, heavy, ordinary_requests, rows, chosen, reason)


def _preferred(algorithms: Sequence[Algorithm]) -> list[Algorithm]:
    return [a for a in PREFERENCE if a in algorithms]


def _choose(
    rows: list[_Row],
    heavy: set[int],
    ordinary_requests: int,
    settings: _Settings,
    population: Population,
    names: Strings,
) -> tuple[_Row, str]:
    """The recommended row and why, by the rules of the module's docstring."""
    order = _preferred(settings.algorithms)
    budget = 100 - settings.protect
    budget_text = f"{budget:g} %"
    windows = sorted({r.candidate.window_ms for r in rows}, key=_window_rank)
    if all(r.refused == 0 for r in rows):
        first = min(
            rows,
            key=lambda r: (
                r.candidate.limit,
                _window_rank(r.candidate.window_ms),
                order.index(r.candidate.algorithm),
            ),
        )
        return first, "no client comes near any candidate; the smallest one costs nobody"
    eligible = [r for r in rows if _fits_budget(r, ordinary_requests, settings.protect)]
    if not eligible:
        best = min(
            rows,
            key=lambda r: (
                r.ordinary_refused,
                -r.candidate.limit,
                order.index(r.candidate.algorithm),
            ),
        )
        return best, (
            f"no candidate refuses at most {budget_text} of ordinary clients' requests; this "
            f"one refuses the fewest ({_pct(best.ordinary_refused, ordinary_requests)}): try "
            "higher limits"
        )
    per_window: list[tuple[_Row, str]] = []
    for window_ms in windows:
        lowest: dict[Algorithm, _Row] = {}
        for r in eligible:
            if r.candidate.window_ms != window_ms:
                continue
            found = lowest.get(r.candidate.algorithm)
            if found is None or r.candidate.limit < found.candidate.limit:
                lowest[r.candidate.algorithm] = r
        if not lowest:
            continue
        default = next(a for a in order if a in lowest)
        base = lowest[default]
        pick, why = (
            base,
            f"{default}: "
            + ("the default, " if default == "sliding_window" else "the first preferred, ")
            + _WHY_ALGORITHM[default],
        )
        # Another algorithm at the same limit, only when clearly kinder to ordinary clients
        # (at most half their refusals) and capping as many heavy ones: the default is kept
        # on small differences, so the advice does not flip between algorithms on noise.
        same = {
            r.candidate.algorithm: r
            for r in eligible
            if r.candidate.window_ms == window_ms and r.candidate.limit == base.candidate.limit
        }
        challengers = [
            r
            for a, r in same.items()
            if a != default
            and r.heavy_clients >= base.heavy_clients
            and r.ordinary_refused * 2 <= base.ordinary_refused
            and r.ordinary_refused < base.ordinary_refused
        ]
        if challengers:
            pick = min(
                challengers,
                key=lambda r: (
                    r.ordinary_refused,
                    -r.heavy_refused,
                    order.index(r.candidate.algorithm),
                ),
            )
            why = (
                f"{pick.candidate.algorithm} rather than {default}: at the same limit it refuses "
                f"at most half as many ordinary requests "
                f"({_pct(pick.ordinary_refused, ordinary_requests)} against "
                f"{_pct(base.ordinary_refused, ordinary_requests)}) and caps as many heavy clients"
            )
        per_window.append((pick, why))
    chosen, why = min(
        per_window,
        key=lambda item: (
            -item[0].heavy_clients,
            -item[0].heavy_refused,
            item[0].ordinary_refused,
            _window_rank(item[0].candidate.window_ms),
        ),
    )
    if heavy:
        capped = sorted(
            (k for k, _ in chosen.top if k in heavy), key=lambda k: -len(population.times[k])
        )
        named = ", ".join(names[population.clients[k]] or "?" for k in capped[:3])
        named = f" ({named})" if named else ""
        if len(heavy) == 1:
            heavy_text = (
                "it caps the one heavy client"
                if chosen.heavy_clients
                else ("it does not cap the one heavy client")
            )
        else:
            heavy_text = f"it caps {chosen.heavy_clients} of the {len(heavy)} heavy clients"
        heavy_text += named
    else:
        heavy_text = "no client stands out as heavy"
    reason = (
        f"the lowest limit that refuses at most {budget_text} of ordinary clients' requests "
        f"(it refuses {_pct(chosen.ordinary_refused, ordinary_requests)}); {heavy_text}; {why}"
    )
    return chosen, reason


def _pct(part: int, whole: int) -> str:
    share = _share(part, whole) * 100
    return f"{share:.2f} %" if 0 < share < 1 else f"{share:.1f} %"


# -- grouping ---------------------------------------------------------------------------------


def _tier_populations(
    trace: Trace, by: str, tier_by: str, ms: Sequence[int]
) -> dict[str, dict[int, Population]]:
    """Per route name, per tier (a number in ``trace.strings``, -1 for none): its clients."""
    ids = identities(trace, by)
    tiers = identities(trace, tier_by)
    grouped: dict[tuple[int, int], dict[int, list[int]]] = {}
    for client, route, tier, t in zip(ids, trace.namespaces, tiers, ms, strict=True):
        if client < 0:
            continue
        clients = grouped.get((route, tier))
        if clients is None:
            clients = grouped[(route, tier)] = {}
        found = clients.get(client)
        if found is None:
            found = clients[client] = []
        found.append(t)
    out: dict[str, dict[int, Population]] = {}
    for (route, tier), clients in grouped.items():
        name = trace.namespace_names[route] or ""
        out.setdefault(name, {})[tier] = Population(name, list(clients), list(clients.values()))
    return out


def _user_agents(
    trace: Trace, by: str, wanted: Mapping[int, set[int]], overall: set[int]
) -> tuple[dict[tuple[int, int], str], dict[int, str]]:
    """The most frequent user agent of each wanted client, per route number and overall."""
    ids = identities(trace, by)
    wanted_any = overall.union(*wanted.values()) if wanted else set(overall)
    per_route: Counter[tuple[int, int, int]] = Counter()
    for client, route, agent in zip(ids, trace.namespaces, trace.user_agents, strict=True):
        if client in wanted_any and agent >= 0:
            per_route[(route, client, agent)] += 1
    best: dict[tuple[int, int], tuple[int, str]] = {}
    everywhere: Counter[tuple[int, int]] = Counter()
    for (route, client, agent), n in per_route.items():
        everywhere[(client, agent)] += n
        text = trace.strings[agent] or ""
        found = best.get((route, client))
        if found is None or n > found[0]:
            best[(route, client)] = (n, text)
    overall_best: dict[int, tuple[int, str]] = {}
    for (client, agent), n in everywhere.items():
        found = overall_best.get(client)
        if found is None or n > found[0]:
            overall_best[client] = (n, trace.strings[agent] or "")
    return (
        {key: text for key, (_, text) in best.items()},
        {client: text for client, (_, text) in overall_best.items()},
    )


def _agent_lookup(agents: Mapping[tuple[int, int], str], route: int) -> Callable[[int], str | None]:
    """A client's most frequent user agent on ``route`` (a number in the trace's namespaces)."""
    return lambda client: agents.get((route, client))


def _top(population: Population, count: int = TOP_TALKERS) -> list[int]:
    """Positions of the population's busiest clients, most requests first."""
    order = sorted(range(len(population.clients)), key=lambda k: (-len(population.times[k]), k))
    return order[:count]


# -- the entry point -------------------------------------------------------------------------


def _check_protect(protect: object) -> float:
    if isinstance(protect, bool) or not isinstance(protect, (int, float)):
        raise InvalidArgumentError(
            f"protect must be a number of percent from 0 to 100, got {type(protect).__name__}"
        )
    if not 0 <= protect <= 100:  # nan fails too
        raise InvalidArgumentError(
            f"protect must be between 0 and 100 (the percent of ordinary clients' requests to "
            f"spare, 99 by default), got {protect!r}"
        )
    return float(protect)


def _check_algorithms(algorithms: object) -> tuple[Algorithm, ...]:
    if isinstance(algorithms, str) or not isinstance(algorithms, Iterable):
        raise InvalidArgumentError(
            f"algorithms must be a sequence of names among {', '.join(ALGORITHMS)}, "
            f"got {algorithms!r:.60}"
        )
    chosen: list[Algorithm] = []
    for name in algorithms:
        if name not in ALGORITHMS:
            raise InvalidArgumentError(
                f"algorithms: unknown algorithm {name!r}; give names among {', '.join(ALGORITHMS)}"
            )
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise InvalidArgumentError("algorithms must name at least one algorithm")
    return tuple(a for a in ALGORITHMS if a in chosen)


def _check_windows(windows: object) -> tuple[int, ...]:
    if isinstance(windows, (str, bytes)) or not isinstance(windows, Iterable):
        raise InvalidArgumentError(
            f'windows must be a sequence of durations such as (60, "1 h"), got {windows!r:.60}'
        )
    found = sorted({duration_ms(w, name="windows") for w in windows})
    if not found:
        raise InvalidArgumentError("windows must hold at least one window")
    return tuple(found)


def _check_limits(limits: object) -> tuple[int, ...] | None:
    if limits is None:
        return None
    if isinstance(limits, (str, bytes)) or not isinstance(limits, Iterable):
        raise InvalidArgumentError(f"limits must be a sequence of ints, got {limits!r:.60}")
    found: set[int] = set()
    for limit in limits:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise InvalidArgumentError(f"limits must hold ints, got {limit!r:.40}")
        if not 1 <= limit <= MAX_TOKENS:
            raise InvalidArgumentError(
                f"limits must be between 1 and {MAX_TOKENS:_}, got {limit:_}"
            )
        found.add(limit)
    if not found:
        raise InvalidArgumentError("limits must hold at least one limit (or be None)")
    return tuple(sorted(found))


def advise_ratelimit(
    trace: Trace,
    *,
    by: str = "ip",
    protect: float = 99.0,
    algorithms: Sequence[Algorithm] = ALGORITHMS,
    windows: Sequence[float | str] = DEFAULT_WINDOWS,
    limits: Sequence[int] | None = None,
    tier_by: str | None = None,
    max_routes: int = 50,
    progress: Callable[[int, int], None] | None = None,
) -> RatelimitAdvice:
    """Recommend a rate limit per route (and tier) of ``trace``, and over the whole trace.

    Args:
        trace: the requests (:func:`~redkit.advise.read_trace`); it must hold some.
        by: what names a client: ``"ip"``, ``"user"`` or an attribute the trace was read with
            (``"header:X-API-Key"``).
        protect: the percent of ordinary clients' requests to spare: the recommended limit
            refuses at most ``100 - protect`` % of them.
        algorithms: the algorithms to compare (:data:`~redkit.advise.ratelimit_sim.ALGORITHMS`).
        windows: the candidate windows (seconds or ``"1 m"``); :data:`DEFAULT_WINDOWS`.
        limits: the candidate limits for every window; ``None`` derives eight per window from
            the ordinary clients' peaks (see the module's docstring).
        tier_by: an attribute column naming each request's tier (``"header:X-Plan"``): one
            entry and limit per route and tier, as :class:`~redkit.TieredRatelimit` code.
        max_routes: how many of the busiest routes to analyse (0: the overall entry only).
        progress: called as ``progress(done, total)`` after each route analysed.

    Raises:
        InvalidArgumentError: naming the argument, for any bad one, an empty trace, or a trace
            where no request names a client for ``by``.

    """
    if not isinstance(trace, Trace):
        raise InvalidArgumentError(
            f"trace must be a Trace (from read_trace), got {type(trace).__name__}"
        )
    if len(trace) == 0:
        raise InvalidArgumentError(
            f"trace: {trace.source!r} holds no request ({trace.malformed} malformed lines); "
            "give a log with some"
        )
    if not isinstance(by, str):
        raise InvalidArgumentError(f"by must be a str such as 'ip', got {by!r:.40}")
    settings = _Settings(
        by=by,
        protect=_check_protect(protect),
        algorithms=_check_algorithms(algorithms),
        windows_ms=_check_windows(windows),
        limits=_check_limits(limits),
    )
    if tier_by is not None and not isinstance(tier_by, str):
        raise InvalidArgumentError(f"tier_by must be a str or None, got {tier_by!r:.40}")
    if isinstance(max_routes, bool) or not isinstance(max_routes, int) or max_routes < 0:
        raise InvalidArgumentError(f"max_routes must be an int, at least 0, got {max_routes!r}")
    if progress is not None and not callable(progress):
        raise InvalidArgumentError("progress must be a callable(done, total) or None")
    ms = to_ms(trace.times)
    whole, per_route = populations(trace, by, overall="(all)", ms=ms)  # checks `by`
    if tier_by is not None and tier_by not in trace.attributes:
        kept = ", ".join(repr(name) for name in trace.attributes) or "none"
        raise InvalidArgumentError(
            f"tier_by={tier_by!r}: the trace has no such column (kept: {kept}); read the "
            f"log asking for it (attributes=[{tier_by!r}])"
        )
    if not whole.clients:
        raise InvalidArgumentError(
            f"by={by!r}: no request of the trace names a client that way; choose another by"
        )
    names = trace.strings
    busy = sorted((p for p in per_route.values() if p.clients), key=lambda p: (-p.requests, p.name))
    kept_routes, left_out = busy[:max_routes], busy[max_routes:]

    # The work: the overall population, then each kept route (or each of its tiers).
    jobs: list[tuple[Population, str | None]] = [(p, None) for p in kept_routes]
    untiered_names: dict[str, str | None] = {}
    if tier_by is not None:
        jobs = []
        tiered = _tier_populations(trace, by, tier_by, ms)
        for route in kept_routes:
            by_tier = tiered.get(route.name, {})
            given = {number: names[number] or "" for number in by_tier if number >= 0}
            untiered = "default"
            while untiered in given.values():
                untiered += "_"
            labels = {number: given.get(number, untiered) for number in by_tier}
            untiered_names[route.name] = untiered if -1 in by_tier else None
            for number in sorted(by_tier, key=labels.__getitem__):
                jobs.append((by_tier[number], labels[number]))
    total = 1 + len(jobs)
    overall = _analyse(whole, settings, names)
    if progress is not None:
        progress(1, total)
    analyses: list[tuple[_Analysis, str | None]] = []
    for done, (population, label) in enumerate(jobs, 2):
        analyses.append((_analyse(population, settings, names), label))
        if progress is not None:
            progress(done, total)

    # Top talkers' user agents, in one pass.
    route_ids = {name: i for i, name in enumerate(trace.namespace_names.values)}
    wanted: dict[int, set[int]] = {}
    for analysis, _ in analyses:
        pop = analysis.population
        wanted.setdefault(route_ids.get(pop.name, -1), set()).update(
            pop.clients[k] for k in _top(pop)
        )
    agents, overall_agents = _user_agents(
        trace, by, wanted, {whole.clients[k] for k in _top(whole)}
    )

    code_names = _Names()
    overall_ident = code_names.take("all")
    left_text = ""
    if left_out:
        several = len(left_out) != 1
        left_text = (
            f"; {len(left_out)} quieter route{'s' if several else ''} "
            f"({sum(p.requests for p in left_out):,} requests) "
            f"{'are' if several else 'is'} counted here only"
        )
    overall_rec = _recommendation(
        overall,
        _single_code(overall_ident, overall.chosen),
        extra=left_text + ("; over every tier" if tier_by is not None else ""),
    )
    overall_advice = _route_advice(overall, "(all)", overall_rec, overall_agents.get, names)

    routes: list[RouteAdvice] = []
    by_route: dict[str, list[tuple[_Analysis, str | None]]] = {}
    for analysis, label in analyses:
        by_route.setdefault(analysis.population.name, []).append((analysis, label))
    for route in kept_routes:
        entries = by_route.get(route.name, [])
        ident = code_names.take(route.name)
        agent_of = _agent_lookup(agents, route_ids.get(route.name, -1))
        if tier_by is None:
            analysis = entries[0][0]
            rec = _recommendation(analysis, _single_code(ident, analysis.chosen))
            routes.append(_route_advice(analysis, route.name, rec, agent_of, names))
            continue
        untiered_name = untiered_names.get(route.name)
        code = _tiered_code(ident, [(t or "", a.chosen) for a, t in entries], untiered_name)
        for analysis, label in entries:
            tier = label or ""
            extra = f"; tier {tier!r} of the route's TieredRatelimit"
            if tier == untiered_name:
                extra += f" (requests without {tier_by}: its default_tier)"
            rec = _recommendation(analysis, code, extra=extra)
            routes.append(
                _route_advice(
                    analysis,
                    f"{route.name} (tier {tier})",
                    rec,
                    agent_of,
                    names,
                    route=route.name,
                    tier=tier,
                )
            )
    advice_settings: dict[str, Any] = {
        "by": by,
        "protect": settings.protect,
        "algorithms": list(settings.algorithms),
        "windows_s": [w / 1000 for w in settings.windows_ms],
        "limits": None if settings.limits is None else list(settings.limits),
        "tier_by": tier_by,
        "max_routes": max_routes,
        "routes_left_out": len(left_out),
        "unidentified_requests": whole.unidentified,
    }
    return RatelimitAdvice(trace_summary(trace), advice_settings, overall_advice, tuple(routes))


def _single_code(ident: str, row: _Row) -> str:
    return f"{ident}_limit = " + _call(
        "Ratelimit",
        ["redis", row.candidate.code(), f"prefix={_literal(f'{CODE_PREFIX}:{ident}')}"],
    )


def _tiered_code(ident: str, tiers: Sequence[tuple[str, _Row]], default: str | None) -> str:
    lines = [f"{ident}_limit = TieredRatelimit(", "    redis,", "    {"]
    lines += [f"        {_literal(tier)}: {row.candidate.code()}," for tier, row in tiers]
    lines += ["    },", f"    prefix={_literal(f'{CODE_PREFIX}:{ident}')},"]
    if default is not None:
        lines.append(f"    default_tier={_literal(default)},")
    lines.append(")")
    return "\n".join(lines)


def _recommendation(analysis: _Analysis, code: str, extra: str = "") -> RatelimitRecommendation:
    row = analysis.chosen
    return RatelimitRecommendation(
        algorithm=row.candidate.algorithm,
        limit=row.candidate.limit,
        window_s=row.window_s,
        refused_ordinary_share=_share(row.ordinary_refused, analysis.ordinary_requests),
        refused_heavy_clients=row.heavy_clients,
        reason=analysis.reason + extra,
        code=code,
    )


def _route_advice(
    analysis: _Analysis,
    name: str,
    recommendation: RatelimitRecommendation,
    agent_of: Callable[[int], str | None],
    strings: Strings,
    *,
    route: str | None = None,
    tier: str | None = None,
) -> RouteAdvice:
    pop = analysis.population
    requests = pop.requests
    talkers = [
        {
            "client": strings[pop.clients[k]],
            "requests": len(pop.times[k]),
            "share": _share(len(pop.times[k]), requests),
            "user_agent": agent_of(pop.clients[k]),
        }
        for k in _top(pop)
    ]
    candidates = [
        {
            "algorithm": r.candidate.algorithm,
            "limit": r.candidate.limit,
            "window_s": r.window_s,
            "refused_requests_share": _share(r.refused, requests),
            "refused_clients_share": _share(r.refused_clients, len(pop.clients)),
            "refused_ordinary_share": _share(r.ordinary_refused, analysis.ordinary_requests),
            "refused_top": [{"client": strings[pop.clients[k]], "refused": n} for k, n in r.top],
        }
        for r in analysis.rows
    ]
    return RouteAdvice(
        name=name,
        requests=requests,
        clients=len(pop.clients),
        rates=analysis.rates,
        burst=analysis.burst,
        top_talkers=talkers,
        candidates=candidates,
        recommendation=recommendation,
        route=pop.name if route is None else route,
        tier=tier,
        heavy=tuple(strings[pop.clients[k]] or "" for k in sorted(analysis.heavy)),
    )
