"""The rate-limit simulator (redkit.advise.ratelimit_sim): worked examples, and every algorithm
against the reference model of tests/support/ratelimit_model.py on any sequence of requests."""

from __future__ import annotations

from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redkit import GCRA, FixedWindow, SlidingLog, SlidingWindow, TokenBucket
from redkit.advise.ratelimit_sim import (
    ALGORITHMS,
    Candidate,
    candidate_refusals,
    decide,
    decide_trace,
    never_refused,
    peaks,
    populations,
    refusals,
    refused_clients,
    span_max,
    to_ms,
)
from redkit.advise.trace import Op, Request, TraceBuilder
from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit.limiters import CachedFixedWindow, Limiter
from support.ratelimit_model import Kind, Params, RatelimitModel

#: An epoch ms that starts a second, a minute and an hour.
T0 = 1_699_999_200_000
T, F = True, False


def at(*offsets: int) -> list[int]:
    return [T0 + offset for offset in offsets]


def test_fixed_window_admits_the_first_of_each_window() -> None:
    times = at(0, 10, 20, 999, 1000, 1001, 1002)
    assert decide(times, FixedWindow(2, "1 s")) == [T, T, F, F, T, T, F]
    assert refusals(times, FixedWindow(2, "1 s")) == 3


def test_sliding_window_weighs_the_previous_window() -> None:
    times = at(0, 10, 500, 1000, 1500, 1600, 1700, 2000, 2999)
    # At 1000 the previous window (2) weighs floor(1.0 * 2) = 2: full. At 1500 it weighs
    # floor(0.5 * 2) = 1, room for one; at 1600 floor(0.4 * 2) = 0 plus the one: room for a
    # second. At 2000 the window of 1500 and 1600 weighs 2, at 2999 floor(0.001 * 2) = 0.
    assert decide(times, SlidingWindow(2, "1 s")) == [T, T, F, F, T, T, F, F, T]


def test_token_bucket_refills_in_steps_and_a_full_bucket_restarts_its_phase() -> None:
    times = at(0, 10, 500, 1000, 1001, 3500, 3600, 4400, 4500)
    # 2 tokens, 1 more each second. At 3500 two refills fill it: its phase starts at 3500,
    # so the next refill is at 4500, not 4000.
    assert decide(times, TokenBucket(1, "1 s", 2)) == [T, T, F, T, F, T, T, F, T]


def test_gcra_spaces_cells_by_the_emission_interval() -> None:
    times = at(0, 0, 0, 499, 500, 500, 1000)
    # T = 500 ms, burst 2: two at once, then one every 500 ms.
    assert decide(times, GCRA(2, "1 s", 2)) == [T, T, F, F, T, F, T]
    # T rounded up to 333,334 µs: after three at 0 the bucket is full again at 1000.002 ms,
    # not at 1000, so of three more at 1000 only two fit.
    assert decide(at(0, 0, 0, 1000, 1000, 1000, 1001), GCRA(3, "1 s", 3)) == [T] * 5 + [F, T]


def test_sliding_log_counts_admissions_in_the_last_window() -> None:
    times = at(0, 10, 999, 1000, 1009, 1010)
    assert decide(times, SlidingLog(2, "1 s")) == [T, T, F, T, F, T]


def test_a_refused_request_consumes_nothing() -> None:
    # A client hammering while refused gets in again exactly when a quiet one would.
    hammering = at(0, *range(1, 1000, 3), 1000)
    for limiter in (FixedWindow(1, "1 s"), SlidingLog(1, "1 s"), TokenBucket(1, "1 s", 1)):
        decisions = decide(hammering, limiter)
        assert decisions == [T] + [F] * (len(hammering) - 2) + [T], limiter


def test_candidates_build_redkit_limiters_and_their_code() -> None:
    made = {a: Candidate(a, 100, 60_000) for a in ALGORITHMS}
    assert made["sliding_window"].limiter == SlidingWindow(100, 60.0)
    assert made["token_bucket"].limiter == TokenBucket(100, 60.0, 100)
    assert made["gcra"].limiter == GCRA(100, 60.0, 100)
    assert made["sliding_window"].code() == 'SlidingWindow(100, "1 m")'
    assert made["gcra"].code() == 'GCRA(100, "1 m", burst=100)'
    assert Candidate("fixed_window", 5, 1500).code() == 'FixedWindow(5, "1500 ms")'
    with pytest.raises(InvalidArgumentError, match="algorithm must be one of"):
        Candidate("leaky", 1, 1000)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="CachedFixedWindow"):
        refusals(at(0), CachedFixedWindow(1, "1 s"))
    assert not Candidate.fits("sliding_log", 100_001, 1000)
    assert not Candidate.fits("gcra", 1001, 1)


def test_span_max_counts_half_open_spans() -> None:
    assert span_max(at(0, 999, 1000, 1999), 1000) == 2
    assert span_max(at(0, 999, 1000, 1999), 1001) == 3
    assert span_max([], 1000) == 0
    p = peaks(at(0, 999, 1000, 1999, 2000, 5000), 1000)
    assert (p.aligned, p.pair, p.triple) == (2, 4, 5)
    assert p.layout == ((T0 // 1000, T0 // 1000 + 1, T0 // 1000 + 2, T0 // 1000 + 5), (2, 2, 1, 1))
    assert peaks(at(5, 6), 1000).layout == ((T0 // 1000,), (2,))


def _trace(rows: list[tuple[float, str, str | None, str | None]]) -> TraceBuilder:
    builder = TraceBuilder("test", "csv", attributes=["header:X-API-Key"])
    for line, (t, route, ip, user) in enumerate(rows, 1):
        builder.add(Request(t, line, Op.READ, route, route, client=ip, user=user))
    return builder


def test_populations_keep_unidentified_requests_apart() -> None:
    trace = _trace(
        [
            (1.0, "/a", "1.1.1.1", "ann"),
            (1.5, "/b", "1.1.1.1", None),
            (2.0, "/a", "2.2.2.2", None),
            (2.5, "/a", "1.1.1.1", "ann"),
        ]
    ).build()
    whole, routes = populations(trace, "user")
    # Anonymous requests belong to no client: not to their IP, not to a shared "(none)".
    assert (whole.unidentified, whole.requests, len(whole.clients)) == (2, 2, 1)
    assert whole.times == [[1000, 2500]]
    assert (routes["/a"].unidentified, routes["/b"].unidentified) == (1, 1)
    assert (routes["/b"].clients, routes["/a"].requests) == ([], 2)
    by_ip, _ = populations(trace, "ip")
    assert (by_ip.unidentified, sorted(map(len, by_ip.times))) == (0, [1, 3])
    with pytest.raises(InvalidArgumentError, match=r"attributes=\['header:Other'\]"):
        populations(trace, "header:Other")
    assert populations(trace, "header:X-API-Key")[0].unidentified == 4


def test_decide_trace_gives_each_request_its_decision() -> None:
    trace = _trace(
        [
            (1.0, "/a", "x", None),
            (1.1, "/b", "x", None),
            (1.2, "/a", "x", None),
            (1.3, "/a", None, None),
        ]
    ).build()
    assert decide_trace(trace, FixedWindow(1, "1 s")) == [T, F, F, None]
    assert decide_trace(trace, FixedWindow(1, "1 s"), route="/a") == [T, None, F, None]
    assert decide_trace(trace, FixedWindow(1, "1 s"), route="/nowhere") == [None] * 4
    assert to_ms([1.5, 1700000000.123]) == [1500, int(1700000000.123 * 1000.0)]


# -- against the reference model -------------------------------------------------------------

KINDS: dict[Kind, str] = {"fixed": "f", "sliding": "s", "token": "t", "gcra": "g", "log": "l"}


@st.composite
def configs(draw: st.DrawFn, most: int = 6) -> tuple[Params, Limiter]:
    kind: Kind = draw(st.sampled_from(list(KINDS)))
    window_ms = draw(st.sampled_from([1, 7, 1000, 1001, 60_000]))
    limit = draw(st.integers(1, most))
    if kind == "token":
        refill = draw(st.integers(1, 7))
        return Params(kind, limit, window_ms, refill), TokenBucket(refill, window_ms / 1000, limit)
    if kind == "gcra":
        rate = draw(st.integers(1, min(7, window_ms * 1000)))
        return Params(kind, limit, window_ms, rate), GCRA(rate, window_ms / 1000, limit)
    make = {"fixed": FixedWindow, "sliding": SlidingWindow, "log": SlidingLog}[kind]
    return Params(kind, limit, window_ms), make(limit, window_ms / 1000)


@st.composite
def request_times(draw: st.DrawFn, window_ms: int, size: int = 60) -> list[int]:
    # Gaps of 0 (same ms), 1, around a window and far; starts anywhere in a window.
    gaps = st.sampled_from([0, 1, window_ms - 1, window_ms, window_ms + 1]) | st.integers(
        0, 3 * window_ms
    )
    t = T0 + draw(st.integers(0, window_ms - 1))
    times = []
    for gap in draw(st.lists(gaps, max_size=size)):
        t += gap
        times.append(t)
    return times


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_simulator_decides_as_the_reference_model(data: st.DataObject) -> None:
    params, limiter = data.draw(configs())
    times = data.draw(request_times(params.window_ms))
    model = RatelimitModel(params, ephemeral=False)
    expected = [model.limit("id", 1, t).success for t in times]
    assert decide(times, limiter) == expected
    assert refusals(times, limiter) == expected.count(False)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_simulator_decides_as_the_reference_model_on_longer_runs(data: st.DataObject) -> None:
    # Higher limits and more requests: long stretches admitted whole, and busy ones.
    params, limiter = data.draw(configs(most=40))
    gap = st.integers(0, max(1, 3 * params.window_ms // params.limit))
    times = [T0 + t for t in accumulate(data.draw(st.lists(gap, min_size=1, max_size=400)))]
    model = RatelimitModel(params, ephemeral=False)
    assert decide(times, limiter) == [model.limit("id", 1, t).success for t in times]


@settings(max_examples=300, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    limit=st.integers(1, 8),
    window_ms=st.sampled_from([1, 3, 1000, 1001, 60_000]),
    data=st.data(),
)
def test_skipping_by_peaks_never_changes_a_count(
    algorithm: str, limit: int, window_ms: int, data: st.DataObject
) -> None:
    candidate = Candidate(algorithm, limit, window_ms)  # type: ignore[arg-type]
    times = data.draw(request_times(window_ms))
    refused = refusals(times, candidate.limiter)
    peak = peaks(times, window_ms)
    assert candidate_refusals(times, candidate, peak) == refused
    if never_refused(candidate.algorithm, limit, peak):
        assert refused == 0
    assert refused_clients(
        [times, times[:3]], [peak, peaks(times[:3], window_ms)], [candidate]
    ) == [{k: r for k, r in enumerate([refused, refusals(times[:3], candidate.limiter)]) if r}]
