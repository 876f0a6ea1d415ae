"""Deprecated: response caching for Flask moved to :mod:`redkit.web.flask`.

``from redkit.web.flask_cache import cache_response`` still works for one release, with a
``DeprecationWarning``; import it from :mod:`redkit.web.flask` (or use the extension's
``@ext.cache_response``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Imported now, so a missing Flask fails at this import, as it always did.
import redkit.web.flask
from redkit.core.moved import moved_names

if TYPE_CHECKING:
    from redkit.web.flask import cache_response as cache_response

__all__ = ["cache_response"]

_moved = moved_names(__name__, dict.fromkeys(__all__, redkit.web.flask.__name__))


def __getattr__(name: str) -> Any:
    return _moved(name)
