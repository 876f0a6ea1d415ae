"""One rate limit as a web app applies it: limiter, key, tier, cost, headers; and its decision.

:class:`LimitRule` is what the FastAPI dependency, the ASGI middleware and the Flask extension
share. It asks the key function who the request is, asks the limiter, and turns the answer
into a :class:`Decision`: the headers to send and, for a refusal, the 429 body.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit.facade import AsyncRatelimit, Ratelimit
from redkit.ratelimit.result import RatelimitResult
from redkit.ratelimit.tiers import AsyncTieredRatelimit, TieredRatelimit
from redkit.web.headers import Policy, policies_for, ratelimit_headers, retry_after_seconds
from redkit.web.keys import by_client_ip
from redkit.web.request import KeyFunc, RequestInfo, TierFunc

__all__ = ["AnyRatelimit", "Decision", "LimitRule", "too_many_requests_body"]

#: Every limiter a web rule accepts.
AnyRatelimit: TypeAlias = Ratelimit | AsyncRatelimit | TieredRatelimit | AsyncTieredRatelimit

T = TypeVar("T")

#: Runs a blocking call off the event loop (``starlette.concurrency.run_in_threadpool``).
ToThread: TypeAlias = Callable[..., Awaitable[Any]]


def too_many_requests_body(retry_after: int) -> bytes:
    """The JSON body of every 429: ``{"error": "Too many requests", "retryAfter": N}``."""
    body = {"error": "Too many requests", "retryAfter": retry_after}
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Decision:
    """What a rule decided for one request.

    Attributes:
        result: the limiter's answer.
        headers: the rate-limit headers to send (``Retry-After`` included on a refusal).
        identifier: the identifier the request was counted under.
        tier: the tier that applied, for a tiered limiter.

    """

    result: RatelimitResult
    headers: list[tuple[str, str]]
    identifier: str
    tier: str | None = None

    @property
    def allowed(self) -> bool:
        """Whether the request may proceed."""
        return self.result.success

    @property
    def retry_after(self) -> int:
        """Whole seconds a refused client should wait (at least 1)."""
        return retry_after_seconds(self.result)

    def body(self) -> bytes:
        """The 429 JSON body of a refusal."""
        return too_many_requests_body(self.retry_after)


class LimitRule:
    """A limiter applied to requests: who counts (``key``), at what ``cost``, which headers.

    Args:
        ratelimit: a :class:`~redkit.Ratelimit`, :class:`~redkit.AsyncRatelimit`,
            :class:`~redkit.TieredRatelimit` or :class:`~redkit.AsyncTieredRatelimit`.
        key: who a request counts against (:mod:`redkit.web.keys`); the client's IP (socket
            peer) by default. A key function returning ``None`` exempts the request.
        tier: for a tiered limiter, the tier's name or a function choosing it per request
            (e.g. :func:`~redkit.web.keys.tier_by_api_key`); required there, refused elsewhere.
        cost: what one request costs (``rate`` of :meth:`~redkit.Ratelimit.limit`).
        scope: a namespace put in front of each identifier (``"<scope>:<key>"``), so routes
            sharing one limiter can still keep separate counts.
        ietf: send the draft's ``RateLimit-Policy`` and ``RateLimit`` headers.
        legacy: send ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``.
        policy_name: the name the IETF headers give this limit (a tier's name for tiers).

    """

    def __init__(
        self,
        ratelimit: AnyRatelimit,
        *,
        key: KeyFunc | None = None,
        tier: str | TierFunc | None = None,
        cost: int = 1,
        scope: str | None = None,
        ietf: bool = True,
        legacy: bool = True,
        policy_name: str = "default",
    ) -> None:
        if not isinstance(
            ratelimit, (Ratelimit, AsyncRatelimit, TieredRatelimit, AsyncTieredRatelimit)
        ):
            raise InvalidArgumentError(
                "ratelimit must be a Ratelimit, AsyncRatelimit, TieredRatelimit or "
                f"AsyncTieredRatelimit, got {type(ratelimit).__name__}"
            )
        tiered = isinstance(ratelimit, (TieredRatelimit, AsyncTieredRatelimit))
        if tiered and tier is None:
            raise InvalidArgumentError("a tiered limiter needs tier= (a name or a function)")
        if not tiered and tier is not None:
            raise InvalidArgumentError("tier= needs a TieredRatelimit or AsyncTieredRatelimit")
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise InvalidArgumentError(f"cost must be an int >= 1, got {cost!r}")
        self.ratelimit = ratelimit
        self.key: KeyFunc = key if key is not None else by_client_ip()
        self.tier = tier
        self.cost = cost
        self.scope = scope
        self.ietf = ietf
        self.legacy = legacy
        self.policy_name = policy_name
        self._policies: dict[str | None, tuple[Policy, ...]] = {}

    @property
    def is_async(self) -> bool:
        """Whether the limiter is an asyncio one (else it blocks)."""
        return isinstance(self.ratelimit, (AsyncRatelimit, AsyncTieredRatelimit))

    def policies(self, tier: str | None) -> tuple[Policy, ...]:
        """The policies the IETF headers announce for ``tier`` (``None``: untiered)."""
        found = self._policies.get(tier)
        if found is None:
            limiter = self.ratelimit
            if tier is not None and isinstance(limiter, (TieredRatelimit, AsyncTieredRatelimit)):
                tiers = limiter.tiers
                if tier not in tiers:
                    raise InvalidArgumentError(
                        f"unknown tier {tier!r}: the tiers are {list(tiers)}"
                    )
                found = policies_for(tiers[tier].limiter, tier)
            elif isinstance(limiter, (Ratelimit, AsyncRatelimit)):
                found = policies_for(limiter.limiter, self.policy_name)
            else:  # pragma: no cover - the constructor rules this out
                raise InvalidArgumentError("a tiered limiter needs a tier")
            self._policies[tier] = found
        return found

    def identifier(self, key: str) -> str:
        """The identifier a request of ``key`` is counted under."""
        return f"{self.scope}:{key}" if self.scope else key

    def decision(self, result: RatelimitResult, identifier: str, tier: str | None) -> Decision:
        """Turn the limiter's ``result`` into headers (and a body, when refused)."""
        headers = ratelimit_headers(result, self.policies(tier), ietf=self.ietf, legacy=self.legacy)
        return Decision(result, headers, identifier, tier)

    def check_sync(self, request: RequestInfo) -> Decision | None:
        """Decide ``request`` with a blocking limiter; ``None`` when its key exempts it."""
        limiter = self.ratelimit
        if not isinstance(limiter, (Ratelimit, TieredRatelimit)):
            raise InvalidArgumentError(
                f"a blocking app needs a Ratelimit or TieredRatelimit, got {type(limiter).__name__}"
            )
        key = _sync_value(self.key(request), "key")
        if key is None:
            return None
        identifier = self.identifier(key)
        if isinstance(limiter, TieredRatelimit):
            tier_name = _sync_value(self._tier_name(request), "tier")
            self.policies(tier_name)  # an unknown tier fails before anything is counted
            result = limiter.limit(identifier, self.cost, tier=tier_name)
            return self.decision(result, identifier, tier_name)
        return self.decision(limiter.limit(identifier, self.cost), identifier, None)

    async def check_async(self, request: RequestInfo, to_thread: ToThread) -> Decision | None:
        """Decide ``request`` in asyncio; a blocking limiter runs through ``to_thread``."""
        key = await _async_value(self.key(request))
        if key is None:
            return None
        identifier = self.identifier(key)
        limiter = self.ratelimit
        tier_name: str | None = None
        if isinstance(limiter, (TieredRatelimit, AsyncTieredRatelimit)):
            tier_name = await _async_value(self._tier_name(request))
            self.policies(tier_name)
        if isinstance(limiter, AsyncTieredRatelimit):
            result = await limiter.limit(identifier, self.cost, tier=tier_name)
        elif isinstance(limiter, AsyncRatelimit):
            result = await limiter.limit(identifier, self.cost)
        elif isinstance(limiter, TieredRatelimit):
            result = await to_thread(_tiered_call, limiter, identifier, self.cost, tier_name)
        else:
            result = await to_thread(limiter.limit, identifier, self.cost)
        return self.decision(result, identifier, tier_name)

    def _tier_name(self, request: RequestInfo) -> str | Awaitable[str]:
        tier = self.tier
        if tier is None or isinstance(tier, str):
            return tier or ""
        return tier(request)


def _tiered_call(
    limiter: TieredRatelimit, identifier: str, cost: int, tier: str | None
) -> RatelimitResult:
    return limiter.limit(identifier, cost, tier=tier)


def _sync_value(value: T | Awaitable[T], what: str) -> T:
    if inspect.isawaitable(value):
        if inspect.iscoroutine(value):
            value.close()  # never awaited: close it, or Python warns at collection
        raise InvalidArgumentError(f"a blocking app needs a plain {what} function, not async")
    return value


async def _async_value(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value
