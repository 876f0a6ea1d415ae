"""What a cache did: the counters that every mechanism of a cache bumps."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from redkit.core.telemetry import Telemetry

__all__ = ["CacheStats", "Counters"]


@dataclass
class CacheStats:
    """Counters of what a cache did, since it was created."""

    hits: int = 0
    misses: int = 0
    loads: int = 0
    errors: int = 0
    corrupt: int = 0
    #: Loads this process was granted the cross-process lease for.
    leases_won: int = 0
    #: Misses that waited for another process's load instead of loading.
    leases_lost: int = 0
    #: Stale values served while a background refresh ran (stale-while-revalidate).
    stale_served: int = 0
    #: Values reloaded before they expired (XFetch early refresh).
    early_refreshes: int = 0
    #: Hits answered by the local tier, without a round trip.
    local_hits: int = 0


class Counters:
    """One cache's :class:`CacheStats`, safe to bump from many threads at once.

    Every bump is reported to ``telemetry`` too, under the same names (docs/stats.md).
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self.telemetry = telemetry

    def hit(self) -> None:
        """Count one hit: the hot path's own counter, with no keyword dict or getattr."""
        with self._lock:
            self.stats.hits += 1
        self.telemetry.count("hits")

    def add(self, **deltas: int) -> None:
        """Add each delta to the counter of its name (``add(hits=1, local_hits=1)``)."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)
        telemetry = self.telemetry
        for name, delta in deltas.items():
            if delta:
                telemetry.count(name, delta)

    def load_took(self, seconds: float) -> None:
        """Report how long one load of the user's loader took."""
        self.telemetry.timing("load", seconds)
