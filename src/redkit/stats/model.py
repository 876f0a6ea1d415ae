"""What :func:`redkit.stats.read` answers: the fleet's counts over a range, per name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FleetStats", "NameStats"]

Value = int | float


@dataclass(frozen=True)
class NameStats:
    """One (feature, name)'s counts, bucket by bucket, summed over every process."""

    feature: str
    name: str
    #: ``(bucket start in unix seconds, ((counter, value), ...))``, oldest first, every bucket
    #: of the range (an empty one has no counters).
    buckets: tuple[tuple[int, tuple[tuple[str, Value], ...]], ...]
    #: How many distinct processes reported in the range.
    processes: int

    def totals(self) -> dict[str, Value]:
        """Each counter summed over the range."""
        totals: dict[str, Value] = {}
        for _, counts in self.buckets:
            for counter, value in counts:
                totals[counter] = totals.get(counter, 0) + value
        return totals


@dataclass(frozen=True)
class FleetStats:
    """The fleet statistics of a range of time, read from Redis.

    Counts are summed over every process that reported; missing buckets count 0.
    """

    #: ``"minute"`` or ``"hour"``.
    resolution: str
    #: Seconds in one bucket (60 or 3600).
    step: int
    #: The first bucket's start and the last bucket's start, unix seconds.
    start: int
    end: int
    entries: tuple[NameStats, ...]

    def _entry(self, feature: str, name: str) -> NameStats | None:
        return next((e for e in self.entries if (e.feature, e.name) == (feature, name)), None)

    def names(self, feature: str) -> list[str]:
        """The names of ``feature`` that reported in the range, sorted."""
        return sorted(e.name for e in self.entries if e.feature == feature)

    def totals(self, feature: str, name: str) -> dict[str, Value]:
        """Each counter of ``name`` summed over the range (empty when it did not report)."""
        entry = self._entry(feature, name)
        return {} if entry is None else entry.totals()

    def series(self, feature: str, name: str, counter: str) -> list[tuple[int, Value]]:
        """``(bucket start, value)`` of every bucket of the range, missing ones as 0."""
        entry = self._entry(feature, name)
        if entry is None:
            return [(t, 0) for t in range(self.start, self.end + 1, self.step)]
        return [(t, dict(counts).get(counter, 0)) for t, counts in entry.buckets]

    def processes(self, feature: str, name: str) -> int:
        """How many distinct processes of ``name`` reported in the range."""
        entry = self._entry(feature, name)
        return 0 if entry is None else entry.processes

    def hit_ratio(self, name: str) -> float | None:
        """A cache's ``hits / (hits + misses)`` over the range; ``None`` with no reads."""
        totals = self.totals("cache", name)
        reads = totals.get("hits", 0) + totals.get("misses", 0)
        return None if not reads else totals.get("hits", 0) / reads

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: the range and, per feature and name, totals and series."""
        return {
            "resolution": self.resolution,
            "step": self.step,
            "start": self.start,
            "end": self.end,
            "entries": [
                {
                    "feature": e.feature,
                    "name": e.name,
                    "processes": e.processes,
                    "totals": e.totals(),
                    "buckets": [{"start": t, "counts": dict(counts)} for t, counts in e.buckets],
                }
                for e in self.entries
            ],
        }
