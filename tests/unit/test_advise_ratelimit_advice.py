"""The rate-limit advice (redkit.advise.ratelimit_advice): its rules on hand-built traces, its
shape against the schema's example, its code, and its errors."""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from typing import Any

import pytest

from redkit.advise import RatelimitAdvice, advise_ratelimit, render_html, render_text
from redkit.advise.ratelimit_advice import HEADROOM, HEAVY_FACTOR, candidate_limits
from redkit.advise.ratelimit_sim import Candidate, decide_trace
from redkit.advise.report import check_schema
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from redkit.core.errors import InvalidArgumentError
from support.advise_examples import RATELIMIT

#: Epoch seconds that start an hour (and so a minute and a second).
T0 = 1_699_999_200.0
BOT = "203.0.113.66"
BOT_AGENT = "python-requests/2.31"
PLAN = "header:X-Plan"


class Log:
    """A trace written by hand, one request at a time."""

    def __init__(self, attributes: tuple[str, ...] = ()) -> None:
        self.builder = TraceBuilder("hand.log", "combined", attributes=attributes)
        self.line = 0

    def add(
        self,
        offset: float,
        client: str | None,
        route: str = "/api/search",
        agent: str = "Mozilla/5.0",
        plan: str | None = None,
    ) -> None:
        self.line += 1
        self.builder.add(
            Request(
                T0 + offset,
                self.line,
                Op.READ,
                route,
                route,
                client=client,
                user_agent=agent,
                attributes=None if plan is None else {PLAN: plan},
            )
        )

    def build(self) -> Trace:
        return self.builder.build()


def people(log: Log, count: int = 20, route: str = "/api/search", minutes: int = 30) -> None:
    """``count`` ordinary clients: each a few requests a minute, at its own pace."""
    for c in range(count):
        per_minute = 2 + c % 4  # 2 to 5 a minute
        for minute in range(minutes):
            for k in range(per_minute):
                log.add(minute * 60 + c + k * (50 / per_minute), f"10.0.0.{c}", route)


def hammer(log: Log, route: str = "/api/search", every: float = 0.5, seconds: int = 1800) -> None:
    """A bot: one request every ``every`` seconds."""
    for k in range(int(seconds / every)):
        log.add(k * every + 0.25, BOT, route, BOT_AGENT)


def bot_trace() -> Trace:
    log = Log()
    people(log)
    hammer(log)
    return log.build()


def refused_by_client(trace: Trace, rec: Any, route: str | None) -> dict[str, tuple[int, int]]:
    """Per client: (requests, refused) under the recommended limiter, replayed independently."""
    limiter = Candidate(rec.algorithm, rec.limit, round(rec.window_s * 1000)).limiter
    out: dict[str, tuple[int, int]] = {}
    decisions = decide_trace(trace, limiter, by="ip", route=route)
    for i, decision in enumerate(decisions):
        if decision is None:
            continue
        client = trace.strings[trace.clients[i]] or ""
        n, r = out.get(client, (0, 0))
        out[client] = (n + 1, r + (not decision))
    return out


# -- the rules -------------------------------------------------------------------------------


def test_a_bot_among_people_is_capped_and_the_people_spared() -> None:
    trace = bot_trace()
    advice = advise_ratelimit(trace)
    (route,) = advice.routes
    assert route.name == "/api/search"
    assert route.heavy == (BOT,)
    rec = route.recommendation
    assert rec.refused_heavy_clients == 1
    assert rec.refused_ordinary_share <= 0.01
    assert rec.window_s == 60.0
    # Replayed independently of the advice's own bookkeeping: the bot is refused most of its
    # requests, the people at most 1 % of theirs.
    counts = refused_by_client(trace, rec, "/api/search")
    bot_requests, bot_refused = counts.pop(BOT)
    assert bot_refused > bot_requests / 2
    people_requests = sum(n for n, _ in counts.values())
    people_refused = sum(r for _, r in counts.values())
    assert people_refused <= 0.01 * people_requests
    assert rec.refused_ordinary_share == pytest.approx(people_refused / people_requests)
    # It is the highest such limit of its algorithm: every higher candidate refuses more than
    # the budget of the people's requests, or lets the bot through.
    higher = [
        c for c in route.candidates if c["algorithm"] == rec.algorithm and c["limit"] > rec.limit
    ]
    for c in higher:
        capped = BOT in {t["client"] for t in c["refused_top"]}
        assert c["refused_ordinary_share"] > 0.01 or not capped, c
    assert "heavy client" in rec.reason
    assert BOT in rec.reason
    # The bot shows among the top talkers, with its user agent.
    top = route.top_talkers[0]
    assert (top["client"], top["user_agent"]) == (BOT, BOT_AGENT)
    assert top["requests"] == 3600
    assert top["share"] == pytest.approx(3600 / route.requests)


def test_the_highest_limit_that_still_caps_the_bot_is_chosen() -> None:
    # 500 a minute lets the bot (120 a minute) through; 3 squeezes the people; 10 is the one.
    route = advise_ratelimit(bot_trace(), limits=[3, 10, 500]).routes[0]
    rows = {(c["algorithm"], c["limit"]): c for c in route.candidates}
    assert rows[("sliding_window", 3)]["refused_ordinary_share"] > 0.01
    assert BOT not in {t["client"] for t in rows[("sliding_window", 500)]["refused_top"]}
    rec = route.recommendation
    assert (rec.algorithm, rec.limit, rec.refused_heavy_clients) == ("sliding_window", 10, 1)
    assert rec.reason.startswith("the highest limit that caps")


def test_without_heavy_clients_a_ceiling_with_headroom() -> None:
    # The busiest person sends 5 a minute: 6 and 8 already refuse nobody, but the ceiling
    # leaves room, twice the busiest minute.
    log = Log()
    people(log, count=12)
    route = advise_ratelimit(log.build(), limits=[2, 4, 6, 8, 10, 12, 100]).routes[0]
    rows = {(c["algorithm"], c["limit"]): c for c in route.candidates}
    assert rows[("sliding_window", 2)]["refused_requests_share"] > 0
    assert rows[("sliding_window", 6)]["refused_requests_share"] == 0.0
    rec = route.recommendation
    assert (rec.algorithm, rec.limit, rec.refused_ordinary_share) == ("sliding_window", 10, 0.0)
    assert rec.reason.startswith("a ceiling against abuse")
    assert HEADROOM * 5 == 10


def test_a_steady_scraper_is_heavy_by_its_volume() -> None:
    # Its busiest minute (30) is not ten times the median person's (3), but over the hour it
    # sends 1,800 requests, more than ten times the p90 person's 150.
    log = Log()
    people(log, count=20)
    for k in range(1800):
        log.add(k * 2.0 + 0.5, BOT, agent=BOT_AGENT)
    route = advise_ratelimit(log.build()).routes[0]
    assert HEAVY_FACTOR * 3 >= 30
    assert route.heavy == (BOT,)
    assert route.recommendation.refused_heavy_clients == 1


def test_protect_100_refuses_no_ordinary_request() -> None:
    advice = advise_ratelimit(bot_trace(), protect=100)
    rec = advice.routes[0].recommendation
    assert rec.refused_ordinary_share == 0.0
    assert rec.refused_heavy_clients == 1


def test_similar_clients_have_no_heavy_one() -> None:
    log = Log()
    people(log, count=12)
    advice = advise_ratelimit(log.build())
    route = advice.routes[0]
    assert route.heavy == ()
    assert route.recommendation.refused_heavy_clients == 0
    assert "no client stands out as heavy" in route.recommendation.reason


def test_heavy_is_found_on_the_smallest_trace() -> None:
    # Five people with a request each minute, one client with 30 a minute.
    log = Log()
    for c in range(5):
        for minute in range(10):
            log.add(minute * 60 + c, f"10.0.0.{c}")
    for k in range(300):
        log.add(k * 2.0, BOT, agent=BOT_AGENT)
    route = advise_ratelimit(log.build()).routes[0]
    assert route.heavy == (BOT,)
    assert HEAVY_FACTOR * 1 < 30  # its busiest minute against the median person's
    assert route.recommendation.refused_heavy_clients == 1
    assert route.recommendation.refused_ordinary_share == 0.0


def test_no_client_near_any_candidate_says_so() -> None:
    advice = advise_ratelimit(bot_trace(), limits=[5000, 1000])
    rec = advice.routes[0].recommendation
    assert (rec.algorithm, rec.limit) == ("sliding_window", 1000)
    assert rec.refused_ordinary_share == 0.0
    assert "no client comes near any candidate" in rec.reason
    assert {c["limit"] for c in advice.routes[0].candidates} == {1000, 5000}


def test_no_candidate_within_the_budget_recommends_the_kindest() -> None:
    advice = advise_ratelimit(bot_trace(), limits=[1], protect=100)
    rec = advice.routes[0].recommendation
    assert rec.limit == 1
    assert rec.refused_ordinary_share > 0
    assert "try higher limits" in rec.reason


def test_the_algorithm_is_sliding_window_unless_another_is_clearly_kinder() -> None:
    advice = advise_ratelimit(bot_trace(), algorithms=["sliding_window", "fixed_window"])
    route = advice.routes[0]
    rec = route.recommendation
    rows = {(c["algorithm"], c["limit"]): c for c in route.candidates}
    if rec.algorithm == "fixed_window":
        other = rows[("sliding_window", rec.limit)]
        assert 2 * rec.refused_ordinary_share <= other["refused_ordinary_share"]
    else:
        assert rec.algorithm == "sliding_window"
        assert "the default" in rec.reason
    # Without sliding_window, the first preferred of those given.
    only = advise_ratelimit(bot_trace(), algorithms=["sliding_log", "fixed_window"])
    assert only.routes[0].recommendation.algorithm in ("fixed_window", "sliding_log")
    assert {c["algorithm"] for c in only.routes[0].candidates} == {"fixed_window", "sliding_log"}


def test_rates_and_bursts_are_per_client_peaks() -> None:
    log = Log()
    for offset in (0.1, 0.2, 0.3, 1.05, 61.0):  # 3 in one second, 4 within 1 s, 4 in a minute
        log.add(offset, "a")
    log.add(10.0, "b")
    route = advise_ratelimit(log.build()).routes[0]
    assert route.requests == 6
    assert route.clients == 2
    assert route.rates["per_second"] == {"p50": 1.0, "p90": 3.0, "p99": 3.0, "max": 3.0}
    assert route.rates["per_minute"]["max"] == 4.0
    assert route.rates["per_hour"] == {"p50": 1.0, "p90": 5.0, "p99": 5.0, "max": 5.0}
    # Bursts: the most within any 1 s span, not aligned (0.1 to 1.05 holds four).
    assert route.burst == {"p50": 1, "p99": 4, "max": 4}


def test_candidate_limits_are_round_numbers_spanning_the_peaks() -> None:
    limits = candidate_limits(3, 40)
    assert len(limits) == 8
    assert limits[0] == 3
    assert limits[-1] == 40
    assert limits == sorted(set(limits))
    assert candidate_limits(1, 1) == [1, 2, 3, 4, 5, 6, 8, 10]
    assert candidate_limits(7, 7)[0] == 6  # the round number at or below
    assert candidate_limits(110, 130) == [100, 120, 150, 200, 250, 300, 400, 500]


def test_max_routes_keeps_the_busiest_and_says_how_many_are_left_out() -> None:
    log = Log()
    people(log, count=6, route="/busy")
    people(log, count=3, route="/quiet", minutes=5)
    people(log, count=2, route="/quieter", minutes=2)
    trace = log.build()
    advice = advise_ratelimit(trace, max_routes=1)
    assert [r.name for r in advice.routes] == ["/busy"]
    assert advice.settings["routes_left_out"] == 2
    assert advice.overall.requests == len(trace)
    assert "2 quieter routes" in advice.overall.recommendation.reason
    assert advise_ratelimit(trace, max_routes=0).routes == ()


def test_requests_without_an_identity_are_left_out_and_counted() -> None:
    log = Log()
    people(log, count=4)
    log.add(5.0, None)
    advice = advise_ratelimit(log.build())
    assert advice.settings["unidentified_requests"] == 1
    assert advice.routes[0].requests == len(log.build()) - 1


def test_progress_counts_every_analysis() -> None:
    log = Log()
    people(log, count=3, route="/a")
    people(log, count=3, route="/b")
    calls: list[tuple[int, int]] = []
    advise_ratelimit(log.build(), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


# -- tiers -----------------------------------------------------------------------------------


def tier_trace() -> Trace:
    log = Log(attributes=(PLAN,))
    for c in range(10):  # free: 2 a minute
        for minute in range(20):
            for k in range(2):
                log.add(minute * 60 + c + k * 20, f"10.1.0.{c}", plan="free")
    for c in range(10):  # pro: 40 a minute
        for minute in range(20):
            for k in range(40):
                log.add(minute * 60 + c + k * 1.2, f"10.2.0.{c}", plan="pro")
    for c in range(3):  # no plan: 1 a minute
        for minute in range(20):
            log.add(minute * 60 + c, f"10.3.0.{c}")
    return log.build()


def test_a_recommendation_per_tier_as_one_tiered_ratelimit() -> None:
    advice = advise_ratelimit(tier_trace(), tier_by=PLAN)
    names = [r.name for r in advice.routes]
    assert names == [
        "/api/search (tier default)",
        "/api/search (tier free)",
        "/api/search (tier pro)",
    ]
    by_tier = {r.tier: r for r in advice.routes}
    assert by_tier["pro"].recommendation.limit > by_tier["free"].recommendation.limit
    codes = {r.recommendation.code for r in advice.routes}
    assert len(codes) == 1  # the route's one TieredRatelimit, on every tier's entry
    (code,) = codes
    call = ast.parse(code).body[0]
    assert isinstance(call, ast.Assign)
    assert isinstance(call.value, ast.Call)
    assert ast.unparse(call.value.func) == "TieredRatelimit"
    tiers = call.value.args[1]
    assert isinstance(tiers, ast.Dict)
    assert [ast.literal_eval(k) for k in tiers.keys if k is not None] == ["default", "free", "pro"]
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.value.keywords}
    assert keywords["default_tier"] == "default"
    for key, value in zip(tiers.keys, tiers.values, strict=True):
        assert key is not None
        rec = by_tier[ast.literal_eval(key)].recommendation
        assert ast.unparse(value) == Candidate(
            rec.algorithm, rec.limit, round(rec.window_s * 1000)
        ).code().replace('"', "'")
    # The overall entry stays untiered.
    assert "Ratelimit(" in advice.overall.recommendation.code
    assert "TieredRatelimit" not in advice.overall.recommendation.code


# -- code: always valid Python, whatever the names -------------------------------------------


HOSTILE = [
    '/x"); import os; os.system("boom") #',
    "/x\\\"\n__import__('os')",
    "/ünïcödé/\u2028/😀",
    "/123/start-with-digits",
    "",
    "/class",
    "/api/x",
    "/api-x",  # the same identifier as the one before
]


def check_code(code: str, head: str, prefix: str | None = None) -> str:
    """``code`` is one assignment of ``head(...)`` to a fresh identifier; its name."""
    module = ast.parse(code)
    assert len(module.body) == 1
    statement = module.body[0]
    assert isinstance(statement, ast.Assign)
    assert len(statement.targets) == 1
    target = statement.targets[0]
    assert isinstance(target, ast.Name)
    assert target.id.isidentifier()
    assert target.id.isascii()
    call = statement.value
    assert isinstance(call, ast.Call)
    assert ast.unparse(call.func) == head
    assert ast.unparse(call.args[0]) == "redis"
    for node in ast.walk(call):  # nothing but literals, names and calls of limiters
        if isinstance(node, ast.Call):
            assert ast.unparse(node.func) in {
                head, "FixedWindow", "SlidingWindow", "TokenBucket", "GCRA", "SlidingLog",
            }  # fmt: skip
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    if prefix is not None:
        assert keywords["prefix"] == prefix
    return target.id


def test_hostile_route_names_give_valid_code_and_distinct_names() -> None:
    log = Log()
    for n, route in enumerate(HOSTILE):
        for c in range(3):
            for k in range(5 + n):
                log.add(k * 7.0 + c, f"10.0.0.{c}", route)
    advice = advise_ratelimit(log.build())
    assert sorted(r.name for r in advice.routes) == sorted(HOSTILE)
    idents = [check_code(advice.overall.recommendation.code, "Ratelimit")]
    for route in advice.routes:
        ident = check_code(route.recommendation.code, "Ratelimit")
        prefix = ast.literal_eval(
            next(
                k.value
                for k in ast.parse(route.recommendation.code).body[0].value.keywords  # type: ignore[attr-defined]
                if k.arg == "prefix"
            )
        )
        assert prefix == "ratelimit:" + ident.removesuffix("_limit")
        idents.append(ident)
    assert len(set(idents)) == len(idents)


def test_hostile_tier_names_are_quoted_safely() -> None:
    log = Log(attributes=(PLAN,))
    tiers = ['pro"}); boom(', "free\n\\", "default", "\x00\u2028😀"]
    for n, tier in enumerate(tiers):
        for k in range(10 * (n + 1)):
            log.add(k * 3.0, f"10.0.{n}.1", plan=tier)
    log.add(1.0, "10.9.9.9")  # no plan, and "default" is taken
    advice = advise_ratelimit(log.build(), tier_by=PLAN)
    code = advice.routes[0].recommendation.code
    check_code(code, "TieredRatelimit")
    call = ast.parse(code).body[0].value  # type: ignore[attr-defined]
    keys = [ast.literal_eval(k) for k in call.args[1].keys]
    assert sorted(keys) == sorted([*tiers, "default_"])
    assert {k.arg: ast.literal_eval(k.value) for k in call.keywords}["default_tier"] == "default_"


# -- the shape -------------------------------------------------------------------------------


def same_shape(made: Any, example: Any, path: str = "") -> None:
    """``made`` has ``example``'s keys and kinds of value, recursively (lists: each item)."""
    if isinstance(example, Mapping):
        assert isinstance(made, Mapping), path
        assert set(made) == set(example), (path, set(made) ^ set(example))
        for key in example:
            same_shape(made[key], example[key], f"{path}.{key}")
    elif isinstance(example, list):
        assert isinstance(made, list), path
        for item in made:
            for model in example[:1]:
                same_shape(item, model, f"{path}[]")
    elif isinstance(example, bool):
        assert isinstance(made, bool), path
    elif isinstance(example, float):
        assert isinstance(made, float), path
        assert math.isfinite(made), path
    elif isinstance(example, int):
        assert isinstance(made, int), path
        assert not isinstance(made, bool), path
    elif isinstance(example, str):
        assert isinstance(made, str), path


def test_to_json_has_the_schema_s_shape_and_renders() -> None:
    advice = advise_ratelimit(bot_trace())
    assert isinstance(advice, RatelimitAdvice)
    data = advice.to_json()
    assert check_schema(data) == "ratelimit"
    settings = data.pop("settings")
    example = {k: v for k, v in RATELIMIT.items() if k != "settings"}
    # The example's only missing values: the trace's malformed examples, which this has none of.
    example["trace"] = {**example["trace"], "malformed_examples": []}
    same_shape(data, example)
    assert set(RATELIMIT["settings"]) <= set(settings)
    assert settings["by"] == "ip"
    assert settings["protect"] == 99.0
    data["settings"] = settings
    text = render_text(data, width=140)
    assert "/api/search" in text
    assert BOT in text
    assert BOT_AGENT in text
    assert advice.routes[0].recommendation.code in text
    page = render_html(data)
    assert "/api/search" in page
    assert BOT in page
    # to_json copies: changing it leaves the advice as it was.
    data["routes"][0]["candidates"].clear()
    assert advice.to_json()["routes"][0]["candidates"]


def test_trace_block() -> None:
    trace = bot_trace()
    block = advise_ratelimit(trace).to_json()["trace"]
    assert block["requests"] == len(trace)
    assert block["lines"] == len(trace)
    assert block["start"] == trace.start
    assert block["end"] == trace.end
    assert block["duration_s"] == pytest.approx(trace.end - trace.start)
    assert (block["source"], block["format"], block["malformed"]) == ("hand.log", "combined", 0)


# -- bad arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"protect": -1}, "protect"),
        ({"protect": 100.5}, "protect"),
        ({"protect": math.nan}, "protect"),
        ({"protect": True}, "protect"),
        ({"protect": "99"}, "protect"),
        ({"by": "header:X-Nope"}, "by="),
        ({"by": "user"}, "by="),  # no request names a user
        ({"algorithms": ["leaky_bucket"]}, "algorithms"),
        ({"algorithms": []}, "algorithms"),
        ({"algorithms": "gcra"}, "algorithms"),
        ({"windows": ["soon"]}, "windows"),
        ({"windows": [0]}, "windows"),
        ({"windows": []}, "windows"),
        ({"limits": [0]}, "limits"),
        ({"limits": [2.5]}, "limits"),
        ({"limits": []}, "limits"),
        ({"tier_by": "header:X-Plan"}, "tier_by"),
        ({"max_routes": -1}, "max_routes"),
        ({"progress": 3}, "progress"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(options: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        advise_ratelimit(bot_trace(), **options)


def test_an_empty_trace_is_an_error_naming_it() -> None:
    with pytest.raises(InvalidArgumentError, match="trace"):
        advise_ratelimit(TraceBuilder("empty.log", "combined").build())
    with pytest.raises(InvalidArgumentError, match="trace"):
        advise_ratelimit("access.log")  # type: ignore[arg-type]
