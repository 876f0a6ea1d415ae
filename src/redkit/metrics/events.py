"""The events redkit's metrics know: per feature, its name's label, its counters, its timings.

Both exporters (:mod:`redkit.metrics.prometheus`, :mod:`redkit.metrics.opentelemetry`) take
their label values from here and from the instances' configured namespaces and prefixes only,
never from a call's arguments, so the number of series stays bounded: a counter word outside
a feature's vocabulary is counted as ``"other"``, a timing outside it is not recorded, and an
unknown feature is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from redkit.core.errors import InvalidArgumentError
from redkit.core.telemetry import add_observer, remove_observer
from redkit.metrics.totals import Record, Totals

__all__ = [
    "DEFAULT_BUCKETS",
    "DEFAULT_DURATIONS",
    "FEATURES",
    "OTHER",
    "Feature",
    "Record",
    "Resolving",
    "both",
    "event_word",
    "ignore",
    "timings_named",
]

#: Histogram bounds in seconds: a Redis round trip takes 0.1 to 1 ms, a loader far longer.
DEFAULT_BUCKETS = (
    *(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

#: The timings recorded as histograms by default: the loads, which are rare and slow. A
#: decision's histogram costs an update on every decision (docs/metrics.md, "Cost"); add
#: ``"ratelimit.decision"`` to ``durations=`` for it.
DEFAULT_DURATIONS = ("cache.load",)


# Series resolved per (feature, name, word) at most: they are few, but never grow unbounded.
_MAX_RESOLVED = 4096

_Self = TypeVar("_Self", bound="Resolving")

#: The label value of a counter word that no vocabulary names.
OTHER = "other"


@dataclass(frozen=True)
class Feature:
    """One feature's vocabulary.

    Attributes:
        name_label: the label that carries the instance's name (``namespace``, ``prefix``,
            ``driver``).
        event_label: the label that carries the counter word (``event``, ``outcome``).
        counters: the counter words the feature reports.
        timings: the timings it reports (``what``), each a histogram in seconds.

    """

    name_label: str
    event_label: str
    counters: frozenset[str]
    timings: frozenset[str] = frozenset()


FEATURES: dict[str, Feature] = {
    "cache": Feature(
        "namespace",
        "event",
        frozenset(
            {
                *("hits", "misses", "loads", "errors", "stale_served", "early_refreshes"),
                *("local_hits", "corrupt", "leases_won", "leases_lost"),
            }
        ),
        frozenset({"load"}),
    ),
    "ratelimit": Feature(
        "prefix",
        "outcome",
        frozenset({"allowed", "blocked", "denied", "timeout", "cache_block"}),
        frozenset({"decision"}),
    ),
    "concurrency": Feature(
        "prefix", "event", frozenset({"acquired", "refused", "released", "timeout"})
    ),
    "sessions": Feature(
        "prefix",
        "event",
        frozenset(
            {
                *("created", "loaded", "missing", "rotated", "deleted", "revoked"),
                *("conflicts", "unavailable"),
            }
        ),
    ),
    "driver": Feature(
        "driver",
        "event",
        frozenset(
            {
                *("round_trips", "batched_commands", "timeouts", "errors"),
                *("circuit_opened", "circuit_closed"),
            }
        ),
    ),
}


def timings_named(names: Iterable[str], argument: str) -> frozenset[str]:
    """The timings ``names`` (``"feature.what"``) as a set; an unknown one is refused.

    Raises:
        InvalidArgumentError: naming ``argument``, the unknown names and the known ones.

    """
    known = {f"{feature}.{what}" for feature, f in FEATURES.items() for what in f.timings}
    chosen = frozenset([names] if isinstance(names, str) else names)
    unknown = sorted(chosen - known)
    if unknown:
        raise InvalidArgumentError(
            f"{argument}: no feature times {', '.join(map(repr, unknown))}; "
            f"choose among {', '.join(sorted(known))}"
        )
    return chosen


def event_word(feature: Feature, counter: str) -> str:
    """``counter`` as a label value: itself when the vocabulary has it, else ``"other"``."""
    return counter if counter in feature.counters else OTHER


def ignore(_: float) -> None:
    """What an event outside every vocabulary records: nothing."""


class Resolving:
    """An observer that finds each event's series once, then only calls it.

    The counts go to exact totals kept here (:class:`~redkit.metrics.totals.Totals`), which the
    subclasses expose; they say how a timing becomes a :data:`Record` (``_resolve_timing``).
    The hot path is one dictionary lookup and that call.
    """

    def __init__(self) -> None:
        """No series resolved yet; every counter's totals, empty."""
        self._resolved: dict[tuple[str, str, str], Record] = {}
        #: Per feature (but the driver), its events' totals by (name, word).
        self._events = {feature: Totals() for feature in FEATURES if feature != "driver"}
        #: Per driver counter, its totals by driver kind; the open circuits apart.
        closing = {"circuit_closed"}
        self._driver = {counter: Totals() for counter in FEATURES["driver"].counters - closing}
        self._open = Totals()

    def count(self, feature: str, name: str, counter: str, n: int) -> None:
        """Add ``n`` to the series of ``counter`` of ``name``."""
        key = (feature, name, counter)
        record = self._resolved.get(key)
        if record is None:
            record = self._keep(key, self._resolve_count(feature, name, counter))
        record(n)

    def timing(self, feature: str, name: str, what: str, seconds: float) -> None:
        """Record that ``what`` of ``name`` took ``seconds``."""
        key = (feature, name, "\0" + what)  # apart from the counters' keys
        record = self._resolved.get(key)
        if record is None:
            record = self._keep(key, self._resolve_timing(feature, name, what))
        record(seconds)

    def _keep(self, key: tuple[str, str, str], record: Record) -> Record:
        if len(self._resolved) < _MAX_RESOLVED:
            self._resolved[key] = record
        return record

    def _resolve_count(self, feature: str, name: str, counter: str) -> Record:
        if feature == "driver":
            if counter == "circuit_closed":
                return self._open.adder((name,), -1)
            totals = self._driver.get(counter)
            if totals is None:
                return ignore
            record = totals.adder((name,))
            if counter == "circuit_opened":  # and one more circuit open now
                return both(record, self._open.adder((name,), 1))
            return record
        known = FEATURES.get(feature)
        if known is None:
            return ignore
        return self._events[feature].adder((name, event_word(known, counter)))

    def _resolve_timing(self, feature: str, name: str, what: str) -> Record:
        raise NotImplementedError  # pragma: no cover

    def enable(self: _Self) -> _Self:
        """Receive every instance's events from now on (:func:`redkit.core.telemetry.add_observer`).

        Returns this object: ``metrics = PrometheusMetrics().enable()``.
        """
        add_observer(self)
        return self

    def disable(self) -> None:
        """Stop receiving events (:func:`redkit.core.telemetry.remove_observer`)."""
        remove_observer(self)


def both(first: Record, second: Record) -> Record:
    """One record that does ``first`` then ``second``."""

    def record(n: float) -> None:
        first(n)
        second(n)

    return record
