"""What a rate-limit decision answers."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias

__all__ = ["COMPLETED", "Pending", "RatelimitResult", "Reason", "Remaining"]

#: Why an answer is not an algorithm's: Redis did not answer in time (or was down), the
#: identifier was already known to be blocked, or a value of the request is denied.
Reason: TypeAlias = Literal["timeout", "cacheBlock", "denyList"]


class Pending:
    """A decision's work still under way after its answer: ``@upstash/ratelimit``'s ``pending``.

    A multi-region decision's writes to the regions that did not answer first, its catch-up
    and its analytics send go on in the background once ``limit()`` has answered; this handle
    completes when all of them are done. Their errors are logged (``redkit.ratelimit``), never
    raised here, so waiting never fails. Every other answer holds :data:`COMPLETED`.

    Blocking: ``result.pending.wait(timeout=None)``; asyncio: ``await result.pending`` (or
    pass it to ``asyncio.shield``, ``asyncio.wait_for``, ``asyncio.gather``: cancelling a wait
    never cancels the work). A serverless handler hands it to what keeps the process alive
    until it is done, as a JavaScript one hands ``pending`` to ``waitUntil``.
    """

    __slots__ = ("_future", "_loop")

    def __init__(
        self,
        future: concurrent.futures.Future[None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._future = future
        #: The event loop doing the work, if any: waiting there would block it.
        self._loop = loop

    @classmethod
    def started(
        cls, loop: asyncio.AbstractEventLoop | None = None
    ) -> tuple[Pending, Callable[[], None]]:
        """A handle of work under way, and the call that completes it (from any thread)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()  # a running future cannot be cancelled
        return cls(future, loop), lambda: future.set_result(None)

    def done(self) -> bool:
        """Whether the work is done."""
        return self._future.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the work is done, ``timeout`` seconds at most; True when it is done.

        Raises:
            RuntimeError: when called in the event loop that does the work, or while that
                loop is stopped (it would never be done): ``await`` the handle there.

        """
        loop = self._loop
        if not self._future.done() and loop is not None:
            if _running_loop() is loop:
                raise RuntimeError(
                    "Pending.wait() in the event loop doing the work would block it: await it"
                )
            if not loop.is_running():
                # Nothing runs the work until the loop runs again (after run_until_complete).
                raise RuntimeError(
                    "Pending.wait(): the event loop doing the work is not running; run it "
                    "(loop.run_until_complete(result.pending)) or await the handle there"
                )
        concurrent.futures.wait((self._future,), timeout)
        return self._future.done()

    def __await__(self) -> Generator[Any, None, None]:
        if not self._future.done():
            # A cancelled wait cancels this wrapper only: the running future refuses it.
            yield from asyncio.wrap_future(self._future).__await__()

    def __repr__(self) -> str:
        return f"<Pending {'done' if self.done() else 'running'}>"

    def __copy__(self) -> Pending:
        return self  # a handle names work under way: its copy is the same work

    def __deepcopy__(self, memo: dict[int, Any]) -> Pending:
        return self

    def __reduce__(self) -> tuple[Callable[[], Pending], tuple[()]]:
        if not self.done():
            raise TypeError("a Pending still running cannot be pickled: wait for it first")
        return _completed, ()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _completed() -> Pending:
    return COMPLETED


def _finished() -> concurrent.futures.Future[None]:
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    future.set_result(None)
    return future


#: The handle of an answer with nothing left to do in the background.
COMPLETED = Pending(_finished())


@dataclass(frozen=True, slots=True)
class RatelimitResult:
    """One decision, in ``@upstash/ratelimit``'s shape; true when the request may proceed.

    Attributes:
        success: whether the request is admitted.
        limit: the limit that applied (requests per window, or the bucket's capacity).
        remaining: what is left after this request.
        reset: epoch milliseconds when the window ends (fixed and sliding window) or the next
            refill comes (token bucket); 0 when Redis did not answer.
        retry_after: seconds until a request of the same cost could be admitted, if nothing
            else happens meanwhile; 0 when admitted. A cost above the limit can never be
            admitted: it reports the time until ``reset``.
        reason: ``None`` for an answer from Redis; ``"timeout"`` when Redis was too slow or
            down and the ``on_timeout`` policy answered; ``"cacheBlock"`` when the ephemeral
            cache answered without asking Redis; ``"denyList"`` when a value of the request
            is on the deny list (nothing is consumed then).
        refused_by: with several limits, the position (from 0) of the limit that refused;
            ``None`` otherwise. ``limit``, ``remaining`` and ``reset`` are that limit's (when
            all admit, those of the limit with the least left).
        denied_value: with ``reason="denyList"``, the value found on the deny list.
        pending: the decision's work still under way in the background (:class:`Pending`:
            ``result.pending.wait()``, ``await result.pending``), as ``@upstash/ratelimit``'s
            ``pending``: a multi-region decision's writes to the other regions, catch-up and
            analytics. :data:`COMPLETED` for the other limiters, whose script has written
            the decision when it answers (a ``CachedFixedWindow``'s local counts are sent by
            the limiter's ``flush()`` and its own background sends, not tracked here). Not
            compared, not shown in ``repr``; a result pickles once its handle is done (a
            running one is work in this process: pickling it is a ``TypeError``).

    """

    success: bool
    limit: int
    remaining: int
    reset: int
    retry_after: float = 0.0
    reason: Reason | None = None
    refused_by: int | None = None
    denied_value: str | None = None
    pending: Pending = field(default=COMPLETED, compare=False, repr=False)

    def __bool__(self) -> bool:
        return self.success


class Remaining(NamedTuple):
    """What an identifier has left, without consuming any of it."""

    #: Requests (or tokens) still available now.
    remaining: int
    #: Epoch milliseconds of the window's end or the next refill.
    reset: int
    #: The limit that applies.
    limit: int
