"""Simulation equals reality: the rate-limit simulator against the real limiters on real Redis.

Issue 14's proof for rate limits: a request trace (ordinary clients, a bursty bot, a client
hugging window edges; timestamps at ms, sub-ms and centisecond resolution) is replayed through
the real :class:`redkit.Ratelimit` / :class:`redkit.AsyncRatelimit` on a standalone server and
on a 3-master cluster, with a :class:`~redkit.core.clock.VirtualClock` set to each request's
time, and every decision must equal :func:`redkit.advise.ratelimit_sim.decide_trace`'s, with
the ephemeral cache off and on. Each algorithm runs as the advice would recommend it, through
``Candidate(...).limiter``: over every request, and as a route's own limit (``route=``).

Redis expires keys on its real clock, while the scripts decide on the virtual one: a key
written with a TTL of ``d`` virtual ms lives ``d`` real ms, and the replay may well take longer
than that to reach the moment the key stops mattering (a token bucket's key written 1 ms
before its phase ends lives 1 ms). So after each admission (the only calls that write, and
the only writes that set a TTL) the replay PERSISTs the key just written. That cannot change
an answer: every script treats a key past its expiry exactly as an absent one (a bucket
past its refill time is full, hence new; a TAT in the past is ``now``; a log trims entries
that left the window; window counters are named by window number and never read once their
window is over). One race is left: a key whose TTL runs out in the moment between the script
and the PERSIST. The replay detects it (the key it persists must exist) and plays the trace
again on fresh keys; a limiter that failed to write would fail every attempt.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Sequence
from typing import Any

import pytest

from redkit.advise.ratelimit_sim import ALGORITHMS, Algorithm, Candidate, decide, decide_trace
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from redkit.core import keys
from redkit.core.clock import VirtualClock
from support.backends import BackendCase

#: The backends of the proof: standalone and cluster, each through both facades.
BACKENDS = ["standalone-sync", "standalone-async", "cluster-sync", "cluster-async"]

#: The trace starts here (epoch ms: a whole second, and a multiple of every window below).
START_MS = 1_700_000_000_000
#: Virtual length of a trace: long enough for many windows, short enough to replay in seconds.
SPAN_MS = 8_000

#: Per algorithm, the candidates replayed (limit, window ms): a window of a second, a short
#: one, and one whose GCRA emission interval (2500 ms / 12) is rounded up to whole µs.
SHAPES = [(5, 1000), (3, 400), (12, 2500)]
#: A route limited on its own (a limiter of its own, per client), with its limit and window.
ROUTE, ROUTE_SHAPE = "/login", (2, 1000)
#: Attempts at one replay when a key expires in real time before it could be persisted.
ATTEMPTS = 5

_prefixes = itertools.count()

#: Make the key just written permanent, and say whether it was there to be made so.
_PERSIST = (
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "redis.call('PERSIST', KEYS[1]) return 1"
)


def make_trace(seed: int) -> Trace:
    """A few hundred requests over :data:`SPAN_MS`, by several kinds of client (see module)."""
    rng = random.Random(seed)
    end = START_MS + SPAN_MS
    rows: list[tuple[float, str, str]] = []  # (epoch seconds, client, user agent)

    # Ordinary clients, a few requests a second each, logged to the ms.
    for k in range(4):
        mean_gap = rng.choice([200.0, 350.0, 600.0])
        t = START_MS + rng.uniform(0, mean_gap)
        while t < end:
            rows.append((round(t) / 1000, f"10.0.0.{k + 1}", "Mozilla/5.0"))
            t += rng.expovariate(1 / mean_gap)

    # A client whose log has centisecond stamps: several of its requests share one.
    t = START_MS + rng.uniform(0, 300)
    while t < end:
        rows.append((round(t / 10) / 100, "10.0.1.9", "curl/8.5"))
        t += rng.choice([3.0, 8.0, 40.0, 150.0, 400.0])

    # A bursty bot: bursts of 8-40 requests, 0-3 ms apart (several in one ms), to the µs.
    t = START_MS + rng.uniform(0, 800)
    while t < end:
        burst_at = t
        for _ in range(rng.randint(8, 40)):
            rows.append((round(burst_at, 3) / 1000, "bot{7}", "python-requests/2.31"))
            burst_at += rng.choice([0.0, 0.12, 0.5, 1.0, 2.7])
        t += rng.uniform(600, 2500)

    # A client hugging window edges: a few requests from 3 ms before an epoch-aligned edge to
    # 2 ms after it, to the µs, where windows turn over (and a cached block must end).
    for window in sorted({w for _, w in SHAPES}):
        for edge in range(START_MS + window, end, window):
            if rng.random() < 0.6:
                offsets = sorted(rng.uniform(-3, 2) for _ in range(rng.randint(2, 5)))
                for offset in offsets:
                    rows.append((round(edge + offset, 3) / 1000, "edge:1", "Go-http-client/1.1"))

    # About one request in five is a login: a route with a limit of its own (ROUTE_SHAPE).
    builder = TraceBuilder(f"replay-{seed}", "test")
    for line, (seconds, client, agent) in enumerate(rows, 1):
        route = ROUTE if rng.random() < 0.2 else "/api/items"
        builder.add(Request(seconds, line, Op.READ, route, route, client=client, user_agent=agent))
    return builder.build()


class OutranExpiry(Exception):
    """A key written by an admission expired (in real time) before the replay persisted it."""


def _base(backend: BackendCase, prefix: str, identifier: str) -> str:
    # The identifiers of make_trace are kept verbatim on a standalone server (short ASCII,
    # no reserved suffix); a cluster wraps each in its hash tag.
    part = keys.hash_tag(identifier) if backend.is_cluster else identifier
    return f"{prefix}:{part}"


def _written_key(candidate: Candidate, base: str, now_ms: int) -> str:
    """The key an admission at ``now_ms`` wrote: the window's counter, or the state key."""
    ((key, window),) = candidate.limiter.state(base)
    return f"{key}:{now_ms // window}" if window else key


#: One limiter of a replay: its candidate, and the route it limits (``None``: every request).
Plan = tuple[Candidate, str | None]


def replay(
    backend: BackendCase, trace: Trace, plans: Sequence[Plan], *, ephemeral: bool
) -> tuple[list[list[bool | None]], int]:
    """Every request of ``trace`` through one real limiter per plan, on one virtual clock.

    Returns each plan's decisions in trace order (``None`` for requests of routes it does not
    limit) and how many refusals the ephemeral cache answered without Redis.
    """
    candidates = [candidate for candidate, _ in plans]
    clock = VirtualClock(trace.times[0] * 1000.0)
    prefixes = [f"rkreplay{next(_prefixes)}t{time.monotonic_ns()}" for _ in candidates]
    limiters = [
        # timeout=None: a slow machine must not turn an answer into reason="timeout".
        backend.ratelimit(c.limiter, prefix=p, ephemeral_cache=ephemeral, timeout=None, clock=clock)
        for c, p in zip(candidates, prefixes, strict=True)
    ]
    admin: Any = backend.admin
    persist = admin.register_script(_PERSIST)
    decisions: list[list[bool | None]] = [[] for _ in candidates]
    cached = 0
    for row in range(len(trace)):
        # The same expression as ratelimit_sim.to_ms: int(seconds * 1000.0) once floored.
        clock.set(trace.times[row] * 1000.0)
        now_ms = int(clock.now_ms())
        identifier = trace.strings[trace.clients[row]]
        assert identifier is not None
        route = trace.namespace_names[trace.namespaces[row]]
        for k, (candidate, limiter) in enumerate(zip(candidates, limiters, strict=True)):
            if plans[k][1] not in (None, route):
                decisions[k].append(None)
                continue
            result = limiter.limit(identifier)
            assert result.reason in (None, "cacheBlock"), result
            cached += result.reason == "cacheBlock"
            decisions[k].append(result.success)
            if result.success:
                key = _written_key(candidate, _base(backend, prefixes[k], identifier), now_ms)
                if not persist(keys=[key]):
                    raise OutranExpiry(f"{key} written at {now_ms} had expired already")
    return decisions, cached


def replay_with_retries(
    backend: BackendCase, trace: Trace, plans: Sequence[Plan], *, ephemeral: bool
) -> tuple[list[list[bool | None]], int]:
    """:func:`replay`, again on fresh keys when a key expired before it was persisted."""
    for attempt in range(ATTEMPTS):
        try:
            return replay(backend, trace, plans, ephemeral=ephemeral)
        except OutranExpiry:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def assert_equal_to_simulation(
    trace: Trace, plan: Plan, actual: list[bool | None], seed: int
) -> None:
    """The replay's decisions are the simulator's, request for request."""
    candidate, route = plan
    expected = decide_trace(trace, candidate.limiter, by="ip", route=route)
    assert len(actual) == len(expected) == len(trace)
    # A proof that refuses nothing, or admits nothing, would prove little.
    assert expected.count(False) > 0, plan
    assert expected.count(True) > 0, plan
    for row, (want, got) in enumerate(zip(expected, actual, strict=True)):
        if want != got:
            client = trace.strings[trace.clients[row]]
            history = [
                (int(trace.times[r] * 1000.0), expected[r], actual[r])
                for r in range(row + 1)
                if trace.clients[r] == trace.clients[row] and expected[r] is not None
            ][-8:]
            pytest.fail(
                f"seed {seed}, {candidate} on {route or 'every route'}: request {row} of "
                f"{client!r} at {trace.times[row] * 1000.0!r} ms: simulator {want}, Redis {got}; "
                f"that client's last requests (ms, simulator, Redis): {history}"
            )


def seed_of(backend: BackendCase, algorithm: str) -> int:
    """A trace of its own for each test (the seed is printed on a failure)."""
    return 10 * ALGORITHMS.index(algorithm) + BACKENDS.index(f"{backend.topology}-{backend.mode}")


@pytest.mark.parametrize("ephemeral", [False, True], ids=["redis", "ephemeral-cache"])
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_replayed_decisions_equal_the_simulation(
    backend: BackendCase, algorithm: Algorithm, ephemeral: bool
) -> None:
    # With the ephemeral cache on, refusals are answered from memory until the moment Redis
    # said a retry could pass: they must still be exactly the simulator's refusals.
    seed = seed_of(backend, algorithm) + 100 * ephemeral
    trace = make_trace(seed)
    plans: list[Plan] = [(Candidate(algorithm, limit, window), None) for limit, window in SHAPES]
    plans.append((Candidate(algorithm, *ROUTE_SHAPE), ROUTE))
    decisions, cached = replay_with_retries(backend, trace, plans, ephemeral=ephemeral)
    # The cache is on only where asked for, and then it answers (the bot's bursts).
    assert (cached > 0) is ephemeral, cached
    for plan, actual in zip(plans, decisions, strict=True):
        assert_equal_to_simulation(trace, plan, actual, seed)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_cached_block_ends_when_redis_would_admit(
    backend: BackendCase, algorithm: Algorithm
) -> None:
    # The script decides on the clock's reading floored to whole ms. A refusal read at
    # x.7 ms may pass again at floor(x) + retry; a block timed from the reading itself
    # (x.7 + retry) refused a request read at floor(x) + retry + 0.2 from memory, which Redis
    # (and the simulator) admits.
    limiter = Candidate(algorithm, 1, 1000).limiter
    clock = VirtualClock(START_MS + 0.7)
    rl = backend.ratelimit(
        limiter, prefix=f"rkblock{next(_prefixes)}", ephemeral_cache=True, timeout=None, clock=clock
    )
    assert rl.limit("client").success
    clock.set(START_MS + 500.7)
    refused = rl.limit("client")
    assert not refused.success
    assert refused.reason is None  # Redis's refusal, now cached
    retry_ms = round(refused.retry_after * 1000)
    clock.set(START_MS + 500 + retry_ms - 0.3)  # still before the retry: refused from memory
    assert rl.limit("client").reason == "cacheBlock"
    clock.set(START_MS + 500 + retry_ms + 0.2)
    again = rl.limit("client")
    assert (again.success, again.reason) == (True, None), again
    times = [START_MS, START_MS + 500, START_MS + 500 + retry_ms - 1, START_MS + 500 + retry_ms]
    assert decide(times, limiter) == [True, False, False, True]
