"""Clocks: where "now" comes from.

Windows and buckets need one clock for every app server. :class:`ServerClock` means "let Redis
read its own ``TIME``" (inside the script, or with a ``TIME`` command); :class:`ClientClock` reads
this machine's clock; :class:`VirtualClock` is moved by hand, so tests can check an algorithm
against a reference model without sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Literal, Protocol

from redkit.core.flow import Flow
from redkit.core.ops import command
from redkit.core.replies import server_time_ms

__all__ = [
    "ClientClock",
    "Clock",
    "ServerClock",
    "VirtualClock",
    "current_ms",
    "resolve_clock",
]


class Clock(Protocol):
    """A source of the current time in epoch milliseconds."""

    #: True when the time must be read from Redis (``now_ms`` is then not available).
    server: bool

    def now_ms(self) -> float:
        """The current time in epoch milliseconds."""
        ...


class ServerClock:
    """Redis server time: one clock for every app server. Flows read it through Redis."""

    server = True

    def now_ms(self) -> float:
        """Not available locally: server time is read by the script or by :func:`current_ms`."""
        raise RuntimeError("server time is read inside Redis; use redkit.core.clock.current_ms")

    def __repr__(self) -> str:
        return "ServerClock()"


class ClientClock:
    """This machine's wall clock."""

    server = False

    def now_ms(self) -> float:
        """The current time in epoch milliseconds."""
        return time.time() * 1000.0

    def __repr__(self) -> str:
        return "ClientClock()"


class VirtualClock:
    """A clock that only moves when told to: for tests and simulations."""

    server = False

    def __init__(self, start_ms: float = 1_700_000_000_000.0) -> None:
        self._now = float(start_ms)
        self._lock = threading.Lock()

    def now_ms(self) -> float:
        """The clock's current reading, in epoch milliseconds."""
        with self._lock:
            return self._now

    def advance(self, ms: float) -> float:
        """Move the clock forward by ``ms`` milliseconds and return the new reading."""
        if ms < 0:
            raise ValueError(f"a clock only moves forward, got {ms} ms")
        with self._lock:
            self._now += ms
            return self._now

    def set(self, now_ms: float) -> None:
        """Put the clock at ``now_ms``; it may not go back."""
        with self._lock:
            if now_ms < self._now:
                raise ValueError(f"a clock only moves forward: {now_ms} < {self._now}")
            self._now = float(now_ms)

    def __repr__(self) -> str:
        return f"VirtualClock({self._now!r})"


def resolve_clock(clock: Clock | Literal["server", "client"] | None, *, default: Clock) -> Clock:
    """Turn a ``clock=`` argument into a :class:`Clock`; ``None`` picks the driver's default."""
    if clock is None:
        return default
    if clock == "server":
        return ServerClock()
    if clock == "client":
        return ClientClock()
    if isinstance(clock, str):
        raise ValueError(f'clock must be "server", "client" or a Clock object, got {clock!r}')
    return clock


def current_ms(clock: Clock) -> Flow[float]:
    """Flow: the current time per ``clock``; a server clock costs one ``TIME`` round trip."""
    if clock.server:
        reply = yield command("TIME")
        return server_time_ms(reply)
    return clock.now_ms()
