"""Deprecated: response caching for FastAPI and Starlette moved to :mod:`redkit.web.asgi`.

``from redkit.web.fastapi_cache import cache_response`` still works for one release, with a
``DeprecationWarning``; import it from :mod:`redkit.web.fastapi` (or :mod:`redkit.web.asgi`
for a plain Starlette app).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Imported now, so a missing Starlette fails at this import, as it always did.
import redkit.web.fastapi
from redkit.core.moved import moved_names

if TYPE_CHECKING:
    from redkit.web.fastapi import cache_response as cache_response
    from redkit.web.fastapi import invalidate_response as invalidate_response

__all__ = ["cache_response", "invalidate_response"]

_moved = moved_names(__name__, dict.fromkeys(__all__, redkit.web.fastapi.__name__))


def __getattr__(name: str) -> Any:
    return _moved(name)
