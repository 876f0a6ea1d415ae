"""A circuit breaker in front of a driver: stop waiting on a Redis that is down.

After ``threshold`` operations in a row that got no answer (a timeout, a refused connection),
the breaker *opens*: for ``cooldown`` seconds every operation fails at once with
:class:`~redkit.errors.BackendUnavailable`, without touching the network, so callers fall back
(a cache answers from its loader) at full speed instead of each waiting out a timeout. Then one
operation is let through as a trial: an answer (an error reply is an answer too) closes the
breaker, another failure opens it again, and any other way out of the trial (cancellation,
``KeyboardInterrupt``, a bug) ends it without a verdict, so the next operation is the trial.

On a Redis Cluster the breaker keeps one circuit per master, so that one master that stalls
costs only the keys it holds.

A breaker reports ``circuit_opened`` (a closed circuit opened) and ``circuit_closed`` (an
open one closed again) through its ``telemetry``: the one of the first driver it guards that
has one (feature ``"driver"``, see :mod:`redkit.drivers.observed`). Opened minus closed is
the number of circuits open now.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from redkit.core.driver import AsyncDriver, SyncDriver
from redkit.core.errors import NO_ANSWER, BackendUnavailable, CommandError
from redkit.core.ops import RedisOp
from redkit.core.telemetry import Telemetry

__all__ = ["AsyncBreakerDriver", "Breaker", "BreakerDriver"]


class _Circuit:
    """The state of one route: failures in a row, until when it is open, a trial running."""

    __slots__ = ("failures", "last_cause", "open_until", "trial")

    def __init__(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.trial = False
        self.last_cause = ""


class Breaker:
    """The breaker's state, shared by the drivers it guards (thread-safe).

    On a cluster each node has a circuit of its own (the *route*, a node name, that the driver
    names for each operation): a stalled master opens its own circuit, and the keys of the
    healthy masters keep being served. Elsewhere there is one circuit (route ``None``).
    """

    def __init__(self, threshold: int = 5, cooldown: float = 5.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._circuits: dict[str | None, _Circuit] = {}
        self._lock = threading.Lock()
        #: Where openings and closings are reported (set by the first driver guarded).
        self.telemetry: Telemetry | None = None

    def report_to(self, driver: object) -> None:
        """Report through ``driver``'s ``telemetry``, unless this breaker reports already."""
        telemetry = getattr(driver, "telemetry", None)
        if self.telemetry is None and isinstance(telemetry, Telemetry):
            self.telemetry = telemetry

    def _report(self, counter: str) -> None:
        if self.telemetry is not None:
            self.telemetry.count(counter)

    def _circuit(self, route: str | None) -> _Circuit:
        circuit = self._circuits.get(route)
        if circuit is None:
            with self._lock:
                circuit = self._circuits.setdefault(route, _Circuit())
        return circuit

    @property
    def is_open(self) -> bool:
        """Whether operations are being refused now (on a cluster: on any node)."""
        return bool(self.open_routes())

    def open_routes(self) -> list[str | None]:
        """The routes whose operations are refused now: node names, or ``[None]``."""
        now = time.monotonic()
        return [
            route
            for route, circuit in list(self._circuits.items())
            if circuit.failures >= self.threshold and now < circuit.open_until
        ]

    def admit(self, route: str | None = None) -> bool:
        """Let an operation through, or raise ``BackendUnavailable`` while open.

        Returns ``True`` when the operation is the half-open trial.
        """
        circuit = self._circuits.get(route)
        if circuit is None or circuit.failures < self.threshold:
            return False  # closed: the common case, without the lock
        with self._lock:
            if time.monotonic() < circuit.open_until or circuit.trial:
                where = "" if route is None else f" (cluster node {route})"
                # The last failure names the server (masked) and why, which the caller needs.
                raise BackendUnavailable(
                    f"Redis is not answering{where} (circuit open): not waiting; "
                    f"{circuit.failures} operations in a row got no answer, the last: "
                    f"{circuit.last_cause}"
                )
            circuit.trial = True  # half-open: this operation is the trial
            return True

    def succeeded(self, route: str | None = None) -> None:
        """An operation got an answer: close."""
        circuit = self._circuits.get(route)
        if circuit is not None and circuit.failures:
            with self._lock:
                was_open = circuit.failures >= self.threshold
                circuit.failures = 0
                circuit.trial = False
            if was_open:
                self._report("circuit_closed")  # outside the lock: an observer may be slow

    def abandoned(self, route: str | None = None) -> None:
        """The trial ended with no verdict (cancelled, interrupted): the next operation is one."""
        circuit = self._circuits.get(route)
        if circuit is not None:
            with self._lock:
                circuit.trial = False

    @contextlib.contextmanager
    def guard(self, route: str | None = None) -> Iterator[None]:
        """Admit one operation and record how it ended, whichever way it leaves the block."""
        trial = self.admit(route)
        try:
            yield
        except NO_ANSWER as exc:
            self.failed(exc, route)
            raise
        except CommandError:
            self.succeeded(route)  # Redis answered, with an error reply
            raise
        except BaseException:
            if trial:
                self.abandoned(route)
            raise
        self.succeeded(route)

    def failed(self, cause: BaseException | None = None, route: str | None = None) -> None:
        """An operation got no answer (``cause``): count it, and open at the threshold."""
        circuit = self._circuit(route)
        with self._lock:
            circuit.failures += 1
            if cause is not None:
                circuit.last_cause = f"{type(cause).__name__}: {cause}"
            circuit.trial = False
            if circuit.failures >= self.threshold:
                circuit.open_until = time.monotonic() + self.cooldown
            opened = circuit.failures == self.threshold  # a failed trial stays open
        if opened:
            self._report("circuit_opened")


def _router(driver: object) -> Callable[[RedisOp], str | None] | None:
    """The driver's ``route`` (the cluster node of an operation), on a cluster only."""
    if not getattr(driver, "is_cluster", False):
        return None
    route: Callable[[RedisOp], str | None] | None = getattr(driver, "route", None)
    return route


class BreakerDriver:
    """A blocking driver behind a :class:`Breaker`."""

    def __init__(self, driver: SyncDriver, breaker: Breaker) -> None:
        self.driver = driver
        self.breaker = breaker
        self._route = _router(driver)
        breaker.report_to(driver)

    def execute(self, op: RedisOp) -> Any:
        """Run ``op``, unless the breaker is open (for the node of ``op``, on a cluster)."""
        route = None if self._route is None else self._route(op)
        with self.breaker.guard(route):
            return self.driver.execute(op)

    def close(self) -> None:
        """Close the driver behind the breaker."""
        self.driver.close()


class AsyncBreakerDriver:
    """An asyncio driver behind a :class:`Breaker`."""

    def __init__(self, driver: AsyncDriver, breaker: Breaker) -> None:
        self.driver = driver
        self.breaker = breaker
        self._route = _router(driver)
        breaker.report_to(driver)

    async def execute(self, op: RedisOp) -> Any:
        """Run ``op``, unless the breaker is open (for the node of ``op``, on a cluster)."""
        route = None if self._route is None else self._route(op)
        with self.breaker.guard(route):
            return await self.driver.execute(op)

    async def aclose(self) -> None:
        """Close the driver behind the breaker."""
        await self.driver.aclose()
