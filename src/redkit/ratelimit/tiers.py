"""Tiered limits: one limiter per plan ("free", "pro", ...), chosen per call.

Each tier is an ordinary :class:`~redkit.Ratelimit` (or :class:`~redkit.AsyncRatelimit`) under
a prefix of its own, ``<prefix>:<tier>`` with the tier's name escaped, so tiers can never share
a key, whatever their names or the identifiers hold. They share one connection and, by default,
one ephemeral cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from redkit.core import keys
from redkit.core.clock import Clock
from redkit.core.driver import as_backend
from redkit.core.durations import Duration
from redkit.core.errors import InvalidArgumentError
from redkit.core.fleet import stats_interval
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.facade import DEFAULT_TIMEOUT, AsyncRatelimit, Ratelimit
from redkit.ratelimit.flows import DEFAULT_PREFIX, TimeoutPolicy
from redkit.ratelimit.limiters import Limiter
from redkit.ratelimit.result import RatelimitResult, Remaining

if TYPE_CHECKING:
    from redkit.advise.recorder import TraceRecorder

__all__ = ["AsyncTieredRatelimit", "TieredRatelimit"]

F = TypeVar("F", Ratelimit, AsyncRatelimit)


class _Tiers(Generic[F]):
    """The tier table both facades share: names checked once, one limiter per tier."""

    def __init__(
        self,
        make: Callable[[Limiter, str, EphemeralCache | bool], F],
        tiers: Mapping[str, Limiter],
        prefix: str,
        default_tier: str | None,
        ephemeral_cache: bool | EphemeralCache,
    ) -> None:
        if not isinstance(tiers, Mapping) or not tiers:
            raise InvalidArgumentError("tiers must be a non-empty mapping of names to limiters")
        prefix = keys.check_prefix(prefix)
        # One cache for every tier: their keys differ, so their blocks never mix.
        cache = EphemeralCache() if ephemeral_cache is True else ephemeral_cache
        self.limiters: dict[str, F] = {}
        for name, limiter in tiers.items():
            if not isinstance(name, str) or not name:
                raise InvalidArgumentError(f"a tier name must be a non-empty str, got {name!r}")
            self.limiters[name] = make(limiter, f"{prefix}:{keys.escape(name)}", cache)
        if default_tier is not None and default_tier not in self.limiters:
            raise InvalidArgumentError(
                f"default_tier {default_tier!r} is not one of the tiers: {self.known()}"
            )
        self.default_tier = default_tier

    def known(self) -> str:
        return ", ".join(repr(name) for name in self.limiters)

    def get(self, tier: str | None) -> F:
        name = self.default_tier if tier is None else tier
        if name is None:
            raise InvalidArgumentError(f"give a tier: one of {self.known()} (no default_tier)")
        limiter = self.limiters.get(name)
        if limiter is None:
            raise InvalidArgumentError(f"unknown tier {name!r}: the tiers are {self.known()}")
        return limiter


class TieredRatelimit:
    """Rate limits per plan, blocking: ``limit(identifier, tier="pro")``.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py client.
        tiers: tier names mapped to limiters, e.g. ``{"free": SlidingWindow(10, "1 m"),
            "pro": SlidingWindow(100, "1 m")}``.
        prefix: each tier's keys start with ``<prefix>:<tier>``.
        default_tier: the tier of calls that name none; without it every call must.
        ephemeral_cache: as for :class:`~redkit.Ratelimit`; one cache serves every tier.
        timeout: as for :class:`~redkit.Ratelimit`.
        on_timeout: as for :class:`~redkit.Ratelimit`.
        clock: as for :class:`~redkit.Ratelimit`.
        trace: as for :class:`~redkit.Ratelimit`: each tier's decisions are recorded under its
            own prefix, ``<prefix>:<tier>``.
        stats: as for :class:`~redkit.Ratelimit`: each tier's counts are sent under its own
            prefix, ``<prefix>:<tier>``.

    """

    def __init__(
        self,
        redis: object,
        tiers: Mapping[str, Limiter],
        *,
        prefix: str = DEFAULT_PREFIX,
        default_tier: str | None = None,
        ephemeral_cache: bool | EphemeralCache = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        clock: Clock | Literal["server", "client"] | None = None,
        trace: TraceRecorder | None = None,
        stats: Duration | None = None,
    ) -> None:
        stats_interval(stats)  # refused before any tier starts its reporter
        backend = as_backend(redis)  # one connection for every tier, even from a URL

        def make(limiter: Limiter, tier_prefix: str, cache: EphemeralCache | bool) -> Ratelimit:
            return Ratelimit(
                backend, limiter, prefix=tier_prefix, ephemeral_cache=cache, timeout=timeout,
                on_timeout=on_timeout, clock=clock, trace=trace, stats=stats,
            )  # fmt: skip

        self._tiers = _Tiers(make, tiers, prefix, default_tier, ephemeral_cache)

    @property
    def tiers(self) -> dict[str, Ratelimit]:
        """Each tier's own limiter, by name."""
        return dict(self._tiers.limiters)

    def limit(
        self, identifier: str | int, rate: int = 1, *, tier: str | None = None
    ) -> RatelimitResult:
        """Decide one request of ``identifier`` under ``tier``'s limit."""
        return self._tiers.get(tier).limit(identifier, rate)

    def limit_many(
        self, identifiers: Iterable[str | int], rate: int = 1, *, tier: str | None = None
    ) -> list[RatelimitResult]:
        """Decide one request for each identifier, all under ``tier``, in one round trip."""
        return self._tiers.get(tier).limit_many(identifiers, rate)

    def block_until_ready(
        self, identifier: str | int, timeout: Duration, rate: int = 1, *, tier: str | None = None
    ) -> RatelimitResult:
        """Wait until ``identifier`` is admitted under ``tier`` or ``timeout`` passes."""
        return self._tiers.get(tier).block_until_ready(identifier, timeout, rate)

    def get_remaining(self, identifier: str | int, *, tier: str | None = None) -> Remaining:
        """What ``identifier`` has left under ``tier``; consumes nothing."""
        return self._tiers.get(tier).get_remaining(identifier)

    def reset(self, identifier: str | int, *, tier: str | None = None) -> int:
        """Delete ``identifier``'s state in ``tier``, or in every tier when none is named."""
        chosen = self._tiers.limiters.values() if tier is None else [self._tiers.get(tier)]
        return sum(limiter.reset(identifier) for limiter in chosen)

    def flush(self) -> None:
        """Send every tier's pending counts now (see :meth:`~redkit.Ratelimit.flush`)."""
        for limiter in self._tiers.limiters.values():
            limiter.flush()

    def close(self) -> None:
        """Stop every tier's background sends and send what they counted."""
        for limiter in self._tiers.limiters.values():
            limiter.close()


class AsyncTieredRatelimit:
    """Rate limits per plan, for asyncio: the arguments and methods of :class:`TieredRatelimit`.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py asyncio client.
        tiers: tier names mapped to limiters, as for :class:`TieredRatelimit`.
        prefix: each tier's keys start with ``<prefix>:<tier>``.
        default_tier: the tier of calls that name none.
        ephemeral_cache: as for :class:`~redkit.Ratelimit`.
        timeout: as for :class:`~redkit.Ratelimit`.
        on_timeout: as for :class:`~redkit.Ratelimit`.
        clock: as for :class:`~redkit.Ratelimit`.
        trace: as for :class:`~redkit.Ratelimit`: each tier's decisions are recorded under its
            own prefix, ``<prefix>:<tier>``.
        stats: as for :class:`~redkit.Ratelimit`: each tier's counts are sent under its own
            prefix, ``<prefix>:<tier>``.

    """

    def __init__(
        self,
        redis: object,
        tiers: Mapping[str, Limiter],
        *,
        prefix: str = DEFAULT_PREFIX,
        default_tier: str | None = None,
        ephemeral_cache: bool | EphemeralCache = True,
        timeout: float | None = DEFAULT_TIMEOUT,
        on_timeout: TimeoutPolicy = "allow",
        clock: Clock | Literal["server", "client"] | None = None,
        trace: TraceRecorder | None = None,
        stats: Duration | None = None,
    ) -> None:
        stats_interval(stats)  # refused before any tier starts its reporter
        backend = as_backend(redis)  # one connection for every tier, even from a URL

        def make(
            limiter: Limiter, tier_prefix: str, cache: EphemeralCache | bool
        ) -> AsyncRatelimit:
            return AsyncRatelimit(
                backend, limiter, prefix=tier_prefix, ephemeral_cache=cache, timeout=timeout,
                on_timeout=on_timeout, clock=clock, trace=trace, stats=stats,
            )  # fmt: skip

        self._tiers = _Tiers(make, tiers, prefix, default_tier, ephemeral_cache)

    @property
    def tiers(self) -> dict[str, AsyncRatelimit]:
        """Each tier's own limiter, by name."""
        return dict(self._tiers.limiters)

    async def limit(
        self, identifier: str | int, rate: int = 1, *, tier: str | None = None
    ) -> RatelimitResult:
        """Decide one request of ``identifier`` under ``tier``'s limit."""
        return await self._tiers.get(tier).limit(identifier, rate)

    async def limit_many(
        self, identifiers: Iterable[str | int], rate: int = 1, *, tier: str | None = None
    ) -> list[RatelimitResult]:
        """Decide one request for each identifier, all under ``tier``, in one round trip."""
        return await self._tiers.get(tier).limit_many(identifiers, rate)

    async def block_until_ready(
        self, identifier: str | int, timeout: Duration, rate: int = 1, *, tier: str | None = None
    ) -> RatelimitResult:
        """Wait until ``identifier`` is admitted under ``tier`` or ``timeout`` passes."""
        return await self._tiers.get(tier).block_until_ready(identifier, timeout, rate)

    async def get_remaining(self, identifier: str | int, *, tier: str | None = None) -> Remaining:
        """What ``identifier`` has left under ``tier``; consumes nothing."""
        return await self._tiers.get(tier).get_remaining(identifier)

    async def reset(self, identifier: str | int, *, tier: str | None = None) -> int:
        """Delete ``identifier``'s state in ``tier``, or in every tier when none is named."""
        chosen = self._tiers.limiters.values() if tier is None else [self._tiers.get(tier)]
        return sum([await limiter.reset(identifier) for limiter in chosen])

    async def flush(self) -> None:
        """Send every tier's pending counts now (see :meth:`~redkit.AsyncRatelimit.flush`)."""
        for limiter in self._tiers.limiters.values():
            await limiter.flush()

    async def close(self) -> None:
        """Stop every tier's background sends and send what they counted."""
        for limiter in self._tiers.limiters.values():
            await limiter.close()
