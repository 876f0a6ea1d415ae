"""The fleet statistics: what every process's caches, limiters and session stores counted.

Turn them on per instance with ``stats="10 s"`` (``Cache``, ``Ratelimit``, ``Concurrency``,
``SessionStore`` and their asyncio twins); read them back, summed over every process, with
:func:`read` or :func:`aread`. The layout and the counters: docs/stats.md.
"""

from __future__ import annotations

from redkit.stats.model import FleetStats, NameStats
from redkit.stats.reader import aread, read

__all__ = ["FleetStats", "NameStats", "aread", "read"]
