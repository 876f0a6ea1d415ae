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
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from redkit.core.errors import InvalidArgumentError
from redkit.core.keys import escape
from redkit.ratelimit.facade import AsyncRatelimit, Ratelimit
from redkit.ratelimit.rates import limits_from
from redkit.ratelimit.result import RatelimitResult
from redkit.ratelimit.tiers import AsyncTieredRatelimit, TieredRatelimit
from redkit.web.headers import Policy, policies_for, ratelimit_headers, retry_after_seconds
from redkit.web.keys import by_client_ip
from redkit.web.request import KeyFunc, RequestInfo, TierFunc

if TYPE_CHECKING:
    from redkit.drivers.connect import Connection
    from redkit.drivers.rest import RestConnection

__all__ = [
    "AnyRatelimit",
    "CostFunc",
    "Decision",
    "LimitRule",
    "checked_limiter",
    "limiter_from",
    "too_many_requests_body",
]

#: Every limiter a web rule accepts.
AnyRatelimit: TypeAlias = Ratelimit | AsyncRatelimit | TieredRatelimit | AsyncTieredRatelimit
#: A limiter, or a rate string (``"5/minute"``, ``"10/second; 1000/day"``) to make one from.
RatelimitLike: TypeAlias = AnyRatelimit | str
#: What a request costs, per request (a coroutine function under ASGI too).
CostFunc: TypeAlias = Callable[[RequestInfo], "int | Awaitable[int]"]
#: A predicate on the request: true exempts it from the limit.
ExemptFunc: TypeAlias = Callable[[RequestInfo], "bool | Awaitable[bool]"]

_RATELIMIT_TYPES = (Ratelimit, AsyncRatelimit, TieredRatelimit, AsyncTieredRatelimit)


def checked_limiter(value: object, setting: str = "ratelimit") -> AnyRatelimit:
    """``value`` if it is a redkit limiter; else an error naming ``setting`` and the fix."""
    if isinstance(value, _RATELIMIT_TYPES):
        return value
    raise InvalidArgumentError(
        f"{setting} must be a redkit limiter (Ratelimit, AsyncRatelimit, TieredRatelimit, "
        f"AsyncTieredRatelimit) or a rate string such as '5/minute' or '10/second; 1000/day' "
        f"(see redkit.limits_from), got {type(value).__name__}: {value!r:.60}"
    )


def limiter_from(
    value: object,
    redis: Connection | RestConnection | None = None,
    *,
    blocking: bool,
    setting: str = "ratelimit",
) -> AnyRatelimit:
    """A limiter as given, or one made from a rate string (``"5/minute"``, ``"100 per day"``).

    A string becomes fixed windows (:func:`~redkit.limits_from`, as slowapi and Flask-Limiter
    count) on ``redis``, or on the connection ``REDIS_URL`` (or Upstash's variables) names:
    a :class:`~redkit.Ratelimit` when ``blocking``, else an :class:`~redkit.AsyncRatelimit`.

    Raises:
        InvalidArgumentError: naming ``setting``, for anything else.

    """
    if not isinstance(value, str):
        return checked_limiter(value, setting)
    try:
        limits = limits_from(value)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{setting}: {exc}") from None
    if redis is None:
        from redkit.drivers.connect import from_env

        redis = from_env()
    limiter = limits[0] if len(limits) == 1 else limits
    return Ratelimit(redis, limiter) if blocking else AsyncRatelimit(redis, limiter)


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
        cost: what one request costs (``rate`` of :meth:`~redkit.Ratelimit.limit`), or a
            function of the request returning it.
        scope: the name of the counter: routes that give the same ``scope`` share one count
            per client. By default each route counts on its own (its template, e.g.
            ``/items/{item_id}``, goes in front of the identifier).
        exempt_when: a predicate on the request; true leaves the request unlimited.
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
        cost: int | CostFunc = 1,
        scope: str | None = None,
        ietf: bool = True,
        legacy: bool = True,
        policy_name: str = "default",
        exempt_when: ExemptFunc | None = None,
    ) -> None:
        ratelimit = checked_limiter(ratelimit)  # the adapters make rate strings into limiters
        tiered = isinstance(ratelimit, (TieredRatelimit, AsyncTieredRatelimit))
        if tiered and tier is None:
            raise InvalidArgumentError("a tiered limiter needs tier= (a name or a function)")
        if not tiered and tier is not None:
            raise InvalidArgumentError("tier= needs a TieredRatelimit or AsyncTieredRatelimit")
        if not callable(cost):
            _check_cost(cost)
        if scope is not None and (not isinstance(scope, str) or not scope):
            raise InvalidArgumentError(f"scope must be a non-empty str, got {scope!r}")
        if exempt_when is not None and not callable(exempt_when):
            raise InvalidArgumentError("exempt_when must be a function of the request")
        self.ratelimit = ratelimit
        self.key: KeyFunc = key if key is not None else by_client_ip()
        self.tier = tier
        self.cost = cost
        self.scope = scope
        self.ietf = ietf
        self.legacy = legacy
        self.policy_name = policy_name
        self.exempt_when = exempt_when
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

    def identifier(self, key: str, route: str | None = None) -> str:
        """The identifier a request of ``key`` on ``route`` is counted under.

        ``<scope or route>:<key>``: the name is escaped, so its ``:`` or braces can neither
        reach into the key's part nor end a cluster hash tag. Without either, just ``key``.
        """
        name = self.scope if self.scope is not None else route
        return f"{escape(name)}:{key}" if name else key

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
        if self.exempt_when is not None and _sync_value(self.exempt_when(request), "exempt_when"):
            return None
        key = _sync_value(self.key(request), "key")
        if key is None:
            return None
        identifier = self.identifier(key, self._route(request))
        if isinstance(self.cost, int):
            cost = self.cost  # checked once, at construction
        else:
            cost = _sync_value(self.cost(request), "cost")
            _check_cost(cost)
        if isinstance(limiter, TieredRatelimit):
            tier_name = _sync_value(self._tier_name(request), "tier")
            self.policies(tier_name)  # an unknown tier fails before anything is counted
            result = limiter.limit(identifier, cost, tier=tier_name)
            return self.decision(result, identifier, tier_name)
        return self.decision(limiter.limit(identifier, cost), identifier, None)

    async def check_async(self, request: RequestInfo, to_thread: ToThread) -> Decision | None:
        """Decide ``request`` in asyncio; a blocking limiter runs through ``to_thread``."""
        if self.exempt_when is not None and await _async_value(self.exempt_when(request)):
            return None
        key = await _async_value(self.key(request))
        if key is None:
            return None
        identifier = self.identifier(key, self._route(request))
        if isinstance(self.cost, int):
            cost = self.cost  # checked once, at construction
        else:
            cost = await _async_value(self.cost(request))
            _check_cost(cost)
        limiter = self.ratelimit
        tier_name: str | None = None
        if isinstance(limiter, (TieredRatelimit, AsyncTieredRatelimit)):
            tier_name = await _async_value(self._tier_name(request))
            self.policies(tier_name)
        if isinstance(limiter, AsyncTieredRatelimit):
            result = await limiter.limit(identifier, cost, tier=tier_name)
        elif isinstance(limiter, AsyncRatelimit):
            result = await limiter.limit(identifier, cost)
        elif isinstance(limiter, TieredRatelimit):
            result = await to_thread(_tiered_call, limiter, identifier, cost, tier_name)
        else:
            result = await to_thread(limiter.limit, identifier, cost)
        return self.decision(result, identifier, tier_name)

    def _route(self, request: RequestInfo) -> str | None:
        # A scope names the counter: the route (a walk of the router's routes, before
        # routing) is looked up only when it is the name.
        return None if self.scope is not None else request.route()

    def _tier_name(self, request: RequestInfo) -> str | Awaitable[str]:
        tier = self.tier
        if tier is None or isinstance(tier, str):
            return tier or ""
        return tier(request)


def _check_cost(cost: object) -> None:
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise InvalidArgumentError(
            f"cost must be an int >= 1 (or a function giving one), got {cost!r}"
        )


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
