"""The cached fixed window's local counts: decisions made in this process, synced later.

Redis decides the first request of each window and tells this process where the window stands
(its count, its end). Later requests in that window are counted here, under a lock, and their
counts queue up for Redis (coalesced per window), where a background job adds them; the totals
it gets back fold in what other processes admitted meanwhile.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from redkit.ratelimit.limiters import FixedWindow
from redkit.ratelimit.result import RatelimitResult

__all__ = ["WindowCounts"]


@dataclass
class _Window:
    key: str  # the window's counter in Redis
    until: float  # local clock reading (ms) at which the window ends
    reset: int  # the window's end in epoch ms, as Redis reported it
    count: int  # admitted in this window, as far as this process knows


class WindowCounts:
    """One cached fixed window limiter's counts in this process (bounded, thread-safe)."""

    def __init__(self, limiter: FixedWindow, max_size: int = 10_000) -> None:
        self.limit = limiter.limit
        self.window_ms = limiter.window_ms
        self.max_size = max_size
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        self._pending: dict[str, int] = {}
        # Costs of requests on their way to Redis: Redis may admit them without knowing what
        # this process admitted locally meanwhile, so local decisions leave room for them.
        self._asking: dict[str, int] = {}
        self._lock = threading.Lock()

    def count(self, base: str, rate: int, local_now: float) -> RatelimitResult | None:
        """Decide locally, or ``None`` when this process does not know the current window.

        ``None`` means "ask Redis": the request's cost is then noted as on its way, in the same
        locked step, and :meth:`answered` must follow once Redis has answered (or failed).
        """
        with self._lock:
            window = self._windows.get(base)
            if window is None or window.until <= local_now:
                if rate > 0:
                    self._asking[base] = self._asking.get(base, 0) + rate
                return None
            if rate > 0 and window.count + self._asking.get(base, 0) + rate > self.limit:
                retry = (window.until - local_now) / 1000
                remaining = max(0, self.limit - window.count)
                return RatelimitResult(False, self.limit, remaining, window.reset, retry)
            delta = max(rate, -window.count)  # a refund gives back at most what was used
            if delta:
                window.count += delta
                self._pending[window.key] = self._pending.get(window.key, 0) + delta
            remaining = max(0, self.limit - window.count)
            return RatelimitResult(True, self.limit, remaining, window.reset)

    def seed(
        self, base: str, result: RatelimitResult, rate: int, server_now: int, local_now: float
    ) -> None:
        """Count locally from what Redis answered at ``server_now`` to a request of ``rate``.

        Several threads or tasks may ask Redis at once before the first answer arrives; an
        answer for a window already counted here merges in without losing local admissions
        (not yet in Redis): the local count must never fall below what this process admitted.
        """
        key = f"{base}:{result.reset // self.window_ms - 1}"
        total = result.limit - result.remaining
        admitted = rate if result.success and rate > 0 else 0
        with self._lock:
            window = self._windows.get(base)
            if window is not None and window.key == key:
                window.count = max(window.count + admitted, total)
            elif window is not None and window.reset > result.reset:
                return  # a late answer about a window that has already ended
            else:
                until = local_now + (result.reset - server_now)
                self._windows[base] = _Window(key, until, result.reset, total)
            self._windows.move_to_end(base)
            while len(self._windows) > self.max_size:
                self._windows.popitem(last=False)

    def answered(self, base: str, rate: int) -> None:
        """A request that :meth:`count` sent to Redis has its answer (or failed)."""
        if rate > 0:
            with self._lock:
                left = self._asking.pop(base, 0) - rate
                if left > 0:
                    self._asking[base] = left

    def has_pending(self) -> bool:
        """Whether counts wait to be sent to Redis."""
        return bool(self._pending)

    def take_pending(self) -> list[tuple[str, int]]:
        """Remove and return the counts waiting for Redis, per window counter."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return [(key, delta) for key, delta in pending.items() if delta]

    def restore_pending(self, pending: list[tuple[str, int]]) -> None:
        """Put counts back after Redis failed to take them."""
        with self._lock:
            for key, delta in pending:
                self._pending[key] = self._pending.get(key, 0) + delta

    def fold(self, key: str, total: int) -> None:
        """Fold Redis's total for a window counter into the local count."""
        base = key.rsplit(":", 1)[0]
        with self._lock:
            window = self._windows.get(base)
            if window is not None and window.key == key:
                window.count = max(window.count, total)

    def forget(self, base: str) -> None:
        """Drop what is known of ``base``'s window (after a reset)."""
        with self._lock:
            window = self._windows.pop(base, None)
            if window is not None:
                self._pending.pop(window.key, None)
