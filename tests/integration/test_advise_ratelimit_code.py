"""The rate-limit advice's code, pasted into a program: exec'd against a real Redis, it builds the
limiter recommended, and that limiter decides the trace's requests as the advice counted."""

from __future__ import annotations

import ast
from typing import Any

import redkit
from redkit import Connection, EmbeddedRedis, Ratelimit
from redkit.advise import advise_ratelimit
from redkit.advise.ratelimit_sim import Candidate
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from redkit.core.clock import VirtualClock

T0 = 1_699_999_200.0  # starts an hour
BOT = "203.0.113.66"
PLAN = "header:X-Plan"


def trace_with_a_bot(route: str) -> Trace:
    builder = TraceBuilder("hand.log", "combined", attributes=(PLAN,))
    line = 0

    def add(offset: float, client: str, plan: str) -> None:
        nonlocal line
        line += 1
        builder.add(
            Request(
                T0 + offset, line, Op.READ, route, route, client=client,
                user_agent="curl/8" if client == BOT else "Mozilla/5.0",
                attributes={PLAN: plan},
            )
        )  # fmt: skip

    for c in range(10):
        for minute in range(10):
            for k in range(2 + c % 3):
                add(minute * 60 + c + k * 17.0, f"10.0.0.{c}", "free" if c % 2 else "pro")
    for k in range(1200):  # one every 0.5 s for ten minutes
        add(k * 0.5 + 0.25, BOT, "free")
    return builder.build()


def run(code: str, conn: Connection) -> dict[str, Any]:
    """``code`` exec'd as a user would paste it: ``redis`` bound, redkit's names imported."""
    namespace: dict[str, Any] = {name: getattr(redkit, name) for name in redkit.__all__}
    namespace["redis"] = conn
    exec(compile(code, "<advice>", "exec"), namespace)
    return namespace


def same_limiter(built: Any, rec: Any) -> bool:
    """Whether ``built`` is the recommendation's limiter: same algorithm, same script call.

    (The dataclasses also compare the window as written, ``"1 m"`` against ``60.0``.)
    """
    expected = Candidate(rec.algorithm, rec.limit, round(rec.window_s * 1000)).limiter
    now = int(T0 * 1000)
    return type(built) is type(expected) and built.call("k", now, 1) == expected.call("k", now, 1)


def target(code: str) -> str:
    statement = ast.parse(code).body[0]
    assert isinstance(statement, ast.Assign)
    name = statement.targets[0]
    assert isinstance(name, ast.Name)
    return name.id


def test_the_code_builds_the_recommended_limiter_and_it_decides_as_counted(
    redis_server: EmbeddedRedis, standalone_conn: Connection
) -> None:
    with redis_server.client() as admin:
        admin.flushall()
    route = '/api/"search"'  # a name that must be quoted in the code
    trace = trace_with_a_bot(route)
    advice = advise_ratelimit(trace)
    (advised,) = advice.routes
    rec = advised.recommendation
    assert rec.refused_heavy_clients == 1
    namespace = run(rec.code, standalone_conn)
    built = namespace[target(rec.code)]
    assert isinstance(built, Ratelimit)
    assert same_limiter(built.limiter, rec)
    # Its keys live under the prefix the code names.
    built.limit("probe")
    with redis_server.client() as admin:
        names = {key.decode() for key in admin.keys("*")}
        assert names
        assert all(name.startswith("ratelimit:api_search:") for name in names)
        admin.flushall()
    # The same limiter on a virtual clock replays the trace: the bot is refused what the
    # advice's candidate row says, the people what the recommendation's share says.
    clock = VirtualClock(T0 * 1000)
    replay = Ratelimit(standalone_conn, built.limiter, prefix="replay", clock=clock)
    refused: dict[str, int] = {}
    requests: dict[str, int] = {}
    for i in range(len(trace)):
        request = trace.request(i)
        assert request.client is not None
        clock.set(int(request.time * 1000))
        ok = replay.limit(request.client).success
        requests[request.client] = requests.get(request.client, 0) + 1
        refused[request.client] = refused.get(request.client, 0) + (not ok)
    row = next(
        c
        for c in advised.candidates
        if (c["algorithm"], c["limit"], c["window_s"]) == (rec.algorithm, rec.limit, rec.window_s)
    )
    assert sum(refused.values()) == round(row["refused_requests_share"] * advised.requests)
    bot_refused = refused.pop(BOT)
    requests.pop(BOT)
    assert bot_refused > 0
    assert row["refused_top"][0] == {"client": BOT, "refused": bot_refused}
    people = sum(refused.values()) / sum(requests.values())
    assert abs(people - rec.refused_ordinary_share) < 1e-12
    assert people <= 0.01


def test_the_tiered_code_builds_one_limiter_per_tier(standalone_conn: Connection) -> None:
    advice = advise_ratelimit(trace_with_a_bot("/api/search"), tier_by=PLAN)
    entries = {route.tier: route.recommendation for route in advice.routes}
    assert set(entries) == {"free", "pro"}
    (code,) = {rec.code for rec in entries.values()}
    built = run(code, standalone_conn)[target(code)]
    assert isinstance(built, redkit.TieredRatelimit)
    assert set(built.tiers) == {"free", "pro"}
    for tier, rec in entries.items():
        assert same_limiter(built.tiers[tier].limiter, rec)
    # The bot pays for the free tier, not the pro one.
    assert entries["free"].refused_heavy_clients == 1
    assert entries["pro"].refused_heavy_clients == 0
