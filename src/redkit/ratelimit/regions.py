"""Multi-region decisions as data: the script calls, reading a region's answer, the catch-up.

No I/O here: :mod:`redkit.ratelimit.multiregion` sends the calls to every region, takes the
first answer and, once every region has answered, sends :meth:`RegionsCore.merges`.

The layout is ``@upstash/ratelimit``'s ``MultiRegionRatelimit``: one hash per window,
``<prefix>:<identifier>:<window number>``, holding ``request id -> cost`` for each request, so
a JavaScript service and a Python one share the limits. Regions converge by set union: each
region that is not full gets the request ids it lacks (a grow-only set, as in the JS SDK).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redkit.core import keys
from redkit.core.clock import Clock
from redkit.core.errors import InvalidArgumentError
from redkit.core.flow import Flow
from redkit.core.ops import ScriptCall, command
from redkit.core.replies import as_int, as_text
from redkit.core.scripts import load_script
from redkit.ratelimit.analytics import Analytics, Usage
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.flows import TimeoutPolicy, check_hours, identifier_part
from redkit.ratelimit.limiters import (
    MAX_TOKENS,
    CachedFixedWindow,
    FixedWindow,
    SlidingWindow,
    check_count,
)
from redkit.ratelimit.result import RatelimitResult, Remaining
from redkit.ratelimit.scripts import multiregion_args, multiregion_merge_args

__all__ = ["RegionAnswer", "RegionsCore", "Request"]

_DECIDE = load_script("redkit.ratelimit", "multiregion")
_MERGE = load_script("redkit.ratelimit", "multiregion_merge")
#: What a sliding window's hash outlives its window by, as in the JS SDK (ms).
_SLIDING_OVERLAP_MS = 1000


@dataclass(frozen=True)
class Request:
    """One decision under way: what every region is asked, and what the answer needs."""

    #: The identifier's base key in each region (a cluster region uses a hash tag).
    bases: tuple[str, ...]
    #: The window number (epoch ms // window), as in the keys.
    bucket: int
    rate: int
    #: 16 random characters, the request's field in every region's hash.
    request_id: str
    #: The previous window's weight (0 for a fixed window).
    weight: float
    #: The client clock (epoch ms) the decision was taken at.
    now: int

    def current_key(self, region: int) -> str:
        """The current window's hash in ``region``."""
        return f"{self.bases[region]}:{self.bucket}"


@dataclass(frozen=True)
class RegionAnswer:
    """What one region answered: its request ids of the current window, and its decision."""

    #: request id -> cost, the current window (this request's own included when written).
    current: dict[str, int]
    #: The previous window's total (0 for a fixed window).
    previous_total: int
    admitted: bool


def _fields(reply: Any) -> dict[str, int]:
    items = list(reply)
    return {as_text(items[i]): as_int(items[i + 1]) for i in range(0, len(items) - 1, 2)}


class RegionsCore:
    """One configured multi-region limiter, without I/O (the facades send what it builds)."""

    def __init__(
        self,
        limiter: object,
        *,
        clusters: Sequence[bool],
        prefix: str,
        clock: Clock,
        ephemeral_cache: EphemeralCache | None,
        on_timeout: TimeoutPolicy,
        analytics: bool = False,
    ) -> None:
        # CachedFixedWindow counts locally: the regions would never see its requests.
        if type(limiter) not in (FixedWindow, SlidingWindow) or isinstance(
            limiter, CachedFixedWindow
        ):
            raise InvalidArgumentError(
                "multi-region rate limiting takes FixedWindow or SlidingWindow (as the JS SDK's "
                f"MultiRegionRatelimit), got {type(limiter).__name__}: use Ratelimit for it"
            )
        if on_timeout not in ("allow", "deny"):
            raise InvalidArgumentError(f'on_timeout must be "allow" or "deny", got {on_timeout!r}')
        if clock.server:
            raise InvalidArgumentError(
                "multi-region keys are named after the time and every region must name the same "
                "ones: use the client clock (the default), not the server's"
            )
        assert isinstance(limiter, (FixedWindow, SlidingWindow))
        self.limiter: FixedWindow | SlidingWindow = limiter
        self.sliding = isinstance(limiter, SlidingWindow)
        self.clusters = tuple(clusters)
        self.prefix = keys.check_prefix(prefix)
        self.clock = clock
        self.blocks = ephemeral_cache
        self.on_timeout: TimeoutPolicy = on_timeout
        #: Counted here, sent to the first region (as the JS SDK's ``redis[0]``).
        self.analytics = Analytics(self.prefix) if analytics else None
        window = limiter.window_ms
        self.window = window
        #: A window hash's TTL from its first write (ms).
        self.ttl = 2 * window + _SLIDING_OVERLAP_MS if self.sliding else window

    # -- requests ----------------------------------------------------------------------------

    def request(self, identifier: str | int, rate: int) -> Request:
        """A new request of cost ``rate`` for ``identifier``, timed now."""
        if isinstance(rate, bool) or not isinstance(rate, int) or abs(rate) > MAX_TOKENS:
            raise InvalidArgumentError(
                f"rate must be an int between -{MAX_TOKENS:_} and {MAX_TOKENS:_}, got {rate!r:.40}"
            )
        now = int(self.clock.now_ms())
        bucket = now // self.window
        weight = 1 - (now % self.window) / self.window if self.sliding else 0.0
        bases = tuple(
            f"{self.prefix}:{identifier_part(identifier, cluster)}" for cluster in self.clusters
        )
        # 64 random bits in 16 characters, the length of the JS SDK's ids.
        return Request(bases, bucket, rate, secrets.token_hex(8), weight, now)

    def call(self, request: Request, region: int) -> ScriptCall:
        """The decision's script call in ``region``."""
        names: tuple[str, ...] = (request.current_key(region),)
        if self.sliding:
            names = (*names, f"{request.bases[region]}:{request.bucket - 1}")
        args = multiregion_args(
            request_id=request.request_id,
            rate=request.rate,
            limit=self.limiter.limit,
            ttl=self.ttl,
            weight=repr(request.weight),
        )
        return ScriptCall(_DECIDE, names, args)

    @staticmethod
    def answer(reply: Any) -> RegionAnswer:
        """A region's reply to :meth:`call`, read."""
        current, previous_total, admitted = reply
        return RegionAnswer(_fields(current), as_int(previous_total), admitted == 1)

    # -- results -----------------------------------------------------------------------------

    def _reset(self, request: Request) -> int:
        return (request.bucket + 1) * self.window

    def settle(self, request: Request, answer: RegionAnswer, local_now: float) -> RatelimitResult:
        """The first region's answer as the decision; a refusal blocks in the ephemeral cache."""
        limit = self.limiter.limit
        used = math.ceil(answer.previous_total * request.weight) + sum(answer.current.values())
        remaining = max(0, limit - used)
        reset = self._reset(request)
        if answer.admitted:
            if request.rate < 0 and self.blocks is not None:
                self.blocks.pop(request.bases[0])  # a refund may have unblocked it
            return RatelimitResult(True, limit, remaining, reset)
        wait_ms = max(0, reset - request.now)
        if self.blocks is not None:
            self.blocks.block(request.bases[0], local_now + wait_ms, reset, request.rate)
        return RatelimitResult(False, limit, remaining, reset, wait_ms / 1000)

    def remaining(self, request: Request, answer: RegionAnswer) -> Remaining:
        """A peek's (rate 0) answer as what is left."""
        result = self.settle(request, answer, 0.0)
        return Remaining(result.remaining, result.reset, result.limit)

    def cached(self, request: Request, local_now: float) -> RatelimitResult | None:
        """The ephemeral cache's refusal of ``request``, if the identifier is blocked."""
        if request.rate <= 0 or self.blocks is None:
            return None
        block = self.blocks.blocked(request.bases[0], local_now, request.rate)
        if block is None:
            return None
        retry = (block.until - local_now) / 1000
        return RatelimitResult(False, self.limiter.limit, 0, block.reset, retry, "cacheBlock")

    # -- analytics ---------------------------------------------------------------------------

    def tally(self, identifier: str | int, result: RatelimitResult) -> bool:
        """Count a decision in the analytics (a timeout's answer is no decision); if counted."""
        if self.analytics is None or result.reason == "timeout":
            return False
        self.analytics.count(str(identifier), result.success, self.clock.now_ms())
        return True

    def analytics_flush(self) -> Flow[None] | None:
        """The flow sending the counted events to the first region, if any wait."""
        if self.analytics is None or not self.analytics.has_pending():
            return None
        return self.analytics.flush(self.clock.now_ms())

    def _analytics_on(self) -> Analytics:
        if self.analytics is None:
            raise InvalidArgumentError("analytics are off: create the limiter with analytics=True")
        return self.analytics

    def usage(self, hours: int) -> Flow[Usage]:
        """Allowed and blocked counts per identifier over the last ``hours`` (first region)."""
        return self._analytics_on().usage(self.clock.now_ms(), check_hours(hours))

    def usage_over_time(self, hours: int) -> Flow[list[dict[str, int]]]:
        """The counts of each of the last ``hours``, oldest first (first region)."""
        return self._analytics_on().usage_over_time(self.clock.now_ms(), check_hours(hours))

    def top(self, count: int, hours: int) -> Flow[dict[str, list[tuple[str, int]]]]:
        """The most allowed and the most blocked identifiers over the last ``hours``."""
        analytics = self._analytics_on()
        return analytics.top(self.clock.now_ms(), check_hours(hours), check_count(count, "count"))

    def timeout_result(self) -> RatelimitResult:
        """The answer when no region answered in time: per the ``on_timeout`` policy."""
        return RatelimitResult(self.on_timeout == "allow", self.limiter.limit, 0, 0, 0.0, "timeout")

    # -- convergence -------------------------------------------------------------------------

    def merges(
        self, request: Request, answers: Sequence[RegionAnswer | None]
    ) -> list[tuple[int, ScriptCall]]:
        """The catch-up calls once every region has answered (``None``: it did not).

        Every region that answered and is not full gets the request ids of the current window
        it lacks, with their costs: the JS SDK's sync. A region that did not answer is left
        alone; the next decision that reaches it in this window brings it up to date.
        """
        union: dict[str, int] = {}
        for answer in answers:
            if answer is not None:
                union.update(answer.current)
        calls: list[tuple[int, ScriptCall]] = []
        for region, answer in enumerate(answers):
            if answer is None or sum(answer.current.values()) >= self.limiter.limit:
                continue  # a full region refuses everything already (the SDK skips it too)
            missing = [(rid, cost) for rid, cost in union.items() if rid not in answer.current]
            if missing:
                fields: list[str | int] = []
                for rid, cost in missing:
                    fields += [rid, cost]
                args = multiregion_merge_args(ttl=self.ttl, fields=fields)
                calls.append((region, ScriptCall(_MERGE, (request.current_key(region),), args)))
        return calls

    def reset_command(self, identifier: str | int, region: int) -> Any:
        """The ``DEL`` of ``identifier``'s windows around now in ``region``."""
        now = int(self.clock.now_ms())
        bucket = now // self.window
        base = f"{self.prefix}:{identifier_part(identifier, self.clusters[region])}"
        return command("DEL", *(f"{base}:{b}" for b in (bucket - 1, bucket, bucket + 1)))

    def unblock(self, identifier: str | int) -> None:
        """Forget the ephemeral cache's block on ``identifier``."""
        if self.blocks is not None:
            self.blocks.pop(f"{self.prefix}:{identifier_part(identifier, self.clusters[0])}")
