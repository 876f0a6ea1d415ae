"""Cache advice: the TTL and ``Cache(...)`` options each namespace of a trace should get.

:func:`advise_cache` replays a trace through :class:`~redkit.advise.cache_sim.CacheSimulation`
(the TTL-only replay at every TTL tried, the refresh effects at the chosen TTL, eviction under
four memory budgets with the three Redis policies) and decides, per namespace and for the whole
trace, by these rules:

- **TTL.** A TTL is *eligible* when (a) for a namespace whose writes appear in the trace, its
  ``stale_hit_share`` (what a TTL without invalidation would serve stale) is at most
  ``max_stale_share``, and (b) with a ``budget``, the most Redis memory its entries take at
  once (values and per-entry overhead) fits in the budget. A namespace is held to the whole
  budget on its own; the overall advice says whether they all fit together. Among the eligible
  TTLs the **shortest whose hit ratio is within 0.5 points of the best eligible one** wins:
  longer TTLs beyond that knee buy nothing but staleness and memory. When no TTL fits the
  budget, the memory condition is dropped (eviction will trim the cache; the memory table
  shows what it costs); when no TTL keeps stale hits under the share, the shortest TTL is
  taken.
- **early_refresh** is recommended (``early_refresh=1.0``) when XFetch turns a *measurable*
  number of waits into hits: at least one, and at least 0.1 % of the reads
  (:data:`MEASURABLE_SHARE`). Otherwise the code says ``early_refresh=None``, because
  ``Cache``'s default is 1.0.
- **stale_ttl** is ``max_stale`` when serving stale entries while they reload answers at least
  one read at once (the refresh row's ``stale_ttl_hits``), else none.
- **local_ttl.** A process-local tier of ``L = min(5 s, TTL)`` is recommended when the TTL-only
  replay at ``L`` hits at least half of the reads (:data:`LOCAL_SHARE`): that is the share a
  local copy living ``L`` would answer from process memory in a single process (each of ``N``
  processes sees fewer reads, so fewer repeat within ``L``: the share is an upper bound).
  Writes are safe with it: redkit announces invalidations so other processes drop copies.
- **memory.** At the chosen TTL, with ``P`` its peak Redis memory, the budgets tried are
  ``P/8, P/4, P/2, P`` (with a ``budget``, it replaces the grid point nearest to it; a budget
  above ``P`` gives ``P/4, P/2, P, budget``). ``memory_bytes`` is the smallest tried budget
  under ``allkeys-lru`` whose hit ratio is within 1 point of the unlimited cache (``P`` if
  none), ``None`` when the trace records no sizes.

Every recommendation has a plain-words ``reason`` and ``code``: a ``Cache(...)`` call to paste,
its variable and namespace derived from the route template (ASCII letters, digits and ``_``, so
the code is valid Python whatever the log held; a namespace that already reads as a redkit
namespace, such as a recorded trace's ``myapp:users``, is kept as it is).
"""

from __future__ import annotations

import builtins
import json
import keyword
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redkit.advise._units import (
    format_bytes,
    format_seconds,
    format_share,
    parse_seconds,
    parse_size,
)
from redkit.advise.cache_sim import (
    DEFAULT_TTLS,
    POLICIES,
    CacheSimulation,
    MemoryRow,
    RefreshRow,
    ScopeStats,
    TtlRow,
)
from redkit.advise.report import SCHEMA
from redkit.advise.summary import trace_summary
from redkit.advise.trace import Trace
from redkit.core.durations import duration_ms
from redkit.core.errors import InvalidArgumentError
from redkit.core.keys import digest

__all__ = [
    "KNEE_POINTS",
    "LOCAL_SHARE",
    "LOCAL_TTL_S",
    "MEASURABLE_SHARE",
    "MEMORY_POINTS",
    "CacheAdvice",
    "CacheRecommendation",
    "NamespaceAdvice",
    "advise_cache",
]

#: A TTL within this much hit ratio (0.5 points) of the best eligible one is as good.
KNEE_POINTS = 0.005
#: A memory budget within this much hit ratio (1 point) of unlimited memory is enough.
MEMORY_POINTS = 0.01
#: Early refresh pays when it saves at least this share of the reads (and at least one).
MEASURABLE_SHARE = 0.001
#: The local tier tried: this long, or the TTL when shorter (seconds).
LOCAL_TTL_S = 5.0
#: The local tier pays when it would answer at least this share of the reads.
LOCAL_SHARE = 0.5
# Float noise must not flip a comparison of hit ratios that are equal on paper.
_EPSILON = 1e-9
# A code line longer than this is split one argument a line, as black and ruff would.
_CODE_WIDTH = 88
# Names the pasted code must not rebind: the connection, the class, and Python's own.
_RESERVED = frozenset({"redis", "Cache", *dir(builtins)})
# A name that already reads as a redkit namespace (a recorded trace's) is kept verbatim.
_PLAIN_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")


@dataclass(frozen=True)
class CacheRecommendation:
    """The settings advised for one namespace (or the whole trace), and why."""

    ttl_s: float
    early_refresh: bool
    stale_ttl_s: float | None
    local_ttl_s: float | None
    #: Redis memory the namespace needs (bytes); ``None`` when the trace has no sizes.
    memory_bytes: int | None
    #: The TTL-only hit ratio at ``ttl_s`` (unlimited memory).
    hit_ratio: float
    #: Of a TTL-only cache not told of writes; ``None`` when no writes were seen.
    stale_hit_share: float | None
    reason: str
    code: str

    def to_json(self) -> dict[str, Any]:
        """The schema's ``recommendation`` block."""
        return {
            "ttl_s": self.ttl_s,
            "early_refresh": self.early_refresh,
            "stale_ttl_s": self.stale_ttl_s,
            "local_ttl_s": self.local_ttl_s,
            "memory_bytes": self.memory_bytes,
            "hit_ratio": self.hit_ratio,
            "stale_hit_share": self.stale_hit_share,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass(frozen=True)
class NamespaceAdvice:
    """What the replays found for one namespace (or ``"(all)"``), and the recommendation."""

    name: str
    requests: int
    reads: int
    writes: int
    keys: int
    mean_bytes: float | None
    writes_seen: bool
    #: One per TTL tried, in the order of the settings' ``ttls_s``.
    ttl_rows: list[TtlRow]
    #: At the recommended TTL: each budget under each policy (empty without sizes).
    memory_rows: list[MemoryRow]
    #: Early refresh and ``stale_ttl`` at the recommended TTL.
    refresh: RefreshRow
    recommendation: CacheRecommendation

    def to_json(self) -> dict[str, Any]:
        """The schema's block of one namespace."""
        return {
            "name": self.name,
            "requests": self.requests,
            "reads": self.reads,
            "writes": self.writes,
            "keys": self.keys,
            "mean_bytes": self.mean_bytes,
            "writes_seen": self.writes_seen,
            "ttl_rows": [
                {
                    "ttl_s": r.ttl_s,
                    "hits": r.hits,
                    "misses": r.misses,
                    "hit_ratio": r.hit_ratio,
                    "origin_load_per_s": r.origin_load_per_s,
                    "stale_hit_share": r.stale_hit_share,
                    "peak_bytes": r.peak_bytes,
                    "coalesced": r.coalesced,
                }
                for r in self.ttl_rows
            ],
            "memory_rows": [
                {
                    "budget_bytes": r.budget_bytes,
                    "policy": r.policy,
                    "ttl_s": r.ttl_s,
                    "hit_ratio": r.hit_ratio,
                }
                for r in self.memory_rows
            ],
            "refresh": {
                "ttl_s": self.refresh.ttl_s,
                "early_refresh_hits": self.refresh.early_refresh_hits,
                "stale_ttl_s": self.refresh.stale_ttl_s,
                "stale_ttl_hits": self.refresh.stale_ttl_hits,
            },
            "recommendation": self.recommendation.to_json(),
        }


@dataclass(frozen=True)
class CacheAdvice:
    """The cache advice on a trace: the trace's summary, the settings, overall, per namespace."""

    #: The schema's ``trace`` block (:func:`~redkit.advise.summary.trace_summary`).
    trace: dict[str, Any]
    #: ``budget_bytes``, ``max_stale_s``, ``loader_ms``, ``ttls_s``: what the advice assumed.
    settings: dict[str, Any]
    overall: NamespaceAdvice
    #: Most read first.
    namespaces: list[NamespaceAdvice]

    def to_json(self) -> dict[str, Any]:
        """The advice as the ``redkit.advise/1`` dict the reports render (docs/advise.md)."""
        return {
            "schema": SCHEMA,
            "kind": "cache",
            "trace": dict(self.trace),
            "settings": dict(self.settings, ttls_s=list(self.settings["ttls_s"])),
            "overall": self.overall.to_json(),
            "namespaces": [ns.to_json() for ns in self.namespaces],
        }


# --- arguments ------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _budget(budget: int | str | None) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, str):
        return parse_size(budget, name="budget")
    if not isinstance(budget, int) or isinstance(budget, bool):
        raise InvalidArgumentError(
            f'budget must be a number of bytes or a size such as "256MB", got '
            f"{type(budget).__name__}"
        )
    if budget < 1:
        raise InvalidArgumentError(f"budget must be at least 1 byte, got {budget}")
    return budget


def _max_stale(max_stale: float | str | None) -> float | None:
    if max_stale is None:
        return None
    if isinstance(max_stale, str):
        return parse_seconds(max_stale, name="max_stale", allow_zero=True)
    if not _is_number(max_stale) or not math.isfinite(max_stale) or max_stale < 0:
        raise InvalidArgumentError(
            f'max_stale must be a number of seconds (0 or more) or a duration such as "30 s", '
            f"got {max_stale!r}"
        )
    return 0.0 if max_stale == 0 else duration_ms(max_stale, name="max_stale") / 1000


def _ttls(ttls: Sequence[float | str]) -> list[float]:
    if isinstance(ttls, (str, bytes)) or not isinstance(ttls, Iterable):
        raise InvalidArgumentError(
            f'ttls must be a sequence of TTLs such as (60, "5 m"), got {type(ttls).__name__}'
        )
    seconds = set()
    for index, ttl in enumerate(ttls):
        name = f"ttls[{index}]"
        if isinstance(ttl, str):
            seconds.add(parse_seconds(ttl, name=name))
        elif _is_number(ttl):
            # Whole milliseconds, as Cache stores them: the code written must mean this TTL.
            seconds.add(duration_ms(ttl, name=name) / 1000)
        else:
            raise InvalidArgumentError(
                f'{name} must be a number of seconds or a duration such as "5 m", got '
                f"{type(ttl).__name__}"
            )
    if not seconds:
        raise InvalidArgumentError("ttls must hold at least one TTL")
    return sorted(seconds)


def _share(value: float, name: str) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise InvalidArgumentError(f"{name} must be a share from 0 to 1, got {value!r}")
    return float(value)


def _loader_ms(value: float) -> float:
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(
            f"loader_ms must be the time a load takes, in milliseconds (0 or more), got {value!r}"
        )
    return float(value)


def _namespaces(trace: Trace, namespaces: Iterable[str] | None) -> list[str] | None:
    if namespaces is None:
        return None
    if isinstance(namespaces, (str, bytes)) or not isinstance(namespaces, Iterable):
        raise InvalidArgumentError(
            f"namespaces must be an iterable of namespace names (a list, not one str), got "
            f"{type(namespaces).__name__}"
        )
    wanted = list(namespaces)
    for name in wanted:
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"namespaces must hold str names, got {type(name).__name__}: {name!r}"
            )
    known = set(trace.namespace_names.values)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        some = ", ".join(repr(n) for n in sorted(known)[:5]) or "none"
        raise InvalidArgumentError(
            f"namespaces: {', '.join(repr(n) for n in unknown[:5])} not in the trace "
            f"(its namespaces include {some})"
        )
    return wanted


# --- code -----------------------------------------------------------------------------------


def duration_text(seconds: float) -> str:
    """``seconds`` as redkit writes a duration: ``"5 m"``, ``"90 s"``, ``"250 ms"``."""
    ms = round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size} {unit}"
    return f"{ms} ms"


def _slug(name: str) -> str:
    """``/api/users/{id}`` as ``users``: ASCII words of the name, ids and ``api`` left out."""
    if name == "(all)":
        return "cache"
    text = re.sub(r"\{[^{}]*\}", " ", name)  # the placeholders of a route template
    # Accents fold to their letters (é to e); what has no ASCII form drops out.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = [w for w in re.findall(r"[a-z0-9]+", ascii_text.lower()) if w != "api"]
    slug = "_".join(words)[:48].strip("_")
    if not slug:
        # Nothing ASCII to go by (``/日本語/{id}``): a short digest keeps it apart and stable.
        slug = "root" if name.strip("/ ") == "" else "ns_" + digest(name, length=8)
    if slug[0].isdigit():
        slug = "ns_" + slug
    return slug


class _Names:
    """Gives each scope a distinct Python variable and a distinct Cache namespace."""

    def __init__(self) -> None:
        self._variables: set[str] = set()
        self._namespaces: set[str] = set()

    @staticmethod
    def _fresh(base: str, taken: set[str]) -> str:
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}_{number}"
        taken.add(name)
        return name

    def of(self, scope_name: str) -> tuple[str, str]:
        """The variable and the namespace for the scope called ``scope_name``."""
        slug = _slug(scope_name)
        variable = slug
        if keyword.iskeyword(variable) or keyword.issoftkeyword(variable) or variable in _RESERVED:
            variable += "_cache"
        variable = self._fresh(variable, self._variables)
        plain = _PLAIN_NAMESPACE.fullmatch(scope_name) is not None
        namespace = self._fresh(scope_name if plain else slug, self._namespaces)
        return variable, namespace


def cache_code(
    variable: str,
    namespace: str,
    ttl_s: float,
    *,
    early_refresh: bool,
    stale_ttl_s: float | None,
    local_ttl_s: float | None,
) -> str:
    """The ``Cache(...)`` call of a recommendation, as Python source (valid for any names).

    ``variable`` must be an identifier; ``namespace`` may be any string: it is written as a
    JSON string literal (quotes, backslashes and non-ASCII escaped), which Python reads as the
    same string.
    """
    if not variable.isidentifier() or keyword.iskeyword(variable):
        raise InvalidArgumentError(f"variable must be a Python identifier, got {variable!r}")
    arguments = [
        "redis",
        f"namespace={json.dumps(namespace)}",
        f"default_ttl={json.dumps(duration_text(ttl_s))}",
        f"early_refresh={'1.0' if early_refresh else 'None'}",
    ]
    if stale_ttl_s is not None:
        arguments.append(f"stale_ttl={json.dumps(duration_text(stale_ttl_s))}")
    if local_ttl_s is not None:
        arguments.append(f"local_ttl={json.dumps(duration_text(local_ttl_s))}")
    line = f"{variable} = Cache({', '.join(arguments)})"
    if len(line) <= _CODE_WIDTH:
        return line
    body = "".join(f"    {argument},\n" for argument in arguments)
    return f"{variable} = Cache(\n{body})"


# --- the rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Choice:
    row: TtlRow
    reason: str


def _points(share: float) -> str:
    return f"{share * 100:.1f} points"


def choose_ttl(
    rows: Sequence[TtlRow],
    stats: ScopeStats,
    *,
    budget: int | None,
    max_stale_share: float,
) -> tuple[TtlRow, str]:
    """The TTL row the rules pick among ``rows`` (sorted by TTL), and why, in plain words."""
    if stats.reads == 0:
        return rows[0], "no reads of it in the trace, so nothing to cache: the shortest TTL tried"

    def stale_ok(row: TtlRow) -> bool:
        share = row.stale_hit_share
        return share is None or share <= max_stale_share + _EPSILON

    def fits(row: TtlRow) -> bool:
        memory = row.peak_memory_bytes
        return budget is None or memory is None or memory <= budget

    fresh_enough = [r for r in rows if stale_ok(r)]
    pool = [r for r in fresh_enough if fits(r)]
    notes: list[str] = []
    if not fresh_enough:
        row = rows[0]
        share = format_share(row.stale_hit_share)
        return row, (
            f"even the shortest TTL serves {share} of its hits stale without invalidation, "
            f"more than the {format_share(max_stale_share)} allowed: the shortest TTL, and "
            f"delete on every write"
        )
    if not pool:
        pool = fresh_enough
        notes.append(
            f"no TTL's peak memory fits in the {format_bytes(budget)} budget, so eviction will "
            f"trim it (see the memory table)"
        )
    best = max(r.hit_ratio for r in pool)
    row = next(r for r in pool if r.hit_ratio >= best - KNEE_POINTS - _EPSILON)
    ttl = format_seconds(row.ttl_s)
    overall_best = max(r.hit_ratio for r in rows)
    gain = overall_best - row.hit_ratio
    longer_gain = [r for r in rows if r.ttl_s > row.ttl_s and r.hit_ratio > best + _EPSILON]
    if gain <= KNEE_POINTS + _EPSILON or not longer_gain:
        if row is rows[-1] and len(rows) > 1:
            why = (
                "the longest TTL tried has the best hit ratio by more than 0.5 points, so a "
                "longer one might add more (try longer TTLs)"
            )
            if not stats.writes_seen:
                why = "no writes in the trace, so staleness is unknown: " + why
        elif stats.writes_seen:
            why = (
                "the shortest TTL within 0.5 points of the best hit ratio: longer TTLs add "
                "only staleness and memory"
            )
        else:
            why = (
                "no writes in the trace, so staleness is unknown: the shortest TTL within 0.5 "
                "points of the best hit ratio (longer ones add only memory)"
            )
    elif any(not stale_ok(r) for r in longer_gain):
        why = (
            f"longer TTLs would serve more than {format_share(max_stale_share)} of their hits "
            f"stale without invalidation: {ttl} gets the most hits that stay under it (longer "
            f"ones would add {_points(gain)} of hit ratio)"
        )
    else:
        why = (
            f"longer TTLs would hold more than the {format_bytes(budget)} budget at their peak; "
            f"{ttl} gets the most hits that fit (longer ones would add {_points(gain)} of hit "
            f"ratio)"
        )
    return row, "; ".join([why, *notes])


def budgets_for(peak: int, budget: int | None) -> list[int]:
    """The four memory budgets tried at a TTL whose entries peak at ``peak`` Redis bytes."""
    grid = [max(1, math.ceil(peak / 8)), max(1, math.ceil(peak / 4)), max(1, math.ceil(peak / 2))]
    if budget is not None and budget >= peak:
        chosen = [*grid[1:], peak, budget]
    elif budget is not None:
        # The user's budget takes the place of the grid point nearest to it (on a log scale).
        nearest = min(grid, key=lambda b: abs(math.log(b / budget)))
        chosen = [b for b in grid if b != nearest] + [budget, peak]
    else:
        chosen = [*grid, peak]
    return sorted(set(chosen))


def memory_needed(rows: Sequence[MemoryRow], unbounded: float, peak: int) -> int:
    """The smallest budget whose ``allkeys-lru`` hit ratio is within 1 point of ``unbounded``."""
    for row in sorted((r for r in rows if r.policy == "allkeys-lru"), key=lambda r: r.budget_bytes):
        if row.hit_ratio >= unbounded - MEMORY_POINTS - _EPSILON:
            return row.budget_bytes
    return peak


def early_refresh_pays(refresh: RefreshRow, reads: int) -> bool:
    """Whether XFetch turns a measurable number of waits into hits (see the module's text)."""
    return refresh.early_refresh_hits >= max(1.0, MEASURABLE_SHARE * reads)


# --- the advice -----------------------------------------------------------------------------


def advise_cache(
    trace: Trace,
    *,
    budget: int | str | None = None,
    max_stale: float | str | None = None,
    loader_ms: float = 50.0,
    ttls: Sequence[float | str] = DEFAULT_TTLS,
    max_stale_share: float = 0.01,
    namespaces: Iterable[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CacheAdvice:
    """The cache advice on ``trace``: per namespace and overall, by the module's rules.

    Args:
        trace: the requests, from :func:`~redkit.advise.read_trace` or a recorded trace.
        budget: the Redis memory for the whole cache, bytes or a size (``"256MB"``,
            ``"1 GiB"``); ``None``: memory is not a constraint (it is still reported).
        max_stale: how long past its TTL a value may be served while it reloads (redkit's
            ``stale_ttl``), seconds or a duration (``"30 s"``); ``None`` or 0: never.
        loader_ms: how long a load from the origin takes, in milliseconds.
        ttls: the TTLs tried (seconds or durations).
        max_stale_share: for a namespace whose writes appear in the trace, the most of its
            hits a TTL without invalidation may serve stale (0..1).
        namespaces: only these namespaces (``None``: all of the trace).
        progress: called with ``(steps done, steps in all)`` as the replays go.

    Raises:
        InvalidArgumentError: naming the argument, for any value out of range or of a wrong
            type, and for a namespace the trace does not have.
        ModuleNotFoundError: without libCacheSim (the ``advise`` extra), for the memory rows.

    """
    if not isinstance(trace, Trace):
        raise InvalidArgumentError(
            f"trace must be a redkit.advise.Trace (from read_trace), got {type(trace).__name__}"
        )
    budget_bytes = _budget(budget)
    stale_s = _max_stale(max_stale)
    loader = _loader_ms(loader_ms)
    tried = _ttls(ttls)
    share = _share(max_stale_share, "max_stale_share")
    wanted = _namespaces(trace, namespaces)
    if progress is not None and not callable(progress):
        raise InvalidArgumentError(
            f"progress must be a callable(done, total) or None, got {type(progress).__name__}"
        )
    report = progress or (lambda done, total: None)

    sim = CacheSimulation(trace, namespaces=wanted)
    # A namespace nobody reads (a POST-only route) has nothing to cache: it is named in the
    # settings, not advised; its writes still count in the whole trace's row.
    scopes = [sim.OVERALL, *(s for s, stats in enumerate(sim.scopes) if stats.reads)]
    unread = [stats.name for stats in sim.scopes if not stats.reads]
    total = 2 + 2 * len(scopes)
    done = 0
    report(done, total)
    loader_s = loader / 1000
    rows = sim.ttl_rows(tried, loader_s=loader_s)
    done += 1
    report(done, total)

    choices = {
        scope: choose_ttl(rows[scope], sim.stats(scope), budget=budget_bytes, max_stale_share=share)
        for scope in scopes
    }
    # The local tier's TTLs that the rows lack: one more replay for all of them.
    local_of = {scope: min(LOCAL_TTL_S, row.ttl_s) for scope, (row, _) in choices.items()}
    missing = sorted({t for t in local_of.values() if t not in tried})
    extra = sim.ttl_rows(missing, loader_s=loader_s) if missing else {}
    done += 1
    report(done, total)

    def row_at(scope: int, ttl: float) -> TtlRow:
        for row in rows[scope]:
            if row.ttl_s == ttl:
                return row
        return next(r for r in extra[scope] if r.ttl_s == ttl)

    # One refresh replay per TTL chosen, for the scopes that chose it.
    stale_ttl = stale_s if stale_s else None
    refreshes: dict[int, RefreshRow] = {}
    by_ttl: dict[float, list[int]] = {}
    for scope, (row, _) in choices.items():
        by_ttl.setdefault(row.ttl_s, []).append(scope)
    for ttl, group in sorted(by_ttl.items()):
        found = sim.refresh(ttl, stale_ttl, loader_s=loader_s, scopes=[s for s in group if s >= 0])
        for scope in group:
            refreshes[scope] = found[scope]
        done += len(group)
        report(done, total)

    names = _Names()
    # Names that already are redkit namespaces (a recorded trace's, "cache" among them) keep
    # them; derived ones come next, and the whole trace's last: it must not take a real one.
    named = {
        scope: names.of(sim.stats(scope).name)
        for scope in sorted(
            scopes,
            key=lambda s: (s == sim.OVERALL, not _PLAIN_NAMESPACE.fullmatch(sim.stats(s).name)),
        )
    }
    advice: dict[int, NamespaceAdvice] = {}
    for scope in scopes:
        stats = sim.stats(scope)
        row, why = choices[scope]
        refresh = refreshes[scope]
        memory_rows: list[MemoryRow] = []
        memory: int | None = None
        peak = row.peak_memory_bytes
        if peak and stats.reads:
            budgets = budgets_for(peak, budget_bytes)
            memory_rows = sim.memory_rows(scope, row.ttl_s, budgets, unbounded=row)
            memory = memory_needed(memory_rows, row.hit_ratio, peak)
        done += 1
        report(done, total)
        advice[scope] = _namespace_advice(
            stats,
            rows[scope],
            row,
            why,
            refresh,
            memory_rows,
            memory,
            row_at(scope, local_of[scope]),
            named[scope],
            budget_bytes,
        )
    return CacheAdvice(
        trace=trace_summary(trace),
        settings={
            "budget_bytes": budget_bytes,
            "max_stale_s": stale_s,
            "loader_ms": loader,
            "ttls_s": tried,
            "unread_namespaces": unread,
        },
        overall=advice[sim.OVERALL],
        namespaces=[advice[scope] for scope in scopes if scope != sim.OVERALL],
    )


def _namespace_advice(
    stats: ScopeStats,
    ttl_rows: list[TtlRow],
    row: TtlRow,
    why: str,
    refresh: RefreshRow,
    memory_rows: list[MemoryRow],
    memory: int | None,
    local_row: TtlRow,
    names: tuple[str, str],
    budget: int | None,
) -> NamespaceAdvice:
    """One scope's advice: the options beyond the TTL, the reason, the code."""
    sentences = [f"TTL {format_seconds(row.ttl_s)}: {why}"]
    early = stats.reads > 0 and early_refresh_pays(refresh, stats.reads)
    if early:
        sentences.append(
            f"early refresh would answer {refresh.early_refresh_hits:,} reads at once that "
            f"would wait on a load"
        )
    stale_ttl_s = refresh.stale_ttl_s if refresh.stale_ttl_hits > 0 else None
    if stale_ttl_s is not None:
        sentences.append(
            f"a stale_ttl of {format_seconds(stale_ttl_s)} would answer "
            f"{refresh.stale_ttl_hits:,} reads at once while their value reloads"
        )
    local_ttl_s = local_row.ttl_s if stats.reads and local_row.hit_ratio >= LOCAL_SHARE else None
    if local_ttl_s is not None:
        sentences.append(
            f"a local tier of {format_seconds(local_ttl_s)} would answer "
            f"{format_share(local_row.hit_ratio)} of reads from process memory"
        )
    if memory is not None:
        held = next(
            (
                r.hit_ratio
                for r in memory_rows
                if r.budget_bytes == memory and r.policy == POLICIES[0]
            ),
            row.hit_ratio,
        )
        text = (
            f"{format_bytes(memory)} of Redis memory (allkeys-lru) keeps a hit ratio of "
            f"{format_share(held)}, within 1 point of an unlimited cache"
        )
        if budget is not None and memory > budget:
            text += f", more than the {format_bytes(budget)} budget"
        sentences.append(text)
    elif stats.reads:
        sentences.append("the trace records no sizes, so memory is not estimated")
    variable, namespace = names
    code = cache_code(
        variable,
        namespace,
        row.ttl_s,
        early_refresh=early,
        stale_ttl_s=stale_ttl_s,
        local_ttl_s=local_ttl_s,
    )
    recommendation = CacheRecommendation(
        ttl_s=row.ttl_s,
        early_refresh=early,
        stale_ttl_s=stale_ttl_s,
        local_ttl_s=local_ttl_s,
        memory_bytes=memory,
        hit_ratio=row.hit_ratio,
        stale_hit_share=row.stale_hit_share,
        reason="; ".join(sentences) + ".",
        code=code,
    )
    return NamespaceAdvice(
        name=stats.name,
        requests=stats.requests,
        reads=stats.reads,
        writes=stats.writes,
        keys=stats.keys,
        mean_bytes=stats.mean_bytes,
        writes_seen=stats.writes_seen,
        ttl_rows=list(ttl_rows),
        memory_rows=memory_rows,
        refresh=refresh,
        recommendation=recommendation,
    )
