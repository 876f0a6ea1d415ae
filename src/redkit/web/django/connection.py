"""The Redis a Django setting points at: a cache alias's ``LOCATION``, or a URL of its own.

The session engine (``REDKIT_SESSIONS``) and the rate limits (``REDKIT_RATELIMIT``) both name
their Redis as ``"USING": <cache alias>`` or ``"LOCATION": <url>``. One connection per URL and
options serves the whole process (its clients pool their sockets), whoever asked for it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from django.conf import settings

from redkit.core.errors import ConfigurationError
from redkit.drivers.connect import Connection, connect
from redkit.drivers.rest import RestConnection

__all__ = ["close_connections", "read_setting", "redis_for"]

_lock = threading.Lock()
_connections: dict[tuple[str, tuple[tuple[str, Any], ...]], Connection | RestConnection] = {}


def read_setting(name: str, known: frozenset[str]) -> dict[str, Any]:
    """The dict setting ``name`` (``{}`` when unset), its keys checked against ``known``."""
    raw = getattr(settings, name, None) or {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{name} must be a dict, got {raw!r:.60}", variable=name)
    unknown = set(raw) - known
    if unknown:
        raise ConfigurationError(
            f"{name} has unknown keys {sorted(unknown)}; the keys are {sorted(known)}",
            variable=name,
        )
    return dict(raw)


def _location_of(alias: str, setting: str) -> tuple[str, dict[str, Any]]:
    caches: Mapping[str, Mapping[str, Any]] = getattr(settings, "CACHES", {})
    if alias not in caches:
        raise ConfigurationError(
            f"{setting}['USING'] names the cache alias {alias!r}, which CACHES does not "
            f"define (it has {sorted(caches)}): name one of those, or give 'LOCATION' instead",
            variable=setting,
        )
    entry = caches[alias]
    location = entry.get("LOCATION")
    if isinstance(location, (list, tuple)) and len(location) == 1:
        location = location[0]
    if not isinstance(location, str) or not location:
        raise ConfigurationError(
            f"{setting}['USING'] = {alias!r}: that cache has no single Redis URL as LOCATION "
            f"(got {location!r}); point USING at a Redis cache, or give 'LOCATION' instead",
            variable=setting,
        )
    raw = dict(entry.get("OPTIONS") or {})
    if entry.get("BACKEND") == "redkit.web.django.RedisCache":
        # As that backend reads them: TOKEN, and redkit.connect's keywords under CONNECTION.
        connection = dict(raw.get("CONNECTION") or {})
        if "TOKEN" in raw:
            connection["token"] = raw["TOKEN"]
        return location, connection
    options = {str(k).lower(): v for k, v in raw.items()}
    # Another backend's (Django's RedisCache: redis-py's keywords): what a connection takes.
    wanted = {"token", "socket_timeout", "connect_timeout", "max_connections"}
    return location, {k: v for k, v in options.items() if k in wanted}


def redis_for(config: Mapping[str, Any], setting: str) -> Connection | RestConnection:
    """The connection ``config`` (one of the ``REDKIT_*`` settings) names.

    ``config["LOCATION"]`` is a URL (``redis://``, ``rediss://``, ``unix://``,
    ``redis+cluster://``, or an Upstash REST URL with ``OPTIONS = {"token": ...}``);
    otherwise ``config["USING"]`` (``"default"`` when absent) names a cache alias whose
    ``LOCATION`` and connection ``OPTIONS`` are used.

    Raises:
        ConfigurationError: naming ``setting``, when neither leads to a Redis URL.

    """
    location = config.get("LOCATION")
    if location is not None and config.get("USING") is not None:
        raise ConfigurationError(
            f"{setting}: give 'USING' (a cache alias) or 'LOCATION' (a URL), not both",
            variable=setting,
        )
    if location is None:
        alias = config.get("USING", "default")
        if not isinstance(alias, str):
            raise ConfigurationError(
                f"{setting}['USING'] must be a cache alias (str), got {alias!r}", variable=setting
            )
        location, options = _location_of(alias, setting)
    else:
        if not isinstance(location, str) or not location:
            raise ConfigurationError(
                f"{setting}['LOCATION'] must be a Redis URL, got {location!r}", variable=setting
            )
        options = {str(k).lower(): v for k, v in dict(config.get("OPTIONS") or {}).items()}
    cache_key = (location, tuple(sorted(options.items())))
    with _lock:
        found = _connections.get(cache_key)
        if found is None:
            found = _connections[cache_key] = connect(location, **options)
        return found


def close_connections() -> None:
    """Close every connection made from the settings (at shutdown, or between tests)."""
    with _lock:
        made = list(_connections.values())
        _connections.clear()
    for conn in made:
        conn.close()
