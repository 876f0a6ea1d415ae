"""The sample log and its generator (redkit.advise.sample): realistic, readable, deterministic."""

from __future__ import annotations

import io
import math
from collections import Counter
from pathlib import Path

import pytest

from redkit.advise.readers import read_trace
from redkit.advise.sample import (
    BOT_ADDRESS,
    BOT_USER_AGENT,
    SAMPLE_DURATION,
    SAMPLE_REQUESTS,
    SAMPLE_START,
    generate_log,
    sample_log,
)
from redkit.advise.trace import Op, Trace
from redkit.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def trace() -> Trace:
    return read_trace(sample_log())


def test_the_shipped_sample_is_what_the_generator_writes_with_the_defaults(tmp_path: Path) -> None:
    again = tmp_path / "again.log"
    assert generate_log(again) == SAMPLE_REQUESTS
    assert again.read_bytes() == sample_log().read_bytes()
    stream = io.StringIO()
    generate_log(stream)
    assert stream.getvalue().encode() == again.read_bytes()


def test_a_seed_decides_the_log() -> None:
    logs = []
    for seed in (1, 1, 2):
        stream = io.StringIO()
        generate_log(stream, requests=500, seed=seed)
        logs.append(stream.getvalue())
    assert logs[0] == logs[1] != logs[2]
    assert all(text.count("\n") == 500 for text in logs)


def test_the_sample_reads_as_a_combined_log_without_a_malformed_line(trace: Trace) -> None:
    assert trace.format == "combined"
    assert trace.malformed == 0
    assert trace.lines_read == len(trace) == SAMPLE_REQUESTS
    assert SAMPLE_START <= trace.start < trace.end < SAMPLE_START + SAMPLE_DURATION
    assert trace.duration > 0.9 * SAMPLE_DURATION


def test_the_sample_has_the_routes_of_a_small_shop(trace: Trace) -> None:
    namespaces = Counter(trace.namespace_names[n] for n in trace.namespaces)
    for route in ("/api/users/{id}", "/api/products/{id}", "/api/search", "/api/login"):
        assert namespaces[route] > 0, route
    assert any(name.startswith("/static/") for name in namespaces)
    keys = {trace.key_names[k] for k in trace.keys}
    assert any(key.startswith("/api/products/") and "?page=" in key for key in keys)
    assert any(key.startswith("/api/search?q=") for key in keys)


def test_the_bot_is_the_top_talker(trace: Trace) -> None:
    clients = Counter(trace.strings[c] for c in trace.clients)
    (top, requests), (_, second) = clients.most_common(2)
    assert top == BOT_ADDRESS
    assert requests > 3 * second
    agents = {
        trace.user_agents[i]
        for i in range(len(trace))
        if trace.clients[i] == trace.strings.id(BOT_ADDRESS)
    }
    assert {trace.strings[a] for a in agents} == {BOT_USER_AGENT}
    # ... and it hammers one route.
    routes = {
        trace.namespaces[i]
        for i in range(len(trace))
        if trace.clients[i] == trace.strings.id(BOT_ADDRESS)
    }
    assert {trace.namespace_names[r] for r in routes} == {"/api/search"}
    # Several hundred ordinary clients, with browsers' user agents.
    browsers = {trace.strings[a] for a in trace.user_agents}
    assert len(clients) >= 200
    assert sum(1 for agent in browsers if agent and agent.startswith("Mozilla/5.0 (")) >= 5


def test_writes_hit_resources_that_are_read(trace: Trace) -> None:
    ops = Counter(Op(op) for op in trace.ops)
    assert ops[Op.WRITE] >= 50
    assert ops[Op.READ] > 0.7 * len(trace)
    methods = {
        trace.strings[trace.methods[i]] for i in range(len(trace)) if trace.ops[i] == Op.WRITE
    }
    assert {"PUT", "PATCH", "POST"} <= methods
    written = {
        trace.key_names[trace.keys[i]] for i in range(len(trace)) if trace.ops[i] == Op.WRITE
    }
    read = {trace.key_names[trace.keys[i]] for i in range(len(trace)) if trace.ops[i] == Op.READ}
    # Invalidations of keys that are also read: a TTL alone would serve some stale values.
    assert len(written & read) >= 10


def test_ids_follow_a_zipf_law(trace: Trace) -> None:
    users = trace.namespace_names.id("/api/users/{id}")
    counts = Counter(
        trace.keys[i]
        for i in range(len(trace))
        if trace.namespaces[i] == users and trace.ops[i] == Op.READ
    )
    ranked = sorted(counts.values(), reverse=True)
    # The most read 2 % of the keys take a fifth of the reads, and far more than their share.
    top = max(1, len(ranked) // 50)
    assert sum(ranked[:top]) > 0.2 * sum(ranked)
    # The slope of log(frequency) over log(rank) on the head of the curve is about -1.
    head = ranked[:20]
    xs = [math.log(rank) for rank in range(1, len(head) + 1)]
    ys = [math.log(count) for count in head]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    assert -1.6 < slope < -0.6, slope


def test_the_rate_follows_the_time_of_day(tmp_path: Path) -> None:
    # No bot: the ordinary visits alone, from 02:00 (the quietest hour) to 14:00 (the busiest).
    path = tmp_path / "day.log"
    generate_log(
        path, requests=4000, start=SAMPLE_START - 6 * 3600, duration=12 * 3600.0, bot_share=0
    )
    trace = read_trace(path)
    first = sum(1 for t in trace.times if t < trace.start + 3 * 3600)
    last = sum(1 for t in trace.times if t >= SAMPLE_START + 3 * 3600)
    assert last > 2.5 * first


def test_lines_are_slightly_out_of_order_as_in_a_real_log(trace: Trace) -> None:
    text = sample_log().read_text().splitlines()
    stamps = [line.split("[", 1)[1].split("]", 1)[0] for line in text]
    assert stamps != sorted(stamps, key=lambda s: s[12:20])  # same day: sort by the clock
    assert list(trace.times) == sorted(trace.times)  # the reader sorts them


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("requests", 0),
        ("requests", 1.5),
        ("clients", 0),
        ("duration", 10),
        ("duration", math.inf),
        ("bot_share", -0.1),
        ("bot_share", 0.99),
        ("seed", "x"),
        ("start", math.nan),
    ],
)
def test_bad_arguments_are_named(argument: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=argument):
        generate_log(io.StringIO(), **{argument: value})  # type: ignore[arg-type]
