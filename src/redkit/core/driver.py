"""What a driver is, and how a feature gets one from whatever the user passed.

Features never import a driver (see DESIGN.md). They take a *backend* — anything with
``sync_driver()`` and ``async_driver()``, such as :class:`redkit.Connection` — and ask it for
the driver they need. Foreign objects (a URL string, a redis-py client) are turned into a
backend by adapters that the drivers package registers when it is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from redkit.core.ops import RedisOp

__all__ = [
    "AsyncDriver",
    "Backend",
    "Subscribable",
    "SyncDriver",
    "as_backend",
    "register_adapter",
    "scripts_declare_keys",
    "values_are_text",
]


class SyncDriver(Protocol):
    """Executes operations on a Redis, blocking."""

    def execute(self, op: RedisOp) -> Any:
        """Run one command, script call or pipeline and return its reply."""
        ...

    def close(self) -> None:
        """Release the driver's connections."""
        ...


class AsyncDriver(Protocol):
    """Executes operations on a Redis, in asyncio."""

    async def execute(self, op: RedisOp) -> Any:
        """Run one command, script call or pipeline and return its reply."""
        ...

    async def aclose(self) -> None:
        """Release the driver's connections."""
        ...


@runtime_checkable
class Backend(Protocol):
    """A source of drivers: what every redkit facade accepts as its ``redis`` argument.

    ``timeout`` asks for a driver whose every wait (connecting, each reply) is bounded by that
    many seconds, for callers with a budget of their own, such as a rate limiter that must
    answer in time. A backend that cannot tighten its timeouts (a user's own client) ignores it.

    A backend may also set ``scripts_declare_keys = True`` (read with
    :func:`scripts_declare_keys`; absent means ``False``): its server runs a Lua script only on
    the keys passed in ``KEYS``, as Upstash does with key locking. Features then never let a
    script build a key name itself. Likewise ``values_are_text = True`` (read with
    :func:`values_are_text`): only text reaches the server, so binary values go as text. Neither
    is a protocol member, so that backends written before them still pass
    ``isinstance(obj, Backend)``.
    """

    #: Whether this is a Redis Cluster: keys of one script must then share a hash tag.
    is_cluster: bool

    def sync_driver(self, *, timeout: float | None = None) -> SyncDriver:
        """The driver for blocking code."""
        ...

    def async_driver(self, *, timeout: float | None = None) -> AsyncDriver:
        """The driver for the running event loop."""
        ...


@runtime_checkable
class Subscribable(Protocol):
    """A backend that can listen on a pub/sub channel (used to keep local caches coherent)."""

    def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``on_message`` with each message on ``channel`` until the returned function runs.

        Messages arrive on a background thread.
        """
        ...


def scripts_declare_keys(backend: object) -> bool:
    """Whether every key a script touches must be in its ``KEYS`` on ``backend`` (Upstash).

    On such a server, keys that a script on stock Redis would build inside Lua (a global
    deny list, a window counter named after the server's clock) are named by the caller, or
    read and written outside the script.
    """
    return getattr(backend, "scripts_declare_keys", False) is True


def values_are_text(backend: object) -> bool:
    """Whether ``backend`` carries only text values (Upstash's REST protocol: JSON strings).

    Features that store bytes (the cache's entries) then store a text form of them.
    """
    return getattr(backend, "values_are_text", False) is True


Adapter = Callable[[object], "Backend | None"]
_adapters: list[Adapter] = []


def register_adapter(adapter: Adapter) -> None:
    """Teach :func:`as_backend` a new kind of object; the adapter returns ``None`` to pass."""
    if adapter not in _adapters:
        _adapters.append(adapter)


def as_backend(obj: object) -> Backend:
    """Return ``obj`` as a :class:`Backend`, adapting URL strings and client objects.

    Raises:
        TypeError: when nothing knows how to use ``obj`` as a Redis.

    """
    if isinstance(obj, Backend):
        return obj
    for adapter in _adapters:
        backend = adapter(obj)
        if backend is not None:
            return backend
    raise TypeError(
        f"expected a redkit Connection, a Redis URL or a redis-py client, got {type(obj).__name__}"
    )
