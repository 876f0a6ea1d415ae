"""Exact running totals and latency histograms, kept in the process, read when scraped.

The exporters' own counters and histograms (prometheus-client's, OpenTelemetry's) do more
work on every event than redkit's hot paths can pay: a lock per value, exemplar checks, the
attributes hashed again. These cost one dictionary-free locked update per event (the series is
found once, when its record is made) and are turned into metric families or observations
only when a scrape or a collection asks.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Sequence

__all__ = ["Durations", "Record", "Totals", "commands_sent"]

Labels = tuple[str, ...]

#: What one event does to its series: add a count, or observe a time.
Record = Callable[[float], None]


class Totals:
    """One metric's series: a running total per tuple of label values."""

    def __init__(self) -> None:
        """No series yet."""
        self._lock = threading.Lock()
        self._series: dict[Labels, list[int]] = {}

    def adder(self, labels: Labels, sign: int = 1) -> Record:
        """The record that adds ``sign * n`` to the series of ``labels`` (made if new)."""
        with self._lock:
            total = self._series.setdefault(labels, [0])
        lock = self._lock

        def add(n: float) -> None:
            with lock:
                total[0] += sign * int(n)

        return add

    def values(self) -> list[tuple[Labels, int]]:
        """Every series and its total now."""
        with self._lock:
            return [(labels, total[0]) for labels, total in self._series.items()]


class Durations:
    """One histogram's series: per tuple of label values, counts per bucket and the sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        """Buckets with these upper bounds (increasing), and one above them all."""
        self.bounds = tuple(bounds)
        self._lock = threading.Lock()
        # Per series: a count per bucket (not cumulative), the overflow bucket, then the sum.
        self._series: dict[Labels, list[float]] = {}

    def recorder(self, labels: Labels) -> Record:
        """The record that observes one duration, in seconds, in the series of ``labels``."""
        with self._lock:
            cells = self._series.setdefault(labels, [0.0] * (len(self.bounds) + 2))
        bounds, lock = self.bounds, self._lock

        def observe(seconds: float) -> None:
            index = bisect_left(bounds, seconds)  # the first bound >= seconds (``le``)
            with lock:
                cells[index] += 1
                cells[-1] += seconds

        return observe

    def values(self) -> list[tuple[Labels, list[float], float]]:
        """Every series: its counts per bucket (the overflow last) and its sum."""
        with self._lock:
            return [(labels, cells[:-1], cells[-1]) for labels, cells in self._series.items()]


def commands_sent(driver: dict[str, Totals]) -> list[tuple[Labels, int]]:
    """Per driver, the commands sent: one per round trip, plus those batched beyond it.

    Added up when read, so that a round trip, the blocking driver's event on every operation,
    updates one total.
    """
    sent = dict(driver["round_trips"].values())
    for labels, batched in driver["batched_commands"].values():
        sent[labels] = sent.get(labels, 0) + batched
    return list(sent.items())
