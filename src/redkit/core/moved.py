"""Old import paths that still work for one release, with a ``DeprecationWarning``.

A module whose names moved keeps a module-level ``__getattr__`` made by :func:`moved_names`:
the names are not bound in the old module, so every use of one (``from old import name``
included) goes through it, warns at the user's line, and returns the object of the new home.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Mapping
from typing import Any

from redkit.core.caller import warn_caller

__all__ = ["moved_names"]


def moved_names(
    old: str, homes: Mapping[str, str], *, quiet: Collection[str] = ()
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for module ``old``, whose names moved to ``homes[name]``.

    Each access warns (``DeprecationWarning``, attributed to the caller's line) and returns
    the new module's object itself, so ``isinstance`` and identity hold across both paths.
    Names in ``quiet`` are deprecated themselves and warn when used: their access does not.
    """
    where = dict(homes)

    def __getattr__(name: str) -> Any:
        home = where.get(name)
        if home is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        if name not in quiet:
            warn_caller(
                f"{old}.{name} moved: import it from {home} ({old} is kept for one release only)",
                DeprecationWarning,
            )
        return getattr(importlib.import_module(home), name)

    return __getattr__
