"""Caching: cache-aside and decorators, sync and asyncio, on Redis and Redis Cluster.

See :class:`Cache` and :class:`AsyncCache`.
"""

from __future__ import annotations

from redkit.cache.facade import AsyncCache, Cache
from redkit.cache.flows import MISSING
from redkit.cache.serializers import (
    JsonSerializer,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)
from redkit.cache.stats import CacheStats
from redkit.core.keys import stable_hash as hash_query

__all__ = [
    "MISSING",
    "AsyncCache",
    "Cache",
    "CacheStats",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "hash_query",
]
