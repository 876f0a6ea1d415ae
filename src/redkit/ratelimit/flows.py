"""Every rate-limit behaviour, written once as a flow; the facades only pick a runner.

A decision is one script call: the script reads the clock (or takes the caller's), applies the
algorithm and writes, atomically, in one round trip. Around it, this module adds what needs no
Redis: the ephemeral cache of blocked identifiers, the cached fixed window's local counts, and
the timeout policy.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any, Literal

from redkit.core import keys
from redkit.core.clock import Clock
from redkit.core.durations import MAX_DURATION_MS, Duration, duration_ms
from redkit.core.errors import (
    NO_ANSWER,
    BackendError,
    BackendTimeout,
    InvalidArgumentError,
)
from redkit.core.flow import Flow
from redkit.core.ops import Pipeline, ScriptCall, Sleep, command
from redkit.core.replies import as_int, as_text
from redkit.core.scripts import load_script
from redkit.core.telemetry import Telemetry
from redkit.ratelimit import dynamic, scripts
from redkit.ratelimit.analytics import Analytics, Outcome, Usage
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.limiters import (
    GCRA,
    MAX_LOG_TOKENS,
    MAX_TOKENS,
    SERVER_TIME,
    CachedFixedWindow,
    Limiter,
    SlidingLog,
    check_count,
    ratelimit_script,
)
from redkit.ratelimit.local import WindowCounts
from redkit.ratelimit.multi import MultiLimit
from redkit.ratelimit.result import RatelimitResult, Remaining

__all__ = [
    "DEFAULT_PREFIX",
    "MAX_IDENTIFIER_BYTES",
    "RatelimitFlows",
    "TimeoutPolicy",
    "identifier_part",
    "outcome",
]

#: ``@upstash/ratelimit``'s default prefix, so both libraries share counters out of the box.
DEFAULT_PREFIX = "@upstash/ratelimit"
#: Longer identifiers are stored as a digest: a key stays small whatever a client sends.
MAX_IDENTIFIER_BYTES = 512

TimeoutPolicy = Literal["allow", "deny"]
#: Seconds a process on a cluster trusts the global dynamic limit it read.
GLOBAL_OVERRIDE_CHECK_S = 1.0
#: Seconds a process trusts its copy of the deny list, where the script cannot read it.
DENY_COPY_CHECK_S = 10.0
#: Denied values answered from memory: how many, and for how long (ms), as Upstash's SDK.
DENIED_CACHE_SIZE, DENIED_CACHE_MS = 1000, 60_000


#: The counter of each ``reason`` of a refusal or a local answer (docs/stats.md).
_OUTCOMES = {"timeout": "timeout", "denyList": "denied", "cacheBlock": "cache_block"}


def outcome(result: RatelimitResult) -> str:
    """The counter a decision adds to: allowed, blocked, denied, timeout or cache_block."""
    reason = result.reason
    if reason is None:
        return "allowed" if result.success else "blocked"
    return _OUTCOMES[reason]


def _monotonic_ms() -> float:
    return time.monotonic() * 1000.0


#: Last parts of the limiter's own keys after an identifier's (``<prefix>:<id>:gcra``, ...).
_RESERVED_LAST = re.compile(r"(?:^|:)(?:gcra|log|dynamic|concurrency|limit\d+)$")
#: First parts of the limiter's global keys (``<prefix>:denyList:all``, ``<prefix>:events:<h>``).
_RESERVED_FIRST = re.compile(r"^(?:dynamic|denyList|ipDenyListStatus|events)(?::|$)")


def identifier_part(identifier: str | int, cluster: bool) -> str:
    """The identifier as it appears in keys: verbatim (Upstash's layout) or as a hash tag.

    Verbatim, an identifier that could name one of the limiter's other keys (one ending in a
    reserved suffix such as ``:dynamic``, or starting with ``denyList``, ``events``, ...) is
    encoded instead (``#`` and its escaped form, which holds no separator).
    """
    if cluster:
        # Every key of one identifier must hash to one slot; escaping keeps braces inside the
        # identifier from ending the tag early.
        return keys.hash_tag(identifier)
    if type(identifier) is str and (
        _RESERVED_LAST.search(identifier) or _RESERVED_FIRST.match(identifier)
    ):
        return keys.encoded(identifier, max_bytes=MAX_IDENTIFIER_BYTES)
    if (
        type(identifier) is str
        and 0 < len(identifier) <= 128
        and identifier.isascii()
        and identifier[0] != "#"
    ):
        return identifier  # the common case, checked cheaply
    return keys.verbatim(identifier, max_bytes=MAX_IDENTIFIER_BYTES, what="an identifier")


def _deny_values(
    identifier: str | int, ip: str | None, user_agent: str | None, country: str | None
) -> tuple[str, ...]:
    """What a request offers to the deny list: its identifier and what else it carries."""
    values = [str(identifier)]
    for name, value in (("ip", ip), ("user_agent", user_agent), ("country", country)):
        if value is not None:
            if not isinstance(value, str):
                raise InvalidArgumentError(f"{name} must be a str, got {type(value).__name__}")
            values.append(value)
    return tuple(values)


def _deny_entries(values: tuple[object, ...]) -> tuple[str, ...]:
    if not values:
        raise InvalidArgumentError("give at least one value")
    for value in values:
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"deny list values are non-empty str, got {value!r:.80}")
    return values  # type: ignore[return-value]  # checked just above


def _override(reply: Any) -> int | None:
    """A stored limit override, or ``None``.

    Upstash's SDK may have written any number: it is floored; what is no number is ignored.
    """
    if reply is None:
        return None
    try:
        return max(1, int(float(as_text(reply))))
    except ValueError:
        return None


def check_hours(hours: object) -> int:
    """``hours`` of an analytics query, checked: an int from 1 to the retention's 90 days."""
    # Upstash's readers look back at most 256 hours; a query past the retention finds nothing.
    if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= 24 * 90:
        raise InvalidArgumentError(f"hours must be an int from 1 to {24 * 90}, got {hours!r}")
    return hours


def _check_rate(rate: object) -> int:
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise InvalidArgumentError(f"rate must be an int, got {type(rate).__name__}: {rate!r:.40}")
    if abs(rate) > MAX_TOKENS:
        raise InvalidArgumentError(
            f"rate must be between -{MAX_TOKENS:_} and {MAX_TOKENS:_}, got {rate:_}"
        )
    return rate


class RatelimitFlows:
    """The flows of one configured rate limiter; :class:`~redkit.Ratelimit` runs them."""

    def __init__(
        self,
        limiter: object,  # checked here: facades pass on whatever the user gave
        *,
        prefix: str,
        cluster: bool,
        clock: Clock,
        ephemeral_cache: EphemeralCache | None,
        on_timeout: TimeoutPolicy,
        dynamic_limits: bool = False,
        protection: bool = False,
        analytics: Analytics | None = None,
        scripts_declare_keys: bool = False,
    ) -> None:
        if not isinstance(limiter, Limiter):
            raise InvalidArgumentError(
                "limiter must be FixedWindow, SlidingWindow, TokenBucket, CachedFixedWindow, "
                "GCRA, SlidingLog, or a list of them, "
                f"got {type(limiter).__name__}"
            )
        if on_timeout not in ("allow", "deny"):
            raise InvalidArgumentError(f'on_timeout must be "allow" or "deny", got {on_timeout!r}')
        self.limiter: Limiter = limiter
        self.prefix = keys.check_prefix(prefix)
        self._prefix_sep = prefix + ":"
        self.cluster = cluster
        # Whether a script may touch the global keys (deny list, global override, analytics):
        # not on a cluster (other slots), nor where scripts must declare every key (Upstash).
        self._globals_in_script = not cluster and not scripts_declare_keys
        if scripts_declare_keys and clock.server and any(w for _, w in limiter.state("-")):
            raise InvalidArgumentError(
                "a window's counters are named after the current time, and here (Upstash) a "
                'script may only touch the keys it is given: use clock="client" (the default '
                "over REST) or a limiter without windows"
            )
        self.clock = clock
        # The ephemeral cache: identifiers Redis refused, answered from memory until due.
        self.blocks = ephemeral_cache
        self.on_timeout: TimeoutPolicy = on_timeout
        # Blocks are timed on a local clock: monotonic, unless the test's virtual clock rules.
        self.local_ms = _monotonic_ms if clock.server else clock.now_ms
        # A cached fixed window's counts, decided in this process and sent to Redis later.
        self.window_counts: WindowCounts | None = None
        if isinstance(limiter, CachedFixedWindow):
            self.window_counts = WindowCounts(limiter)
        if dynamic_limits and isinstance(limiter, (CachedFixedWindow, MultiLimit)):
            raise InvalidArgumentError(
                "dynamic limits apply to one limit decided in Redis: not to a cached fixed "
                "window, nor to several limits"
            )
        self.dynamic_limits = dynamic_limits
        # The global override as this process last read it (where scripts cannot; see dynamic).
        self._global: tuple[int | None, float] | None = None
        self.protection = protection
        # The deny list is checked, and analytics counted, in the deciding script where that
        # script can reach the global keys: one standalone server over RESP, one limit decided
        # in Redis. Elsewhere: a copy of the deny list read every few seconds, a local tally.
        scripted = self._globals_in_script and not isinstance(
            limiter, (CachedFixedWindow, MultiLimit)
        )
        self._deny_in_script = protection and scripted
        self._deny_copy: tuple[frozenset[str], float] | None = None
        # Values found denied, answered from memory for a while (a bounded cache).
        self._recently_denied = EphemeralCache(max_size=DENIED_CACHE_SIZE)
        self.analytics = analytics
        self._analytics_in_script = analytics is not None and scripted
        self._guarded = dynamic_limits or self._deny_in_script or self._analytics_in_script
        #: Where each decision's outcome is reported (docs/stats.md).
        self.telemetry = Telemetry("ratelimit", self.prefix)

    # -- keys and time ---------------------------------------------------------------------

    def base_key(self, identifier: str | int) -> str:
        """``prefix:identifier``, the key every other key of the identifier starts with."""
        return self._prefix_sep + identifier_part(identifier, self.cluster)

    def _now(self) -> int:
        return SERVER_TIME if self.clock.server else int(self.clock.now_ms())

    # -- results ---------------------------------------------------------------------------

    def timeout_result(self) -> RatelimitResult:
        """The answer when Redis did not answer: per the ``on_timeout`` policy."""
        return RatelimitResult(self.on_timeout == "allow", self.limiter.limit, 0, 0, 0.0, "timeout")

    def _settle(self, base: str, rate: int, reply: Any, local_now: float) -> RatelimitResult:
        """Turn a script's reply into a result, and keep the ephemeral cache in step."""
        allowed, limit, remaining, reset, retry_ms, now = reply[:6]
        if allowed:
            if rate < 0 and self.blocks is not None:
                self.blocks.pop(base)  # a refund may have unblocked the identifier
            return RatelimitResult(True, limit, remaining, reset)
        # Several limits: the 8th field is the (1-based) position of the one that refused.
        refused_by = reply[7] - 1 if len(reply) > 7 else None
        if retry_ms < 0:  # a cost above the limit: it can never pass
            never = max(0, reset - now) / 1000
            return RatelimitResult(False, limit, remaining, reset, never, refused_by=refused_by)
        retry_after = retry_ms / 1000
        if len(reply) > 6 and reply[6] >= 0:  # the wait in µs too (GCRA): finer than retry_ms
            retry_ms, retry_after = reply[6] / 1000, reply[6] / 1_000_000
        if self.blocks is not None:
            # A retry passes at the script's own now plus retry_ms, and the script's now is the
            # clock's reading floored to whole ms: timed from the reading itself, a block would
            # outlast the refusal by its fraction. A server clock's "now" is Redis's, not on the
            # local clock: there the block runs from the (earlier) local reading.
            start = local_now if self.clock.server else now
            self.blocks.block(base, start + retry_ms, reset, rate)
        return RatelimitResult(False, limit, remaining, reset, retry_after, refused_by=refused_by)

    def _answer_locally(self, base: str, rate: int, local_now: float) -> RatelimitResult | None:
        """An answer that needs no Redis: a blocked identifier, or the cached window's count."""
        if rate > 0 and self.blocks is not None:
            block = self.blocks.blocked(base, local_now, rate)
            if block is not None:
                retry = (block.until - local_now) / 1000
                return RatelimitResult(
                    False, self.limiter.limit, 0, block.reset, retry, "cacheBlock"
                )
        if self.window_counts is None:
            return None
        counted = self.window_counts.count(base, rate, local_now)
        if counted is not None and counted.success and rate < 0 and self.blocks is not None:
            self.blocks.pop(base)  # a refund may have unblocked the identifier
        return counted

    def _answer(self, base: str, rate: int, reply: Any, local_now: float) -> RatelimitResult:
        """Redis's answer as a result; the cached window starts counting from it."""
        result = self._settle(base, rate, reply, local_now)
        if self.window_counts is not None:
            self.window_counts.seed(base, result, rate, reply[5], local_now)
        return result

    # -- dynamic limits --------------------------------------------------------------------

    def _guard(
        self, call: ScriptCall, base: str, values: tuple[str, ...] = (), identifier: str = ""
    ) -> Flow[ScriptCall]:
        """``call`` behind the deny list and dynamic limits (see :mod:`.dynamic`).

        Given the ``identifier``, the script also counts the decision in the analytics.
        """
        deny_values = values if self._deny_in_script else ()
        counted = None
        if identifier and self._analytics_in_script and self.analytics is not None:
            identifier_json = json.dumps(identifier, ensure_ascii=False)  # as JSON.stringify
            counted = (self.analytics.retention_ms, f"{self.prefix}:events:", identifier_json)
        if not self.dynamic_limits and not deny_values and counted is None:
            return call
        global_override = None
        if self.dynamic_limits and not self._globals_in_script:
            known = self._global
            if known is None or time.monotonic() - known[1] >= GLOBAL_OVERRIDE_CHECK_S:
                reply = yield command("GET", dynamic.global_key(self.prefix))
                known = self._global = (_override(reply), time.monotonic())
            global_override = known[0]
        return dynamic.guarded_call(
            call, prefix=self.prefix, base=base, deny_values=deny_values,
            dynamic=self.dynamic_limits, global_in_script=self._globals_in_script,
            global_override=global_override, analytics=counted,
        )  # fmt: skip

    def denied_result(self, value: str) -> RatelimitResult:
        """The answer to a request carrying a denied value: refused, nothing consumed."""
        return RatelimitResult(False, self.limiter.limit, 0, 0, 0.0, "denyList", denied_value=value)

    def _denied_locally(self, values: tuple[str, ...], local_now: float) -> Flow[str | None]:
        """A value of ``values`` known to be denied without asking the deciding script."""
        for value in values:
            if self._recently_denied.blocked(value, local_now) is not None:
                return value
        if self._deny_in_script:
            return None
        copy = self._deny_copy
        if copy is None or time.monotonic() - copy[1] >= DENY_COPY_CHECK_S:
            members = yield command("SMEMBERS", dynamic.deny_key(self.prefix))
            copy = self._deny_copy = (frozenset(as_text(m) for m in members), time.monotonic())
        return next((value for value in values if value in copy[0]), None)

    def _remember_denied(self, value: str, local_now: float) -> RatelimitResult:
        self._recently_denied.block(value, local_now + DENIED_CACHE_MS, 0)
        return self.denied_result(value)

    def _tally(self, identifier: str | int, result: RatelimitResult) -> RatelimitResult:
        """Count an answer that no script counted (see :mod:`.analytics`)."""
        if self.analytics is not None and result.reason != "timeout":
            outcome: Outcome = "denied" if result.reason == "denyList" else result.success
            # As Upstash's SDK: a denied request counts under the value that was denied.
            who = result.denied_value if result.denied_value is not None else str(identifier)
            self.analytics.count(who, outcome, self.wall_ms())
        return result

    def wall_ms(self) -> float:
        """Epoch ms as the analytics' hours count them: the limiter's clock, or this one's."""
        return time.time() * 1000 if self.clock.server else self.clock.now_ms()

    def deny(self, *values: str) -> Flow[int]:
        """Put values (identifiers, IPs, user agents, countries) on the deny list."""
        checked = _deny_entries(values)
        added = yield command("SADD", dynamic.deny_key(self.prefix), *checked)
        self._deny_copy = None
        return as_int(added)

    def allow(self, *values: str) -> Flow[int]:
        """Take values off the deny list; return how many were on it."""
        checked = _deny_entries(values)
        removed = yield command("SREM", dynamic.deny_key(self.prefix), *checked)
        for value in checked:
            self._recently_denied.pop(value)
        self._deny_copy = None
        return as_int(removed)

    def denied(self) -> Flow[set[str]]:
        """Every value on the deny list."""
        members = yield command("SMEMBERS", dynamic.deny_key(self.prefix))
        return {as_text(member) for member in members}

    def _check_dynamic(self, limit: int | None) -> int | None:
        if not self.dynamic_limits:
            raise InvalidArgumentError(
                "dynamic limits are off: create the limiter with dynamic_limits=True"
            )
        if limit is None:
            return None
        checked = check_count(limit, "a dynamic limit")
        if isinstance(self.limiter, SlidingLog) and checked > MAX_LOG_TOKENS:
            raise InvalidArgumentError(f"a sliding log's limit is at most {MAX_LOG_TOKENS:_}")
        if isinstance(self.limiter, GCRA) and checked * self.limiter.emission_us > (
            MAX_DURATION_MS * 1000
        ):
            raise InvalidArgumentError("a GCRA burst may span at most 10 years of emissions")
        return checked

    def set_dynamic_limit(self, limit: int | None) -> Flow[None]:
        """Override the limit for every identifier (``None`` removes the override)."""
        checked = self._check_dynamic(limit)
        key = dynamic.global_key(self.prefix)
        yield command("DEL", key) if checked is None else command("SET", key, checked)
        self._global = (checked, time.monotonic())
        if self.blocks is not None:
            self.blocks.clear()  # blocks decided under the old limit no longer hold

    def get_dynamic_limit(self) -> Flow[int | None]:
        """The override for every identifier, or ``None``."""
        self._check_dynamic(None)
        reply = yield command("GET", dynamic.global_key(self.prefix))
        return _override(reply)

    def set_identifier_limit(self, identifier: str | int, limit: int | None) -> Flow[None]:
        """Override the limit of one identifier (``None`` removes it); it beats the global one."""
        checked = self._check_dynamic(limit)
        base = self.base_key(identifier)
        key = dynamic.identifier_key(base)
        if self.blocks is not None:
            self.blocks.pop(base)  # a block decided under the old limit no longer holds
        yield command("DEL", key) if checked is None else command("SET", key, checked)

    def get_identifier_limit(self, identifier: str | int) -> Flow[int | None]:
        """One identifier's own override, or ``None``."""
        self._check_dynamic(None)
        reply = yield command("GET", dynamic.identifier_key(self.base_key(identifier)))
        return _override(reply)

    # -- flows -----------------------------------------------------------------------------

    def limit(
        self,
        identifier: str | int,
        rate: int = 1,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
        country: str | None = None,
    ) -> Flow[RatelimitResult]:
        """Decide one request of cost ``rate`` (negative refunds, zero peeks).

        With protection on, ``identifier``, ``ip``, ``user_agent`` and ``country`` are checked
        against the deny list first. The outcome is reported to :attr:`telemetry`.
        """
        telemetry = self.telemetry
        if not telemetry.times("decision"):  # nobody times it: no clock read, one count
            result = yield from self._decide(identifier, rate, ip, user_agent, country)
        else:
            started = time.perf_counter()
            result = yield from self._decide(identifier, rate, ip, user_agent, country)
            telemetry.timing("decision", time.perf_counter() - started)
        telemetry.count(outcome(result))
        return result

    def _decide(
        self,
        identifier: str | int,
        rate: int,
        ip: str | None,
        user_agent: str | None,
        country: str | None,
    ) -> Flow[RatelimitResult]:
        """:meth:`limit`'s decision, not yet reported."""
        base = self.base_key(identifier)
        if type(rate) is not int or not -MAX_TOKENS <= rate <= MAX_TOKENS:
            rate = _check_rate(rate)  # raises, saying what is wrong
        local_now = self.local_ms()
        values = _deny_values(identifier, ip, user_agent, country) if self.protection else ()
        try:
            if values:
                denied = yield from self._denied_locally(values, local_now)
                if denied is not None:
                    return self._tally(identifier, self._remember_denied(denied, local_now))
        except NO_ANSWER:
            return self.timeout_result()
        local_answer = self._answer_locally(base, rate, local_now)
        if local_answer is not None:
            return self._tally(identifier, local_answer)
        try:
            try:
                call = self.limiter.call(base, self._now(), rate)
                if self._guarded:
                    call = yield from self._guard(call, base, values, str(identifier))
                reply = yield call
            except NO_ANSWER:
                return self.timeout_result()
            if reply[0] == dynamic.DENIED:
                return self._remember_denied(values[reply[1] - 1], local_now)
            result = self._answer(base, rate, reply, local_now)
            if self.analytics is None or self._analytics_in_script:
                return result
            return self._tally(identifier, result)
        finally:
            if self.window_counts is not None:
                self.window_counts.answered(base, rate)  # after the seed: never uncounted meanwhile

    def limit_many(
        self, identifiers: Iterable[str | int], rate: int = 1
    ) -> Flow[list[RatelimitResult]]:
        """Decide one request for each identifier, in one pipelined round trip.

        Each decision is reported to :attr:`telemetry`; the round trip is timed once.
        """
        telemetry = self.telemetry
        started = time.perf_counter()
        results = yield from self._decide_many(identifiers, rate)
        if telemetry.times("decision"):
            telemetry.timing("decision", time.perf_counter() - started)
        for result in results:
            telemetry.count(outcome(result))
        return results

    def _decide_many(
        self, identifiers: Iterable[str | int], rate: int
    ) -> Flow[list[RatelimitResult]]:
        """:meth:`limit_many`'s decisions, not yet reported."""
        rate = _check_rate(rate)
        wanted = list(identifiers)
        bases = [self.base_key(identifier) for identifier in wanted]
        local_now = self.local_ms()
        now = self._now()
        no_values: tuple[str, ...] = ()
        deny_values = [
            _deny_values(identifier, None, None, None) if self.protection else no_values
            for identifier in wanted
        ]
        results: list[RatelimitResult | None] = []
        try:
            for values in deny_values:
                denied = (yield from self._denied_locally(values, local_now)) if values else None
                results.append(None if denied is None else self._remember_denied(denied, local_now))
        except NO_ANSWER:
            return [self.timeout_result() for _ in bases]
        for index, base in enumerate(bases):
            answered = results[index]
            if answered is None:
                answered = results[index] = self._answer_locally(base, rate, local_now)
            if answered is not None:
                self._tally(wanted[index], answered)
        asked = [(index, base) for index, base in enumerate(bases) if results[index] is None]
        if not asked:
            return [result for result in results if result is not None]
        try:
            try:
                calls = [self.limiter.call(base, now, rate) for _, base in asked]
                if self._guarded:
                    for i, (index, base) in enumerate(asked):
                        calls[i] = yield from self._guard(
                            calls[i], base, deny_values[index], str(wanted[index])
                        )
                replies = yield Pipeline(tuple(calls))
            except NO_ANSWER:
                replies = [BackendTimeout("no answer")] * len(asked)
            for (index, base), reply in zip(asked, replies, strict=True):
                if isinstance(reply, NO_ANSWER):
                    results[index] = self.timeout_result()
                elif isinstance(reply, BackendError):
                    raise reply
                elif reply[0] == dynamic.DENIED:
                    value = deny_values[index][reply[1] - 1]
                    results[index] = self._remember_denied(value, local_now)
                else:
                    result = self._answer(base, rate, reply, local_now)
                    if not self._analytics_in_script:
                        self._tally(wanted[index], result)
                    results[index] = result
        finally:
            for _, base in asked:
                if self.window_counts is not None:
                    self.window_counts.answered(base, rate)
        return [result for result in results if result is not None]

    def get_remaining(self, identifier: str | int) -> Flow[Remaining]:
        """What ``identifier`` has left now (refills applied), consuming nothing."""
        base = self.base_key(identifier)
        call = self.limiter.call(base, self._now(), 0)
        if self.dynamic_limits:
            call = yield from self._guard(call, base)
        reply = yield call
        limit, remaining, reset = reply[1:4]
        return Remaining(remaining, reset, limit)

    def reset(self, identifier: str | int) -> Flow[int]:
        """Delete exactly ``identifier``'s keys; return how many existed."""
        base = self.base_key(identifier)
        now = self._now()
        parts = self.limiter.state(base)
        if now != SERVER_TIME:  # name every key, so the script touches only declared keys
            named: list[tuple[str, int]] = []
            for key, window in parts:
                named.append((key, 0))
                if window:
                    bucket = now // window
                    named.extend((f"{key}:{b}", 0) for b in (bucket - 1, bucket, bucket + 1))
            parts = named
        if self.window_counts is not None:
            self.window_counts.forget(base)  # before the delete: nothing pending recreates a key
        names = tuple(key for key, _ in parts)
        windows = tuple(window for _, window in parts)
        deleted = yield ScriptCall(
            ratelimit_script("reset"), names, scripts.reset_args(now=now, windows=windows)
        )
        if self.blocks is not None:
            self.blocks.pop(base)
        return as_int(deleted)

    def block_until_ready(
        self, identifier: str | int, timeout: Duration, rate: int = 1
    ) -> Flow[RatelimitResult]:
        """Retry until admitted or until ``timeout`` has passed; return the last answer.

        It sleeps exactly until the limiter says a retry can pass, and gives up at once when
        that moment lies beyond the deadline instead of sleeping in vain.
        """
        budget = duration_ms(timeout, name="timeout") / 1000
        deadline = time.monotonic() + budget
        while True:
            result = yield from self._decide(identifier, rate, None, None, None)
            left = deadline - time.monotonic()
            if (
                result.success or result.reason == "timeout" or rate > result.limit
            ) or result.retry_after > left:
                # Admitted, Redis out of reach, a cost that never passes, or no time left: one
                # decision reported, however many attempts it took.
                self.telemetry.count(outcome(result))
                return result
            # A floor: never spin, even if a retry is reported as due right now.
            yield Sleep(max(result.retry_after, 0.001))

    def _analytics_on(self) -> Analytics:
        if self.analytics is None:
            raise InvalidArgumentError("analytics are off: create the limiter with analytics=True")
        return self.analytics

    def usage(self, hours: int) -> Flow[Usage]:
        """Allowed, blocked and denied counts per identifier over the last ``hours``."""
        return (yield from self._analytics_on().usage(self.wall_ms(), check_hours(hours)))

    def usage_over_time(self, hours: int) -> Flow[list[dict[str, int]]]:
        """The counts of each of the last ``hours``, oldest first."""
        return (yield from self._analytics_on().usage_over_time(self.wall_ms(), check_hours(hours)))

    def top(self, count: int, hours: int) -> Flow[dict[str, list[tuple[str, int]]]]:
        """The most allowed and the most blocked identifiers over the last ``hours``."""
        analytics = self._analytics_on()
        checked = check_hours(hours), check_count(count, "count")
        return (yield from analytics.top(self.wall_ms(), *checked))

    def has_pending(self) -> bool:
        """Whether counts made in this process wait to be sent (see :meth:`sync_local`)."""
        return (self.window_counts is not None and self.window_counts.has_pending()) or (
            self.analytics is not None and self.analytics.has_pending()
        )

    def sync_local(self) -> Flow[None]:
        """Send what this process counted: the cached window's admissions and the analytics."""
        if self.analytics is not None:
            yield from self.analytics.flush(self.wall_ms())
        if self.window_counts is None:
            return
        pending = self.window_counts.take_pending()
        if not pending:
            return
        add = load_script(__package__, "add")  # no clock: it adds what was already decided
        window = self.limiter.counter_window_ms
        calls = tuple(
            ScriptCall(add, (key,), scripts.add_args(delta=delta, window=window))
            for key, delta in pending
        )
        try:
            totals = yield Pipeline(calls)
        except BackendError:
            self.window_counts.restore_pending(pending)
            raise
        for (key, _), total in zip(pending, totals, strict=True):
            if not isinstance(total, BackendError):
                self.window_counts.fold(key, as_int(total))
