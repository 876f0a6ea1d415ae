"""The backend of an operation: the caller's, or one made from a URL and closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from redkit.core.driver import Backend, as_backend

__all__ = ["aowned", "owned"]


@contextmanager
def owned(redis: object) -> Iterator[Backend]:
    """``redis`` as a backend; one made from a URL string is this call's own, closed after."""
    backend = as_backend(redis)
    try:
        yield backend
    finally:
        if isinstance(redis, str):
            close = getattr(backend, "close", None)
            if close is not None:
                close()


@asynccontextmanager
async def aowned(redis: object) -> AsyncIterator[Backend]:
    """:func:`owned` in asyncio: a backend made from a URL is closed with ``aclose``."""
    backend = as_backend(redis)
    try:
        yield backend
    finally:
        if isinstance(redis, str):
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()
