"""Drivers: the only code that talks to Redis (redis-py today), and the embedded server."""

from __future__ import annotations

from redkit.drivers.connect import Connection, connect, from_env
from redkit.drivers.redis import AsyncRedisDriver, RedisDriver

__all__ = ["AsyncRedisDriver", "Connection", "RedisDriver", "connect", "from_env"]
