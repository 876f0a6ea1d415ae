"""What the pages read from other packages: the fleet statistics and the keyspace scan.

Both are optional at run time (:mod:`redkit.stats`, :mod:`redkit.ops.keyspace`): a page
without one shows the rest and says what is missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from redkit.core.driver import Backend

__all__ = ["keyspace_scanner", "read_fleet"]


def _module(name: str) -> Any | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


async def read_fleet(backend: Backend, since: str) -> Any | None:
    """``redkit.stats.aread`` over ``since``, per minute; ``None`` where it is not installed.

    Raises:
        InvalidArgumentError: ``since`` is no duration, or more than the day minutes are kept.
    """
    stats = _module("redkit.stats")
    if stats is None:
        return None
    return await stats.aread(backend, since=since, resolution="minute")


def keyspace_scanner() -> Callable[..., Any] | None:
    """``redkit.ops.keyspace.ascan_keyspace``; ``None`` where it is not installed."""
    module = _module("redkit.ops.keyspace")
    return None if module is None else module.ascan_keyspace
