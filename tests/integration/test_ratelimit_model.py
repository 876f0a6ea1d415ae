"""The rate limiters against the reference model (tests/support/ratelimit_model.py), step by step.

A hypothesis state machine drives a real limiter on a real Redis (each backend: standalone and
cluster, sync and async) and the model with the same operations on one virtual clock, and
compares every answer in full, and after each step the limiter's keys and their values.

Redis expires keys on real time while the scripts run on the virtual clock. Windows and
intervals are at least a minute, so no window counter expires during a test. A token bucket's
key, though, lives until the bucket would be full again, which on the virtual clock can be
1 ms away; such a bucket is logically new once that moment comes, so the machine moves the
clock there at once and deletes the key, in Redis and in the model, as expiry would.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from redkit import AsyncRatelimit, FixedWindow, Ratelimit, SlidingWindow, TokenBucket
from redkit.core import keys
from redkit.core.clock import VirtualClock
from redkit.core.ops import command
from redkit.ratelimit.limiters import GCRA, Limiter, SlidingLog
from support.backends import BackendCase
from support.ratelimit_model import Kind, Params, RatelimitModel

#: Identifiers with a key separator, braces (a hash tag on a cluster) and non-ASCII text.
IDENTIFIERS = ("user:1", "{a}:b}", "ünï🔑")
#: Window and interval lengths as a user writes them, with their ms; all at least a minute.
WINDOWS: dict[str | int, int] = {"1 m": 60_000, 90: 90_000, "7 m": 420_000, "1 h": 3_600_000}
#: A bucket key whose TTL is shorter than this (ms) could expire in real time during a test.
SHORT_TTL_MS = 10_000
#: An example must finish well within SHORT_TTL_MS of real time for the above to hold.
MAX_EXAMPLE_SECONDS = SHORT_TTL_MS / 1000 / 2

#: Algorithms whose keys may be written with a TTL far shorter than a window.
SHORT_LIVED = ("token", "gcra", "log")

#: How the clock moves: by a little, far, by whole windows, or to an edge (+-1 ms).
ADVANCES = ("a little", "far", "whole windows", "window edge", "last reset", "retry")

#: Examples per test; raise it for a soak run (REDKIT_MODEL_EXAMPLES=1000).
EXAMPLES = int(os.environ.get("REDKIT_MODEL_EXAMPLES", "40"))
#: Examples on the auto-pipelining driver: the same machine, a quarter of the examples (CI time).
AUTOPIPELINED_EXAMPLES = max(4, EXAMPLES // 4)


_prefixes = itertools.count()


@st.composite
def configs(draw: st.DrawFn, kind: Kind) -> tuple[Params, Limiter, int]:
    """A limiter of ``kind``, its model parameters and a start time near a window edge."""
    window = draw(st.sampled_from(list(WINDOWS)))
    window_ms = WINDOWS[window]
    limiter: Limiter
    if kind == "token":
        refill = draw(st.integers(1, 3))
        max_tokens = draw(st.integers(1, 10))
        params = Params(kind, max_tokens, window_ms, refill)
        limiter = TokenBucket(refill, window, max_tokens)
    elif kind == "gcra":
        # Rates that divide the period in µs and rates that do not (T rounded up).
        rate = draw(st.sampled_from([1, 2, 3, 4, 7]))
        burst = draw(st.integers(1, 10))
        params = Params(kind, burst, window_ms, rate)
        limiter = GCRA(rate, window, burst)
    elif kind == "log":
        limit = draw(st.integers(1, 10))
        params = Params(kind, limit, window_ms)
        limiter = SlidingLog(limit, window)
    else:
        limit = draw(st.integers(1, 10))
        params = Params(kind, limit, window_ms)
        limiter = (FixedWindow if kind == "fixed" else SlidingWindow)(limit, window)
    bucket = 1_700_000_000_000 // window_ms + draw(st.integers(0, 1_000))
    offset = draw(st.sampled_from([0, 1, window_ms - 1]) | st.integers(0, window_ms - 1))
    return params, limiter, bucket * window_ms + offset


def _rates() -> st.SearchStrategy[int]:
    # Refunds, peeks, costs, and a cost above any limit drawn here (limits are 1..10).
    return st.integers(-3, 6) | st.sampled_from([0, 1, 11])


def make_machine(
    backend: BackendCase, kind: Kind, admin: list[redis.Redis]
) -> type[RuleBasedStateMachine]:
    """A state machine class bound to one backend and one algorithm."""

    class RatelimitVsModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            # A fresh prefix per example: examples (and shrinking replays) never share keys.
            self.prefix = f"rkmodel{next(_prefixes)}t{time.monotonic_ns()}"
            self.started = time.monotonic()
            self.last_retry_ms: int | None = None
            self.last_reset: int | None = None

        @initialize(config=configs(kind), ephemeral=st.booleans())
        def setup(self, config: tuple[Params, Limiter, int], ephemeral: bool) -> None:
            params, limiter, start = config
            self.params = params
            self.clock = VirtualClock(start)
            self.model = RatelimitModel(params, ephemeral=ephemeral)
            factory = AsyncRatelimit if backend.is_async else Ratelimit
            # timeout=None: a slow machine must not turn an answer into reason="timeout".
            self.limiter = factory(
                backend.conn,
                limiter,
                prefix=self.prefix,
                ephemeral_cache=ephemeral,
                timeout=None,
                clock=self.clock,
            )

        # -- helpers -------------------------------------------------------------------------

        @property
        def now(self) -> int:
            return int(self.clock.now_ms())

        def base(self, identifier: str) -> str:
            part = keys.hash_tag(identifier) if backend.is_cluster else identifier
            return f"{self.prefix}:{part}"

        def move_clock(self, ms: int) -> None:
            assert ms >= 1
            self.clock.advance(ms)

        def settle_short_lived_bucket(self) -> None:
            # A bucket key written with a TTL short enough to expire in real time: move the
            # clock to when it is full (logically new) and delete it, as expiry would.
            # GCRA's key likewise lives until its TAT has passed, and a sliding log's until its
            # newest entry leaves the window: then they carry no state either.
            for key in list(self.model.written):  # forget() touches the set
                ttl = self.model.ttl_ms.get(key)
                if self.params.kind in SHORT_LIVED and ttl is not None and ttl < SHORT_TTL_MS:
                    self.move_clock(ttl)
                    backend.execute(command("DEL", key))
                    self.model.forget(key)

        # -- rules ---------------------------------------------------------------------------

        @rule(identifier=st.sampled_from(IDENTIFIERS), rate=_rates())
        def limit(self, identifier: str, rate: int) -> None:
            now = self.now
            expected = self.model.limit(self.base(identifier), rate, now)
            actual = backend.call(self.limiter.limit, identifier, rate)
            assert actual == expected, (
                f"limit({identifier!r}, {rate}) at {now}: expected {expected!r}, got {actual!r}"
            )
            self.last_reset = actual.reset
            if not actual.success:
                self.last_retry_ms = round(actual.retry_after * 1000)
            self.settle_short_lived_bucket()

        @rule(identifier=st.sampled_from(IDENTIFIERS))
        def get_remaining(self, identifier: str) -> None:
            now = self.now
            expected = self.model.get_remaining(self.base(identifier), now)
            actual = backend.call(self.limiter.get_remaining, identifier)
            assert actual == expected, (
                f"get_remaining({identifier!r}) at {now}: expected {expected!r}, got {actual!r}"
            )
            self.last_reset = actual.reset

        @rule(identifier=st.sampled_from(IDENTIFIERS))
        def reset(self, identifier: str) -> None:
            now = self.now
            expected = self.model.reset(self.base(identifier), now)
            actual = backend.call(self.limiter.reset, identifier)
            assert actual == expected, (
                f"reset({identifier!r}) at {now}: expected {expected!r}, got {actual!r}"
            )

        @rule(how=st.sampled_from(ADVANCES), data=st.data())
        def advance(self, how: str, data: st.DataObject) -> None:
            window, now = self.params.window_ms, self.now
            offset = data.draw(st.sampled_from([-1, 0, 1]), label="offset")
            if how == "a little":
                ms = data.draw(st.integers(1, 5) | st.integers(1, 1_000), label="ms")
            elif how == "far":
                ms = data.draw(st.integers(1, 3 * window), label="ms")
            elif how == "whole windows":
                ms = data.draw(st.integers(1, 3), label="windows") * window
            elif how == "window edge":
                # Epoch-aligned window ends (for a token bucket, a phase it does not keep).
                ms = window - now % window + offset
            elif how == "last reset" and self.last_reset is not None:
                # The window's end or the next refill, as last reported: the edges that matter.
                ms = self.last_reset + offset - now
            elif how == "retry" and self.last_retry_ms is not None:
                # Exactly when a refused request was told to come back, or 1 ms too early.
                ms = self.last_retry_ms + min(offset, 0)
                self.last_retry_ms = None
            else:
                ms = 1
            self.move_clock(max(1, ms))

        # -- the keyspace --------------------------------------------------------------------

        @invariant()
        def keys_match_the_model(self) -> None:
            if not hasattr(self, "model"):
                return
            assert time.monotonic() - self.started < MAX_EXAMPLE_SECONDS, "example too slow"
            found: dict[str, Any] = {}
            for client in admin:
                for raw in client.keys(f"{self.prefix}:*"):
                    key = raw.decode()
                    kind_of = client.type(key).decode()
                    if kind_of == "string":
                        found[key] = int(client.get(key))
                    elif kind_of == "zset":
                        # A sliding log: only its scores mean something; members are unique.
                        entries = client.zrange(key, 0, -1, withscores=True)
                        found[key] = sorted(int(score) for _, score in entries)
                    else:
                        assert kind_of == "hash", (key, kind_of)
                        fields = client.hgetall(key)
                        found[key] = {f.decode(): int(v) for f, v in fields.items()}
                    # Every key expires some day: nothing is left behind for good.
                    assert client.pttl(key) > 0, key
            expected: dict[str, Any] = {**self.model.strings, **self.model.hashes}
            for key, (content, last) in self.model.meters.items():
                expected[key] = last + content  # GCRA: Redis holds the TAT
            for key, stamps in self.model.logs.items():
                expected[key] = sorted(stamps)
                assert len(stamps) <= self.params.limit  # the memory bound
            assert found == expected, f"keys: expected {expected!r}, found {found!r}"

    return RatelimitVsModel


def check_against_model(
    backend: BackendCase, kind: Kind, request: pytest.FixtureRequest, examples: int
) -> None:
    """Run the state machine of ``kind`` on ``backend`` for ``examples`` examples."""
    if backend.is_cluster:
        admin = request.getfixturevalue("redis_cluster").node_clients()
    else:
        admin = [request.getfixturevalue("redis_server").client()]
    machine = make_machine(backend, kind, admin)
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=30,
                deadline=None,
                database=None,  # no example database: each run is fresh
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
            ),
        )
    finally:
        for client in admin:
            client.close()


# A failure shrinks over real Redis round trips, which takes a while: let it report.
@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["fixed", "sliding", "token", "gcra", "log"])
def test_limiter_matches_model(
    backend: BackendCase, kind: Kind, request: pytest.FixtureRequest
) -> None:
    check_against_model(backend, kind, request, EXAMPLES)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["fixed", "sliding", "token", "gcra", "log"])
def test_limiter_matches_model_on_the_autopipelined_driver(
    autopipelined_backend: BackendCase, kind: Kind, request: pytest.FixtureRequest
) -> None:
    check_against_model(autopipelined_backend, kind, request, AUTOPIPELINED_EXAMPLES)


def test_fixed_window_refusal_keeps_a_zero_counter(backend: BackendCase) -> None:
    # docs/ratelimit.md: "Refused requests write nothing", and reset() reports the keys it
    # deleted. A counter refunded to 0 still exists, so reset() must find it.
    factory = AsyncRatelimit if backend.is_async else Ratelimit
    limiter = factory(
        backend.conn,
        FixedWindow(1, "1 m"),
        prefix=f"rkzero{next(_prefixes)}",
        ephemeral_cache=False,
        clock=VirtualClock(1_700_000_000_000),
    )
    assert backend.call(limiter.limit, "id", 1).success
    assert backend.call(limiter.limit, "id", -1).success  # the counter is now "0"
    assert not backend.call(limiter.limit, "id", 2).success  # above the limit: refused
    assert backend.call(limiter.reset, "id") == 1  # the "0" counter was still there
