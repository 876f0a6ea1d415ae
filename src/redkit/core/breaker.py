"""A circuit breaker in front of a driver: stop waiting on a Redis that is down.

After ``threshold`` operations in a row that got no answer (a timeout, a refused connection),
the breaker *opens*: for ``cooldown`` seconds every operation fails at once with
:class:`~redkit.errors.BackendUnavailable`, without touching the network, so callers fall back
(a cache answers from its loader) at full speed instead of each waiting out a timeout. Then one
operation is let through as a trial: an answer (an error reply is an answer too) closes the
breaker, another failure opens it again, and any other way out of the trial (cancellation,
``KeyboardInterrupt``, a bug) ends it without a verdict, so the next operation is the trial.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from redkit.core.driver import AsyncDriver, SyncDriver
from redkit.core.errors import BackendTimeout, BackendUnavailable, CommandError
from redkit.core.ops import RedisOp

__all__ = ["AsyncBreakerDriver", "Breaker", "BreakerDriver"]

_NO_ANSWER = (BackendTimeout, BackendUnavailable)


class Breaker:
    """The breaker's state, shared by the drivers it guards (thread-safe)."""

    def __init__(self, threshold: int = 5, cooldown: float = 5.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0
        self._trial = False
        self._last_cause = ""
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Whether operations are being refused now."""
        return self._failures >= self.threshold and time.monotonic() < self._open_until

    def admit(self) -> bool:
        """Let an operation through, or raise ``BackendUnavailable`` while open.

        Returns ``True`` when the operation is the half-open trial.
        """
        if self._failures < self.threshold:
            return False  # closed: the common case, without the lock
        with self._lock:
            if time.monotonic() < self._open_until or self._trial:
                # The last failure names the server (masked) and why, which the caller needs.
                raise BackendUnavailable(
                    f"Redis is not answering (circuit open): not waiting; {self._failures} "
                    f"operations in a row got no answer, the last: {self._last_cause}"
                )
            self._trial = True  # half-open: this operation is the trial
            return True

    def succeeded(self) -> None:
        """An operation got an answer: close."""
        if self._failures:
            with self._lock:
                self._failures = 0
                self._trial = False

    def abandoned(self) -> None:
        """The trial ended with no verdict (cancelled, interrupted): the next operation is one."""
        with self._lock:
            self._trial = False

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Admit one operation and record how it ended, whichever way it leaves the block."""
        trial = self.admit()
        try:
            yield
        except _NO_ANSWER as exc:
            self.failed(exc)
            raise
        except CommandError:
            self.succeeded()  # Redis answered, with an error reply
            raise
        except BaseException:
            if trial:
                self.abandoned()
            raise
        self.succeeded()

    def failed(self, cause: BaseException | None = None) -> None:
        """An operation got no answer (``cause``): count it, and open at the threshold."""
        with self._lock:
            self._failures += 1
            if cause is not None:
                self._last_cause = f"{type(cause).__name__}: {cause}"
            self._trial = False
            if self._failures >= self.threshold:
                self._open_until = time.monotonic() + self.cooldown


class BreakerDriver:
    """A blocking driver behind a :class:`Breaker`."""

    def __init__(self, driver: SyncDriver, breaker: Breaker) -> None:
        self.driver = driver
        self.breaker = breaker

    def execute(self, op: RedisOp) -> Any:
        """Run ``op``, unless the breaker is open."""
        with self.breaker.guard():
            return self.driver.execute(op)

    def close(self) -> None:
        """Close the driver behind the breaker."""
        self.driver.close()


class AsyncBreakerDriver:
    """An asyncio driver behind a :class:`Breaker`."""

    def __init__(self, driver: AsyncDriver, breaker: Breaker) -> None:
        self.driver = driver
        self.breaker = breaker

    async def execute(self, op: RedisOp) -> Any:
        """Run ``op``, unless the breaker is open."""
        with self.breaker.guard():
            return await self.driver.execute(op)

    async def aclose(self) -> None:
        """Close the driver behind the breaker."""
        await self.driver.aclose()
