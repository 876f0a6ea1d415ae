"""A pure-Python reference model of redkit's rate limiters, written from docs/ratelimit.md.

It answers ``limit``, ``get_remaining`` and ``reset`` for the fixed window, the sliding window,
the token bucket, GCRA and the sliding log (docs/gcra-and-sliding-log.md), with the ephemeral
cache on or off, at a given integer ``now`` (epoch ms). Its Redis state lives in plain dicts
keyed exactly like the Redis keys (``base:bucket`` for window counters, ``base`` for a bucket
hash, ``base:gcra`` and ``base:log``), so a test can also compare the keyspace itself.

It is deliberately not a transcription of the Lua: the sliding window's ``retry_after`` is
found by a search over future milliseconds and the token bucket's by stepping through future
refills, so a slip in either closed form shows up as a disagreement. Keys never expire here:
tests keep every real TTL far longer than a test run (see the state machine for the one case,
a token bucket one refill from full, where they cannot).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from redkit.ratelimit.result import RatelimitResult, Remaining

__all__ = ["Decision", "Kind", "Params", "RatelimitModel", "sliding_weighted"]

Kind = Literal["fixed", "sliding", "token", "gcra", "log"]


@dataclass(frozen=True)
class Params:
    """One limiter's configuration, in the doc's letters."""

    kind: Kind
    #: L (requests per window), M (the bucket's max_tokens) or B (GCRA's burst).
    limit: int
    #: W (the window), I (the refill interval) or P (GCRA's period), in ms.
    window_ms: int
    #: R, tokens per refill (token bucket) or requests per period (GCRA).
    refill: int = 0


@dataclass(frozen=True)
class Decision:
    """What an algorithm answers, before the ephemeral cache has its say."""

    success: bool
    remaining: int
    reset: int
    #: ms until a request of the same rate could pass; 0 when admitted, None when never.
    retry_ms: int | None
    #: The same wait in µs, for GCRA (which reports it to the µs); None elsewhere.
    retry_us: int | None = None


def sliding_weighted(elapsed: int, count: int, window_ms: int) -> int:
    """The previous window's share, ``floor((1 - e / W) * p)`` in IEEE doubles exactly so."""
    return math.floor((1 - elapsed / window_ms) * count)


@dataclass
class RatelimitModel:
    """The limiter of ``params`` and the Redis it would write, for one key prefix."""

    params: Params
    ephemeral: bool
    #: Window counters, as the Redis strings ``base:bucket`` (an integer each).
    strings: dict[str, int] = field(default_factory=dict)
    #: Token buckets, as the Redis hashes ``base`` with fields refilledAt and tokens.
    hashes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: GCRA's state ``base:gcra`` as ITU-T I.371's continuous-state leaky bucket: the bucket
    #: content X (µs of pending emission) and the last conformance time LCT (epoch µs). Redis
    #: holds the TAT, ``LCT + X``.
    meters: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Sliding logs ``base:log``: the admission times (ms) of every unit still stored.
    logs: dict[str, list[int]] = field(default_factory=dict)
    #: The TTL (ms) of the last PEXPIRE on each key, so a test can see a short-lived key.
    ttl_ms: dict[str, int] = field(default_factory=dict)
    #: Keys the last call wrote (set, incremented or deleted).
    written: set[str] = field(default_factory=set)
    #: The ephemeral cache: base -> (blocked until, in ms on the virtual clock; reset; the
    #: refused rate).
    blocks: dict[str, tuple[float, int, int]] = field(default_factory=dict)

    # -- the public operations -------------------------------------------------------------

    def limit(self, base: str, rate: int, now: int) -> RatelimitResult:
        """``limit(identifier, rate)`` at ``now`` for the identifier whose base key is ``base``."""
        self.written = set()
        limit = self.params.limit
        if self.ephemeral and rate > 0:
            block = self.blocks.get(base)
            # A block holds for requests costing at least what the refused one did.
            if block is not None and block[0] > now and rate >= block[2]:
                # Answered from memory; retry_after is what is left of the block.
                until, reset, _ = block
                return RatelimitResult(False, limit, 0, reset, (until - now) / 1000, "cacheBlock")
        decision = self._decide(base, rate, now)
        if decision.success:
            if rate < 0:
                self.blocks.pop(base, None)  # an admitted refund unblocks
            return RatelimitResult(True, limit, decision.remaining, decision.reset)
        if decision.retry_ms is None:
            # rate > limit can never pass: its retry_after (the time to reset) is no "finite"
            # wait in the doc's sense, so it blocks nothing in the ephemeral cache.
            retry = max(0, decision.reset - now) / 1000
            return RatelimitResult(False, limit, decision.remaining, decision.reset, retry)
        if decision.retry_us is not None:
            # GCRA: blocked for the wait to the µs, reported in seconds to the µs.
            if self.ephemeral:
                self.blocks[base] = (now + decision.retry_us / 1000, decision.reset, rate)
            return RatelimitResult(
                False, limit, decision.remaining, decision.reset, decision.retry_us / 1_000_000
            )
        if self.ephemeral:
            self.blocks[base] = (now + decision.retry_ms, decision.reset, rate)
        return RatelimitResult(
            False, limit, decision.remaining, decision.reset, decision.retry_ms / 1000
        )

    def get_remaining(self, base: str, now: int) -> Remaining:
        """``get_remaining(identifier)``: a peek, which never consults the ephemeral cache."""
        self.written = set()
        decision = self._decide(base, 0, now)
        return Remaining(decision.remaining, decision.reset, self.params.limit)

    def reset(self, base: str, now: int) -> int:
        """``reset(identifier)``: delete the bucket and the windows around now; unblock."""
        self.written = set()
        names = [base]
        if self.params.kind in ("gcra", "log"):
            names = [f"{base}:{self.params.kind}"]
        elif self.params.kind != "token":
            bucket = now // self.params.window_ms
            names += [f"{base}:{b}" for b in (bucket - 1, bucket, bucket + 1)]
        deleted = sum(self._delete(name) for name in names)
        self.blocks.pop(base, None)
        return deleted

    def forget(self, key: str) -> None:
        """Drop ``key`` as if it had expired (the test deletes it from Redis too)."""
        self._delete(key)

    def full_at(self, base: str) -> int | None:
        """When the stored bucket at ``base`` is full again (None: no stored bucket)."""
        stored = self.hashes.get(base)
        if stored is None:
            return None
        return stored["refilledAt"] + self._refills_needed(stored["tokens"], self.params.limit)

    # -- the algorithms --------------------------------------------------------------------

    def _decide(self, base: str, rate: int, now: int) -> Decision:
        if self.params.kind == "fixed":
            return self._fixed(base, rate, now)
        if self.params.kind == "sliding":
            return self._sliding(base, rate, now)
        if self.params.kind == "gcra":
            return self._gcra(f"{base}:gcra", rate, now)
        if self.params.kind == "log":
            return self._log(f"{base}:log", rate, now)
        return self._token(base, rate, now)

    def _fixed(self, base: str, rate: int, now: int) -> Decision:
        limit, window = self.params.limit, self.params.window_ms
        bucket = now // window
        key = f"{base}:{bucket}"
        reset = (bucket + 1) * window
        used = self.strings.get(key, 0)
        if rate > 0 and used + rate > limit:
            retry = reset - now if rate <= limit else None  # the next window starts empty
            return Decision(False, max(0, limit - used), reset, retry)
        delta = max(rate, -used)  # a refund never takes the counter below zero
        self._add(key, delta, ttl=window)
        return Decision(True, max(0, limit - (used + delta)), reset, 0)

    def _sliding(self, base: str, rate: int, now: int) -> Decision:
        limit, window = self.params.limit, self.params.window_ms
        bucket = now // window
        cur_key, prev_key = f"{base}:{bucket}", f"{base}:{bucket - 1}"
        reset = (bucket + 1) * window
        cur, prev = self.strings.get(cur_key, 0), self.strings.get(prev_key, 0)
        used = sliding_weighted(now - bucket * window, prev, window) + cur
        if rate > 0 and used + rate > limit:
            retry = self._sliding_retry(now, cur, prev, rate) if rate <= limit else None
            return Decision(False, max(0, limit - used), reset, retry)
        delta = max(rate, -cur)  # a refund gives back at most the current window's count
        self._add(cur_key, delta, ttl=2 * window + 1000)
        return Decision(True, max(0, limit - (used + delta)), reset, 0)

    def _sliding_retry(self, now: int, cur: int, prev: int, rate: int) -> int:
        """The first whole ms after ``now`` at which the request would fit, found by search.

        With nothing written meanwhile, the sliding count only falls as time goes on: the
        weighted share shrinks within a window, a window change replaces ``weighted + cur`` by
        at most ``cur``, and two windows on everything is gone. So the first fitting moment
        is found by bisection over ``(now, now + 2 windows]``.
        """
        limit, window = self.params.limit, self.params.window_ms
        bucket = now // window

        def used_at(t: int) -> int:
            b = t // window
            if b == bucket:
                return sliding_weighted(t - b * window, prev, window) + cur
            if b == bucket + 1:  # this window's count is then the previous one
                return sliding_weighted(t - b * window, cur, window)
            return 0

        low, high = now, (bucket + 2) * window  # used_at(low) does not fit, used_at(high) does
        assert used_at(low) + rate > limit >= used_at(high) + rate
        while high - low > 1:
            mid = (low + high) // 2
            if used_at(mid) + rate <= limit:
                high = mid
            else:
                low = mid
        return high - now

    def _token(self, base: str, rate: int, now: int) -> Decision:
        max_tokens, interval = self.params.limit, self.params.window_ms
        stored = self.hashes.get(base)
        if stored is None:
            refilled_at, tokens = now, max_tokens  # a new bucket is full
        else:
            refilled_at, tokens = stored["refilledAt"], stored["tokens"]
            if now >= refilled_at + interval:
                steps = (now - refilled_at) // interval
                tokens += steps * self.params.refill
                refilled_at += steps * interval
        if tokens >= max_tokens:
            refilled_at, tokens = now, max_tokens  # a full bucket is a new bucket
        reset = refilled_at + interval
        if rate > 0 and tokens < rate:
            if rate > max_tokens:
                return Decision(False, tokens, reset, None)
            return Decision(
                False, tokens, reset, refilled_at + self._refills_needed(tokens, rate) - now
            )
        if rate != 0:
            tokens = min(max_tokens, tokens - rate)
            if tokens >= max_tokens:
                self._delete(base)  # refunded to full: the same as no bucket at all
            else:
                self.hashes[base] = {"refilledAt": refilled_at, "tokens": tokens}
                self.written.add(base)
                # The key lives until the bucket would be full again.
                self.ttl_ms[base] = refilled_at + self._refills_needed(tokens, max_tokens) - now
        return Decision(True, tokens, reset, 0)

    def _refills_needed(self, tokens: int, target: int) -> int:
        """ms from the last refill until ``tokens`` has grown to ``target``, refill by refill."""
        steps = 0
        while tokens + steps * self.params.refill < target:
            steps += 1
        return steps * self.params.window_ms

    def _gcra(self, key: str, rate: int, now: int) -> Decision:
        """GCRA as a continuous-state leaky bucket (ITU-T I.371), not as a TAT.

        The bucket holds X µs of emission still to drain; it drains one µs per µs. A cell
        adds T; ``burst`` cells fit in an empty bucket, so a request of n cells conforms iff
        the drained content plus n*T is at most B*T. A wait is found by bisection over future
        µs, remaining by adding cells one by one.
        """
        burst = self.params.limit
        t = math.ceil(self.params.window_ms * 1000 / self.params.refill)  # emission interval
        now_us = now * 1000
        content, last = self.meters.get(key, (0, now_us))

        def drained(at: int) -> int:
            return max(0, content - (at - last))

        def conforms(at: int, cells: int) -> bool:
            return drained(at) + cells * t <= burst * t

        def remaining(level: int) -> int:
            cells = 0
            while level + (cells + 1) * t <= burst * t:
                cells += 1
            return cells

        level = drained(now_us)
        if rate > 0 and not conforms(now_us, rate):
            reset = -(-(now_us + level) // 1000)
            if rate > burst:
                return Decision(False, remaining(level), reset, None)
            low, high = now_us, now_us + level + 1  # low does not conform, high does
            assert conforms(high, rate)
            while high - low > 1:
                mid = (low + high) // 2
                if conforms(mid, rate):
                    high = mid
                else:
                    low = mid
            wait = high - now_us
            return Decision(False, remaining(level), reset, -(-wait // 1000), wait)
        if rate > 0:
            level += rate * t
        elif rate < 0:
            level = max(0, level - min(-rate, burst) * t)
        if level != drained(now_us):  # a write: the TAT moved
            if level == 0:
                self._delete(key)
            else:
                self.meters[key] = (level, now_us)
                self.ttl_ms[key] = -(-level // 1000)
                self.written.add(key)
        return Decision(True, remaining(level), -(-(now_us + level) // 1000), 0)

    def _log(self, key: str, rate: int, now: int) -> Decision:
        """The sliding log as a plain list of admission times; waits found by scanning ahead."""
        limit, window = self.params.limit, self.params.window_ms
        times = self.logs.get(key, [])

        def used_at(at: int) -> int:
            return sum(1 for stamp in times if stamp > at - window)

        def reset_of(stamps: list[int]) -> int:
            inside = [stamp for stamp in stamps if stamp > now - window]
            return min(inside) + window if inside else now + window

        used = used_at(now)
        if rate > 0 and used + rate > limit:
            if rate > limit:
                return Decision(False, max(0, limit - used), reset_of(times), None)
            # Try every moment an entry leaves the window, in order.
            for at in sorted(stamp + window for stamp in times):
                if at > now and used_at(at) + rate <= limit:
                    return Decision(False, max(0, limit - used), reset_of(times), at - now)
            raise AssertionError("a request within the limit fits once the log has drained")
        if rate != 0:
            kept = [stamp for stamp in times if stamp > now - window]  # a write trims first
            if rate > 0:
                kept += [now] * rate
            else:
                kept.sort()
                del kept[max(0, len(kept) + rate) :]  # the newest go back
            if kept != times:
                self.written.add(key)
            if kept:
                self.logs[key] = kept
                self.ttl_ms[key] = max(kept) + window - now
            else:
                self._delete(key)
            times = kept
        return Decision(True, max(0, limit - used_at(now)), reset_of(times), 0)

    # -- the keyspace ----------------------------------------------------------------------

    def _add(self, key: str, delta: int, *, ttl: int) -> None:
        """INCRBY when ``delta`` is not 0, with PEXPIRE ``ttl`` on the write that creates it."""
        if delta == 0:
            return
        if key not in self.strings:
            self.ttl_ms[key] = ttl
        self.strings[key] = self.strings.get(key, 0) + delta
        self.written.add(key)

    def _delete(self, key: str) -> bool:
        existed = any(key in store for store in (self.strings, self.hashes, self.meters, self.logs))
        for store in (self.strings, self.hashes, self.meters, self.logs):
            store.pop(key, None)
        self.ttl_ms.pop(key, None)
        if existed:
            self.written.add(key)
        return existed
