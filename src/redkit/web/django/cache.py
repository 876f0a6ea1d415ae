"""Django's cache backend on redkit: ``"BACKEND": "redkit.web.django.RedisCache"`` in ``CACHES``.

The whole ``BaseCache`` contract with Django's semantics, each method on redkit's
:class:`~redkit.Cache` (blocking) or :class:`~redkit.AsyncCache` (the ``a...`` methods, natively
async). Keys are Django's own (``make_key``: ``KEY_PREFIX``, ``VERSION``, ``KEY_FUNCTION``),
stored under redkit's namespace ``django`` (``django.<KEY_PREFIX>`` with a prefix), so that
:meth:`RedisCache.clear` removes this cache's keys and no others. Values are pickled and signed
with ``SECRET_KEY`` by default; integers are stored as digits, so :meth:`RedisCache.incr` adds
on the server. Redis out of reach: reads are misses and writes are dropped (logged), while
``delete``, ``incr`` and ``clear`` raise, since a lost invalidation or count must be seen.

Every backend instance with the same ``LOCATION`` and ``OPTIONS`` shares one connection and one
redkit cache in the process (Django makes an instance per thread): the threads of a process then
share loads (single flight) and connections.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from redkit.cache import MISSING, AsyncCache, Cache
from redkit.cache.serializers import Serializer
from redkit.core import keys
from redkit.core.errors import ConfigurationError, InvalidArgumentError
from redkit.drivers.connect import Connection, connect
from redkit.drivers.rest import RestConnection

__all__ = ["OPTION_NAMES", "RedisCache", "aclose_connections", "close_connections"]

#: What ``OPTIONS`` may hold, and what each is for (the docs list them: docs/django.md).
OPTION_NAMES = {
    "SERIALIZER": '"pickle" (the default, signed), "json", "msgpack" or a redkit Serializer',
    "SECRET": "the key that signs pickled entries (default: settings.SECRET_KEY)",
    "TOKEN": "the Upstash REST token, for an https:// LOCATION",
    "CONNECTION": "keywords for redkit.connect (socket_timeout, max_connections, ...)",
    "NAMESPACE": 'the start of every Redis key (default "django")',
    "REDIS_TIMEOUT": "seconds one operation may wait for Redis (default 1.0)",
    "LEASE": 'a cross-process lease for get_or_set with a callable ("5 s"; default None: off)',
    "EARLY_REFRESH": "XFetch's beta for get_or_set with a callable (default 1.0; None: off)",
    "STALE_TTL": "serve a value this long past its time while one caller reloads it",
    "LOCAL_TTL": "keep values in this process's memory too, this long (default None: off)",
    "LOCAL_SIZE": "the local tier's capacity, in entries (default 10000)",
}

_lock = threading.Lock()
#: Keys Django's validate_key has nothing to say about: up to memcached's 250 characters, none
#: of them a control character, a space or DEL.
_PLAIN_KEY = re.compile(r"[\x21-\x7e]{0,250}").fullmatch


@dataclass(frozen=True)
class _Backing:
    """What the instances of one configuration share: the connection and both facades."""

    connection: Connection | RestConnection
    cache: Cache
    async_cache: AsyncCache


_backings: dict[tuple[str, str], _Backing] = {}


def _location(server: object) -> str:
    if isinstance(server, (list, tuple)):
        if len(server) != 1:
            raise ConfigurationError(
                "redkit.web.django.RedisCache takes one LOCATION URL, not a list of servers: "
                "name a Redis Cluster with redis+cluster://host:port",
                variable="LOCATION",
            )
        server = server[0]
    if not isinstance(server, str) or not server or any(c in server for c in ",;"):
        raise ConfigurationError(
            "LOCATION must be one URL (redis://, rediss://, unix://, redis+cluster://, or an "
            f"Upstash https:// REST URL with OPTIONS TOKEN), got {server!r}",
            variable="LOCATION",
        )
    return server


def _options(params: Mapping[str, Any]) -> dict[str, Any]:
    options = dict(params.get("OPTIONS") or {})
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        hint = ""
        if {"MAX_ENTRIES", "CULL_FREQUENCY"} & set(unknown):
            hint = " (Redis evicts by its maxmemory-policy: there is nothing to cull)"
        raise ConfigurationError(
            f"unknown OPTIONS {', '.join(unknown)} for redkit.web.django.RedisCache{hint}; "
            f"it takes {', '.join(OPTION_NAMES)}",
            variable="OPTIONS",
        )
    return options


def _namespace(options: Mapping[str, Any], key_prefix: str) -> str:
    namespace = str(options.get("NAMESPACE", "django"))
    # An escaped prefix holds no ':', so no cache's keys (nor its clear()) reach another's.
    return namespace + "." + keys.escape(key_prefix) if key_prefix else namespace


def _backing(location: str, namespace: str, options: Mapping[str, Any]) -> _Backing:
    """The connection and facades of this configuration, made once per process."""
    secret = options.get("SECRET", getattr(settings, "SECRET_KEY", None) or None)
    # The secret is part of the configuration (tests override SECRET_KEY): by its digest.
    signing = hashlib.sha256(str(secret).encode()).hexdigest()
    settings_repr = repr(sorted(options.items(), key=lambda item: item[0]))
    ident = (location, "\x00".join((namespace, settings_repr, signing)))
    with _lock:
        found = _backings.get(ident)
        if found is not None:
            return found
        connection_options = dict(options.get("CONNECTION") or {})
        if "TOKEN" in options:
            connection_options["token"] = options["TOKEN"]
        connection = connect(location, **connection_options)
        serializer: str | Serializer = options.get("SERIALIZER", "pickle")
        signed = serializer == "pickle" or getattr(serializer, "needs_signature", False)
        shared: dict[str, Any] = {
            "namespace": namespace,
            "default_ttl": None,  # every call passes Django's timeout; None is "forever"
            # Off unless asked for: with it, every write also fences the key's lease (one more
            # command per write), which only pays where loaders run in many processes.
            "lease": options.get("LEASE"),
            "early_refresh": options.get("EARLY_REFRESH", 1.0),
            "stale_ttl": options.get("STALE_TTL"),
            "local_ttl": options.get("LOCAL_TTL"),
            "local_size": options.get("LOCAL_SIZE", 10_000),
            "serializer": serializer,
            "secret": secret if signed or "SECRET" in options else None,
            "timeout": options.get("REDIS_TIMEOUT", 1.0),
            "raw_ints": True,
        }
        try:
            made = _Backing(
                connection, Cache(connection, **shared), AsyncCache(connection, **shared)
            )
        except InvalidArgumentError as exc:
            connection.close()
            hint = ""
            if "secret" in str(exc):
                hint = " (pickled entries are signed with settings.SECRET_KEY or OPTIONS SECRET)"
            raise ConfigurationError(
                f"CACHES OPTIONS of redkit.web.django.RedisCache: {exc}{hint}", variable="OPTIONS"
            ) from exc
        except Exception:
            connection.close()
            raise
        _backings[ident] = made
        return made


def close_connections() -> None:
    """Close the blocking side of every connection the backends opened (tests, shutdown).

    Django calls a backend's ``close()`` after every request; connections are pooled and
    kept across requests, so that does nothing here. Call this when the process is done.
    """
    with _lock:
        backings = list(_backings.values())
        _backings.clear()
    for backing in backings:
        backing.cache.close()
        backing.connection.close()


async def aclose_connections() -> None:
    """Close the asyncio clients of the running loop, then what :func:`close_connections` does."""
    with _lock:
        backings = list(_backings.values())
    for backing in backings:
        await backing.async_cache.close()
        await backing.connection.aclose()
    close_connections()


class RedisCache(BaseCache):
    """Django's cache backend on Redis, Redis Cluster or Upstash REST, through redkit.

    Args:
        server: ``LOCATION``, one URL: ``redis://``, ``rediss://``, ``unix://``,
            ``redis+cluster://``, or an Upstash ``https://`` REST URL (``OPTIONS["TOKEN"]``).
        params: the rest of the ``CACHES`` entry: ``TIMEOUT``, ``KEY_PREFIX``, ``VERSION``,
            ``KEY_FUNCTION``, and ``OPTIONS`` (see :data:`OPTION_NAMES`).

    Raises:
        ConfigurationError: for a malformed ``LOCATION``, an unknown option, or a secret too
            short to sign pickled entries.

    """

    def __init__(self, server: object, params: dict[str, Any]) -> None:
        super().__init__(params)
        options = _options(params)
        self._backing = _backing(_location(server), _namespace(options, self.key_prefix), options)
        self._cache = self._backing.cache
        self._async = self._backing.async_cache

    # -- extras: what only redkit's cache has ----------------------------------------------

    @property
    def redkit(self) -> Cache:
        """The redkit :class:`~redkit.Cache` under this backend (stats, ``bump_version``...)."""
        return self._cache

    @property
    def redkit_async(self) -> AsyncCache:
        """The redkit :class:`~redkit.AsyncCache` under this backend's ``a...`` methods."""
        return self._async

    def invalidate_tags(self, *tags: str) -> int:
        """Make every entry written with any of ``tags`` (``set(..., tags=...)``) a miss."""
        return self._cache.invalidate_tags(*tags)

    async def ainvalidate_tags(self, *tags: str) -> int:
        """See :meth:`invalidate_tags`."""
        return await self._async.invalidate_tags(*tags)

    def validate_key(self, key: Any) -> None:
        """Warn, as Django does, of keys that memcached would refuse (they work here).

        The common key (short, printable ASCII without spaces) is passed with one match; any
        other goes through Django's own check and its ``CacheKeyWarning``.
        """
        if isinstance(key, str) and _PLAIN_KEY(key) is not None:
            return
        super().validate_key(key)

    def _named(self, keys: Iterable[Any], version: int | None) -> dict[str | int, Any]:
        """Django's key of each of ``keys`` (checked), mapped to the key as given."""
        return {self.make_and_validate_key(key, version=version): key for key in keys}

    def _named_values(self, data: Mapping[Any, Any], version: int | None) -> dict[str | int, Any]:
        """``data`` under Django's keys (checked)."""
        return {self.make_and_validate_key(k, version=version): v for k, v in data.items()}

    # -- timeouts ----------------------------------------------------------------------------

    def get_backend_timeout(self, timeout: float | None = DEFAULT_TIMEOUT) -> float | None:
        """Seconds to keep an entry: ``None`` forever, ``0`` for "expire now" (also negative)."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return None
        return max(0.0, float(timeout))

    # -- the BaseCache contract, blocking ---------------------------------------------------

    def get(self, key: Any, default: Any | None = None, version: int | None = None) -> Any:
        """The cached value of ``key``, or ``default`` (also when Redis is out of reach)."""
        return self._cache.get(self.make_and_validate_key(key, version=version), default)

    def set(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> None:
        """Store ``value``; a timeout of 0 or less deletes the key, as in Django."""
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            self._cache.delete(name)
            return
        self._cache.set(name, value, ttl, tags=tags)

    def add(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        """Store ``value`` only if ``key`` holds nothing (``SET NX``); ``True`` when stored."""
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        stored = self._cache.add(name, value, None if ttl == 0 else ttl)
        if stored and ttl == 0:  # "expire at once": it was added, and is gone
            self._cache.delete(name)
        return stored

    def touch(
        self, key: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """Give ``key`` a new timeout (``None``: forever; 0: expire now); ``False`` if missing."""
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            return self._cache.delete(name) > 0
        return self._cache.touch(name, ttl)

    def delete(self, key: Any, version: int | None = None) -> bool:
        """Remove ``key``; ``True`` when it existed. Raises when Redis cannot be reached."""
        return self._cache.delete(self.make_and_validate_key(key, version=version)) > 0

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """The values of those ``keys`` that are cached, in one round trip."""
        names = self._named(keys, version)
        return {names[name]: value for name, value in self._cache.get_many(names).items()}

    def set_many(
        self,
        data: dict[Any, Any],
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> list[Any]:
        """Store every value in one round trip; returns the keys that were not stored."""
        if not data:
            return []
        values = self._named_values(data, version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            self._cache.delete(*values)
            return []
        return [] if self._cache.set_many(values, ttl, tags=tags) else list(data)

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """Remove those keys, in one round trip."""
        names = self._named(keys, version)
        if names:
            self._cache.delete(*names)

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """Add ``delta`` on the server, atomically; ``ValueError`` when ``key`` is missing."""
        value = self._cache.incr(self.make_and_validate_key(key, version=version), delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found")
        return value

    def get_or_set(
        self,
        key: Any,
        default: Any | None,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> Any | None:
        """The cached value, or ``default`` stored (called first when callable).

        A callable is redkit's loader: one call per process at a time (single flight), one
        across processes while the others wait (the lease), and reloaded early (XFetch).
        """
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if callable(default) and ttl != 0:
            return self._cache.get_or_set(name, default, ttl, tags=tags)
        found = self._cache.get(name, MISSING)
        if found is not MISSING:
            return found
        if callable(default):
            default = default()
        self.add(key, default, timeout, version)
        # Another caller may have added first: theirs is the cached value.
        return self._cache.get(name, default)

    def clear(self) -> None:
        """Remove this cache's keys (a ``SCAN`` of its namespace on every master), never more."""
        self._cache.delete_pattern("*")

    def close(self, **kwargs: Any) -> None:
        """Nothing: Django calls this after every request, and connections are kept."""

    # -- the same, asyncio ---------------------------------------------------------------------

    async def aget(self, key: Any, default: Any | None = None, version: int | None = None) -> Any:
        """See :meth:`get`."""
        return await self._async.get(self.make_and_validate_key(key, version=version), default)

    async def aset(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> None:
        """See :meth:`set`."""
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            await self._async.delete(name)
            return
        await self._async.set(name, value, ttl, tags=tags)

    async def aadd(
        self,
        key: Any,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
    ) -> bool:
        """See :meth:`add`."""
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        stored = await self._async.add(name, value, None if ttl == 0 else ttl)
        if stored and ttl == 0:
            await self._async.delete(name)
        return stored

    async def atouch(
        self, key: Any, timeout: float | None = DEFAULT_TIMEOUT, version: int | None = None
    ) -> bool:
        """See :meth:`touch`."""
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            return await self._async.delete(name) > 0
        return await self._async.touch(name, ttl)

    async def adelete(self, key: Any, version: int | None = None) -> bool:
        """See :meth:`delete`."""
        return await self._async.delete(self.make_and_validate_key(key, version=version)) > 0

    async def aget_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        """See :meth:`get_many`."""
        names = self._named(keys, version)
        return {names[name]: value for name, value in (await self._async.get_many(names)).items()}

    async def aset_many(
        self,
        data: dict[Any, Any],
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> list[Any]:
        """See :meth:`set_many`."""
        if not data:
            return []
        values = self._named_values(data, version)
        ttl = self.get_backend_timeout(timeout)
        if ttl == 0:
            await self._async.delete(*values)
            return []
        return [] if await self._async.set_many(values, ttl, tags=tags) else list(data)

    async def adelete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        """See :meth:`delete_many`."""
        names = self._named(keys, version)
        if names:
            await self._async.delete(*names)

    async def aincr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        """See :meth:`incr`."""
        value = await self._async.incr(self.make_and_validate_key(key, version=version), delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found")
        return value

    async def aget_or_set(
        self,
        key: Any,
        default: Any | None,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        *,
        tags: Iterable[str] = (),
    ) -> Any | None:
        """See :meth:`get_or_set` (``default`` may be an async function here)."""
        name = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        if callable(default) and ttl != 0:
            return await self._async.get_or_set(name, default, ttl, tags=tags)
        found = await self._async.get(name, MISSING)
        if found is not MISSING:
            return found
        if callable(default):
            default = default()
            if inspect.isawaitable(default):
                default = await default
        await self.aadd(key, default, timeout, version)
        return await self._async.get(name, default)

    async def aclear(self) -> None:
        """See :meth:`clear`."""
        await self._async.delete_pattern("*")

    async def aclose(self, **kwargs: Any) -> None:
        """Nothing, as :meth:`close`."""
