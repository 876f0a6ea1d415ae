"""The local tier: a bounded, short-lived copy of cache entries in the process's memory.

A hit here costs no round trip at all. Entries live at most ``ttl`` seconds, and at most
``max_size`` of them (least recently used first out). Writes and deletes made in any process
are broadcast on a pub/sub channel, and every process drops what they name, so a change is
seen everywhere within the time a message takes, and at worst (a lost message) within ``ttl``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

__all__ = ["ALL", "LocalTier"]

_ABSENT = object()
#: The message that drops every entry (tags and namespace bumps name no single key).
ALL = "*"


class LocalTier:
    """A thread-safe TTL-LRU of cache values, keyed by cache key."""

    def __init__(self, ttl_s: float, max_size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        #: Marks this process's own broadcasts, which it need not act on twice.
        self.origin = secrets.token_hex(6)
        self._entries: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        """The value held for ``key``, or the module's absent marker (see :meth:`has`)."""
        found = self._entries.get(key)  # a lock-free read: the common case
        if found is None:
            return _ABSENT
        value, until = found
        if until <= time.monotonic():
            self.drop(key)
            return _ABSENT
        return value

    @staticmethod
    def has(value: Any) -> bool:
        """Whether a :meth:`get` result is a value (``None`` included) rather than a miss."""
        return value is not _ABSENT

    def put(self, key: str, value: Any) -> None:
        """Hold ``value`` for ``key`` for the tier's ttl."""
        with self._lock:
            self._entries[key] = (value, time.monotonic() + self.ttl_s)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def drop(self, key: str) -> None:
        """Forget ``key`` (or everything, for :data:`ALL`)."""
        with self._lock:
            if key == ALL:
                self._entries.clear()
            else:
                self._entries.pop(key, None)

    def message(self, key: str) -> str:
        """The broadcast telling other processes to drop ``key``."""
        return f"{self.origin}|{key}"

    def on_message(self, data: bytes | str) -> None:
        """Act on a broadcast: drop what it names, unless this process sent it."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        origin, _, key = text.partition("|")
        if origin != self.origin and key:
            self.drop(key)
