"""What a rate-limit decision answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeAlias

__all__ = ["RatelimitResult", "Reason", "Remaining"]

#: Why an answer is not an algorithm's: Redis did not answer in time (or was down), the
#: identifier was already known to be blocked, or a value of the request is denied.
Reason: TypeAlias = Literal["timeout", "cacheBlock", "denyList"]


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

    """

    success: bool
    limit: int
    remaining: int
    reset: int
    retry_after: float = 0.0
    reason: Reason | None = None
    refused_by: int | None = None
    denied_value: str | None = None

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
