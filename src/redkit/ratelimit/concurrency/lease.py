"""What a concurrency limiter answers: a :class:`Lease`, held or refused."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

__all__ = ["Lease"]


@dataclass(frozen=True, slots=True)
class Lease:
    """One answer of :meth:`Concurrency.acquire`; true when a slot was taken.

    A lease from :class:`Concurrency` is a context manager that releases it on exit (when it
    was acquired); the body runs either way, so check ``lease.success`` in it. For asyncio,
    write ``async with limiter.acquire(...)`` (see :class:`AcquireContext`).

    Attributes:
        success: whether a slot was taken (or, with ``reason="timeout"``, the policy's answer).
        limit: the limiter's ``max_in_flight``.
        remaining: slots still free after this call.
        identifier: the identifier the slot belongs to.
        token: the lease's random 128-bit id (hex); empty when no slot was taken.
        expires_at: epoch milliseconds when the lease ends unless extended; 0 when refused.
            :meth:`Concurrency.extend` does not update it: it returns whether the lease lives.
        retry_after: when refused, seconds until the earliest held lease ends (a release may
            free a slot sooner); 0 otherwise.
        reason: ``None`` for an answer from Redis; ``"timeout"`` when Redis was too slow or
            down and the ``on_timeout`` policy answered (no slot is held then).

    """

    success: bool
    limit: int
    remaining: int
    identifier: str | int
    token: str = ""
    expires_at: int = 0
    retry_after: float = 0.0
    reason: Literal["timeout"] | None = None
    # The blocking facade's release, for the context manager; not part of the value.
    _release: Callable[[Lease], bool] | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.success

    def __reduce__(self) -> tuple[type[Lease], tuple[Any, ...]]:
        # A lease travels (pickled to another process) as its value; the release it was bound
        # to stays behind with its facade. The receiver releases with a limiter of its own.
        return (Lease, tuple(getattr(self, f.name) for f in dataclasses.fields(self) if f.compare))

    @property
    def _took_slot(self) -> bool:
        # Acquired from Redis: the timeout policy's "allow" holds no slot to give back.
        return self.success and bool(self.token)

    def __enter__(self) -> Lease:
        if self._release is None:
            # A lease from AsyncConcurrency would not be released by a plain `with`.
            raise TypeError(
                "this lease is not bound to a blocking Concurrency: with AsyncConcurrency, "
                "write `async with limiter.acquire(...) as lease:`"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._release is not None and self._took_slot:
            self._release(self)
