"""A concurrency limit: how many holders at once per identifier, and for how long each."""

from __future__ import annotations

from dataclasses import dataclass, field

from redkit.core.durations import Duration, duration_ms
from redkit.ratelimit.limiters import check_count

__all__ = ["ConcurrencyLimit"]


@dataclass(frozen=True)
class ConcurrencyLimit:
    """At most ``max_in_flight`` leases held at once per identifier, each ending on its own.

    Args:
        max_in_flight: how many holders one identifier may have at the same time.
        lease: how long a lease lasts unless released or extended: ``"30 s"``, seconds, or a
            ``timedelta``. It bounds how long a crashed holder keeps its slot.

    """

    max_in_flight: int
    lease: Duration = "30 s"
    lease_ms: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_count(self.max_in_flight, "max_in_flight")
        object.__setattr__(self, "lease_ms", duration_ms(self.lease, name="lease"))
