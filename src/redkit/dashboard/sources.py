"""What the pages read from other packages: the fleet statistics and the keyspace scan.

The keyspace report (:mod:`redkit.ops.keyspace`) is optional at run time: without it the
keyspace page says so and the caches page shows the rest.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from redkit.core.driver import Backend
from redkit.core.durations import Duration
from redkit.stats import FleetStats, aread

__all__ = ["keyspace_scanner", "read_fleet"]


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


async def read_fleet(backend: Backend, since: Duration) -> FleetStats:
    """The fleet statistics of the last ``since``, per minute (:func:`redkit.stats.aread`).

    Raises:
        InvalidArgumentError: ``since`` is no duration, or more than the day minutes are kept.
    """
    return await aread(backend, since=since, resolution="minute")


def keyspace_scanner() -> Callable[..., Any] | None:
    """``redkit.ops.keyspace.ascan_keyspace``; ``None`` where it is not installed."""
    module = _module("redkit.ops.keyspace")
    return None if module is None else module.ascan_keyspace
