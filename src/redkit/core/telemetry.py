"""Where the features say what they did: counts and timings, handed to observers.

A feature (a cache, a limiter, a session store) reports each event once, through its
:class:`Telemetry`: ``count("hits")``, ``timing("load", 0.012)``. Observers receive them:

- the fleet statistics of one instance (``stats="10 s"``), which add them to Redis;
- process-wide observers (Prometheus, OpenTelemetry), registered with :func:`add_observer`,
  which every instance reports to, whether it was made before or after.

With no observer an event costs one method call and a comparison, so the features report
unconditionally. An observer must be quick and must not raise: it runs on the request path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["Observer", "Telemetry", "add_observer", "observers", "remove_observer"]


class Observer(Protocol):
    """What receives the features' events.

    ``feature`` is ``"cache"``, ``"ratelimit"``, ``"concurrency"`` or ``"sessions"``;
    ``name`` is the instance's namespace or prefix (bounded: never an identifier, a key or
    a session id); ``counter`` and ``what`` are fixed words of each feature (docs/stats.md).
    The drivers report as ``"driver"``, named after their kind (``"standalone"``,
    ``"cluster"``, ``"rest"``; see :mod:`redkit.drivers.observed`).
    """

    def count(self, feature: str, name: str, counter: str, n: int) -> None:
        """Add ``n`` to ``counter`` of ``name``."""

    def timing(self, feature: str, name: str, what: str, seconds: float) -> None:
        """Record that ``what`` of ``name`` took ``seconds``."""


class _Registry:
    """The process-wide observers; ``version`` changes with each registration."""

    def __init__(self) -> None:
        self.observers: tuple[Observer, ...] = ()
        self.version = 0
        self.lock = threading.Lock()


_REGISTRY = _Registry()


def add_observer(observer: Observer) -> None:
    """Send every feature's events to ``observer`` as well, from now on (idempotent)."""
    with _REGISTRY.lock:
        if observer not in _REGISTRY.observers:
            _REGISTRY.observers = (*_REGISTRY.observers, observer)
            _REGISTRY.version += 1


def remove_observer(observer: Observer) -> None:
    """Stop sending events to ``observer`` (nothing happens if it was not registered)."""
    with _REGISTRY.lock:
        if observer in _REGISTRY.observers:
            _REGISTRY.observers = tuple(o for o in _REGISTRY.observers if o is not observer)
            _REGISTRY.version += 1


def observers() -> tuple[Observer, ...]:
    """The process-wide observers, in the order they were added."""
    return _REGISTRY.observers


class Telemetry:
    """One instance's reporter: its feature and name, its own observers and the process's."""

    __slots__ = ("_all", "_first", "_keeping", "_lock", "_own", "_timed", "_timers", "_totals",
                 "_version", "feature", "name")  # fmt: skip

    def __init__(self, feature: str, name: str, own: tuple[Observer, ...] = ()) -> None:
        self.feature = feature
        self.name = name
        self._own = own
        self._version = -1
        self._all: tuple[Observer, ...] = own
        # Counts kept here for a reader that takes them at an interval (keep_totals).
        self._keeping = False
        self._totals: dict[str, int] = {}
        self._lock = threading.Lock()
        self._timers: tuple[Observer, ...] = ()
        self._timed: frozenset[str] = frozenset()  # what the timers want timed
        self._first: Callable[[], object] | None = None

    def add(self, observer: Observer) -> None:
        """Send this instance's events to ``observer`` too, as they happen."""
        self._own = (*self._own, observer)
        self._version = -1

    def keep_totals(
        self,
        timer: Observer,
        timings: frozenset[str] = frozenset({"load"}),
        on_count: Callable[[], object] | None = None,
    ) -> None:
        """Keep this instance's counts here, for :meth:`take_totals`; send ``timings`` to ``timer``.

        This is the cheap way for a reader that sends counts at an interval (the fleet
        statistics): a count is one addition under a lock, not a call per observer, and only
        the ``timings`` it stores are measured for it. ``on_count`` is called at the next
        count (an asyncio reporter starts its task there).
        """
        self._keeping = True
        self._timers = (*self._timers, timer)
        self._timed = self._timed | timings
        self._first = on_count

    def on_next_count(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` at the next count (once)."""
        self._first = callback

    def take_totals(self) -> dict[str, int]:
        """The counts kept since the last take (see :meth:`keep_totals`), and start afresh."""
        with self._lock:
            totals, self._totals = self._totals, {}
        return totals

    def _observers(self) -> tuple[Observer, ...]:
        # Re-read the registry only when it changed: the common case is one comparison.
        version = _REGISTRY.version
        if self._version != version:
            self._all = self._own + _REGISTRY.observers
            self._version = version  # after: another thread never pairs it with the old set
        return self._all

    @property
    def active(self) -> bool:
        """Whether anything listens: a caller may skip measuring a time when nothing does."""
        return bool(self._timers or self._observers())

    def times(self, what: str) -> bool:
        """Whether a timing of ``what`` is wanted (a caller reads no clock when it is not)."""
        return what in self._timed or bool(self._observers())

    def count(self, counter: str, n: int = 1) -> None:
        """Report ``n`` more of ``counter``."""
        if self._keeping:
            with self._lock:
                totals = self._totals  # read under the lock: a take swaps it
                totals[counter] = totals.get(counter, 0) + n
            first = self._first  # read once: another thread may clear it meanwhile
            if first is not None:
                self._first = None
                first()  # two threads may both call it: the callbacks are idempotent
        for observer in self._observers():
            observer.count(self.feature, self.name, counter, n)

    def timing(self, what: str, seconds: float) -> None:
        """Report that ``what`` took ``seconds``."""
        if what in self._timed:
            for observer in self._timers:
                observer.timing(self.feature, self.name, what, seconds)
        for observer in self._observers():
            observer.timing(self.feature, self.name, what, seconds)
