"""The ephemeral cache: identifiers known to be blocked, answered without asking Redis.

When Redis refuses an identifier, the refusal holds until a known moment (the window's end,
the next refill). Until then every further request of that identifier would be refused too,
so the limiter answers it from this process's memory: zero round trips for the traffic that
most needs to be cheap, such as a client hammering past its limit.

Unlike ``@upstash/ratelimit``'s unbounded map, the cache holds at most ``max_size`` entries,
evicting the least recently blocked. Deadlines are kept on a local clock, measured from the
server's own answer, so a skewed app server clock cannot lengthen or shorten a block.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from redkit.core.errors import InvalidArgumentError

__all__ = ["Block", "EphemeralCache"]


class Block(NamedTuple):
    """One blocked identifier."""

    #: Local clock reading (ms) at which the block ends.
    until: float
    #: The ``reset`` Redis reported, in epoch ms, repeated in cached answers.
    reset: int
    #: The refused cost: cheaper requests may still pass, so they are not blocked.
    rate: int = 1


class EphemeralCache:
    """A bounded, thread-safe map of blocked identifiers; share one between limiters at will.

    Keys are the limiters' prefixed keys, so limiters with different prefixes never see each
    other's blocks even when they share a cache.
    """

    def __init__(self, max_size: int = 10_000) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise InvalidArgumentError(f"max_size must be a positive int, got {max_size!r}")
        self.max_size = max_size
        self._blocks: OrderedDict[str, Block] = OrderedDict()
        self._lock = threading.Lock()

    def blocked(self, key: str, now: float, rate: int = 1) -> Block | None:
        """The block on ``key`` of a request of cost ``rate`` at local time ``now``, if any.

        A block holds for requests that cost at least as much as the refused one did; an
        expired block is dropped.
        """
        block = self._blocks.get(key)  # a lock-free read: the common case is "not blocked"
        if block is None:
            return None
        if block.until > now:
            return block if rate >= block.rate else None
        with self._lock:
            if self._blocks.get(key) is block:
                del self._blocks[key]
        return None

    def block(self, key: str, until: float, reset: int, rate: int = 1) -> None:
        """Block requests of ``key`` that cost ``rate`` or more until local time ``until``."""
        with self._lock:
            self._blocks[key] = Block(until, reset, rate)
            self._blocks.move_to_end(key)
            while len(self._blocks) > self.max_size:
                self._blocks.popitem(last=False)

    def pop(self, key: str) -> None:
        """Forget any block on ``key``."""
        with self._lock:
            self._blocks.pop(key, None)

    def clear(self) -> None:
        """Forget every block."""
        with self._lock:
            self._blocks.clear()

    def __len__(self) -> int:
        return len(self._blocks)

    def __repr__(self) -> str:
        return f"<EphemeralCache {len(self)}/{self.max_size} blocked>"
