"""Analytics on real servers (standalone and cluster, sync and async), in Upstash's layout."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from redkit import FixedWindow
from redkit.core.clock import VirtualClock
from redkit.core.errors import InvalidArgumentError
from support.backends import BackendCase

HOUR = 3_600_000
T0 = 1_700_000_000_000 // HOUR * HOUR + 1_000  # one second into an hour


def upstash_reader(backend: BackendCase, prefix: str) -> Counter[tuple[str, Any]]:
    """What a reader written against @upstash/ratelimit's layout finds: events per hour set."""
    found: Counter[tuple[str, Any]] = Counter()
    for key in backend.all_keys():
        if key.startswith(f"{prefix}:events:"):
            assert int(key.rsplit(":", 1)[1]) % HOUR == 0  # hour starts, in epoch ms
            assert backend.admin.type(key) == b"zset"
            assert 0 < backend.admin.pttl(key) <= 91 * 24 * HOUR  # retention applied
            for member, score in backend.admin.zrange(key, 0, -1, withscores=True):
                event = json.loads(member)
                assert list(event) == ["identifier", "success"]  # Upstash's order
                found[(event["identifier"], event["success"])] += int(score)
    return found


def test_decisions_are_counted_where_upstash_looks(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(
        FixedWindow(2, "1 m"), clock=clock, analytics=True, enable_protection=True, prefix="a"
    )
    rl.deny("bad")
    for _ in range(4):
        rl.limit("user:1")  # 2 allowed, a refusal, then a refusal from the ephemeral cache
    rl.limit("user:2")
    rl.limit("bad")
    rl.flush()  # what was counted in this process goes out now
    assert upstash_reader(backend, "a") == {
        ("user:1", True): 2, ("user:1", False): 2, ("user:2", True): 1, ("bad", "denied"): 1,
    }  # fmt: skip
    usage = rl.get_usage(hours=1)
    assert usage["user:1"] == {"allowed": 2, "blocked": 2, "denied": 0}
    assert usage["bad"]["denied"] == 1
    top = rl.get_top(count=1)
    assert top == {"allowed": [("user:1", 2)], "blocked": [("user:1", 2)]}


def test_usage_over_time_is_hourly(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    rl = backend.ratelimit(FixedWindow(100, "1 m"), clock=clock, analytics=True, prefix="h")
    rl.limit("u")
    clock.advance(HOUR)
    rl.limit("u")
    rl.limit("v")
    rl.flush()
    rows = rl.get_usage_over_time(hours=3)
    assert [row["time"] for row in rows] == [T0 - 1_000 - HOUR, T0 - 1_000, T0 - 1_000 + HOUR]
    assert [row["allowed"] for row in rows] == [0, 1, 2]
    assert rl.get_usage(hours=1)["u"]["allowed"] == 1  # only the last hour


def test_analytics_must_be_on_and_queries_checked(backend: BackendCase) -> None:
    plain = backend.ratelimit(FixedWindow(1, "1 m"))
    with pytest.raises(InvalidArgumentError, match="analytics=True"):
        plain.get_usage()
    rl = backend.ratelimit(FixedWindow(1, "1 m"), analytics=True)
    for bad in (0, 10_000, 1.5):
        with pytest.raises(InvalidArgumentError, match="hours must be"):
            rl.get_usage(hours=bad)


def test_a_denied_request_counts_under_the_denied_value(backend: BackendCase) -> None:
    rl = backend.ratelimit(
        FixedWindow(5, "1 m"), clock=VirtualClock(T0), analytics=True, enable_protection=True,
        prefix="d",
    )  # fmt: skip
    rl.deny("203.0.113.9", "a/b")
    rl.limit("user:1", ip="203.0.113.9")
    rl.limit("user:2", user_agent="a/b")
    rl.flush()
    # As Upstash's SDK records it: under the value found on the deny list, "/" unescaped.
    assert upstash_reader(backend, "d") == {("203.0.113.9", "denied"): 1, ("a/b", "denied"): 1}
    # Byte for byte as JSON.stringify writes it, so the SDK's own counts land on the same member.
    members = {
        member
        for key in backend.all_keys()
        if key.startswith("d:events:")
        for member in backend.admin.zrange(key, 0, -1)
    }
    assert b'{"identifier":"a/b","success":"denied"}' in members
