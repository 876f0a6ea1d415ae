"""The cache advice: each rule deciding on a small trace, the schema, the code, bad arguments."""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Iterable
from typing import Any

import pytest

from redkit.advise import CacheAdvice, advise_cache, render_html, render_text
from redkit.advise.cache_advice import (
    LOCAL_SHARE,
    CacheRecommendation,
    NamespaceAdvice,
    budgets_for,
    cache_code,
    duration_text,
)
from redkit.advise.cache_sim import CacheSimulation
from redkit.advise.report import check_schema
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from redkit.core.errors import InvalidArgumentError
from redkit.core.keys import check_prefix
from support.advise_examples import CACHE
from support.cache_traces import START, zipf_trace

A = "/api/items/{id}"


def build(rows: Iterable[tuple[float, Op, str, str, int | None]]) -> Trace:
    """A trace of ``(seconds from START, op, key, namespace, size)`` rows."""
    builder = TraceBuilder("hand", "test")
    for line, (t, op, key, namespace, size) in enumerate(rows, 1):
        builder.add(Request(START + t, line, op, key, namespace, size=size))
    return builder.build()


def pairs(n: int, gap: float, *, size: int | None = 100, namespace: str = A) -> Trace:
    """``n`` keys, each read twice ``gap`` seconds apart (the keys one minute apart)."""
    rows = []
    for i in range(n):
        key = namespace.replace("{id}", str(i))
        rows += [
            (60.0 * i, Op.READ, key, namespace, size),
            (60.0 * i + gap, Op.READ, key, namespace, size),
        ]
    return build(rows)


def every(step: float, span: float, *, key: str = "/api/items/1", size: int | None = 100) -> Trace:
    """One key read every ``step`` seconds for ``span`` seconds."""
    count = round(span / step)
    return build((i * step, Op.READ, key, A, size) for i in range(count))


def rec(advice: CacheAdvice, index: int = 0) -> CacheRecommendation:
    return advice.namespaces[index].recommendation


# --- the TTL rule -----------------------------------------------------------------------------


def test_the_knee_decides_without_writes() -> None:
    # Each key is read twice 10 s apart: every TTL from 15 s up gets the same hits.
    advice = advise_cache(pairs(20, 10.0), ttls=(5, 15, 60, 600))
    chosen = rec(advice)
    assert chosen.ttl_s == 15.0
    assert chosen.hit_ratio == 0.5
    assert chosen.stale_hit_share is None
    assert "no writes in the trace" in chosen.reason
    assert "0.5 points" in chosen.reason
    assert advice.namespaces[0].writes_seen is False


def test_the_knee_decides_with_writes_that_never_make_a_hit_stale() -> None:
    rows = [(t, Op.READ, k, ns, s) for t, _, k, ns, s in _rows(pairs(20, 10.0))]
    rows.append((5000.0, Op.WRITE, "/api/items/0", A, None))  # after every read
    advice = advise_cache(build(rows), ttls=(5, 15, 60, 600))
    chosen = rec(advice)
    assert advice.namespaces[0].writes_seen
    assert chosen.ttl_s == 15.0
    assert chosen.stale_hit_share == 0.0
    assert "the shortest TTL within 0.5 points" in chosen.reason


def test_the_longest_ttl_tried_says_so() -> None:
    # A read every 10 s: each longer TTL adds hits, so the longest tried wins.
    chosen = rec(advise_cache(every(10.0, 600.0), ttls=(5, 15)))
    assert chosen.ttl_s == 15.0
    assert "the longest TTL tried" in chosen.reason


def _rows(trace: Trace) -> list[tuple[float, Op, str, str, int | None]]:
    return [(r.time - START, r.op, r.key, r.namespace, r.size) for r in trace.requests()]


def test_the_staleness_share_decides() -> None:
    trace = zipf_trace(4000, 200, seed=3, write_share=0.05, namespaces=(A,), span_s=3600)
    ttls = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
    rows = CacheSimulation(trace).ttl_rows(ttls)[0]
    shares = [r.stale_hit_share for r in rows]
    assert all(s is not None for s in shares)
    # A share between those of 30 s and 60 s: 30 s is the longest that stays under it.
    low, high = shares[3], shares[4]
    assert low is not None
    assert high is not None
    assert low < high
    assert rows[4].hit_ratio > rows[3].hit_ratio + 0.005  # 60 s would add hits
    advice = advise_cache(trace, ttls=ttls, max_stale_share=(low + high) / 2)
    chosen = rec(advice)
    assert chosen.ttl_s == 30.0
    assert chosen.stale_hit_share == low
    assert "stale without invalidation" in chosen.reason
    assert "30 s gets the most hits" in chosen.reason


def test_no_ttl_fresh_enough_takes_the_shortest() -> None:
    trace = zipf_trace(4000, 200, seed=3, write_share=0.05, namespaces=(A,))
    advice = advise_cache(trace, ttls=(5, 60), max_stale_share=0.0)
    chosen = rec(advice)
    assert chosen.ttl_s == 5.0
    assert chosen.stale_hit_share is not None
    assert chosen.stale_hit_share > 0
    assert "even the shortest TTL" in chosen.reason


def test_the_memory_budget_decides() -> None:
    trace = zipf_trace(4000, 300, seed=5, write_share=0.0, namespaces=(A,))
    ttls = (15.0, 60.0, 300.0, 3600.0)
    rows = CacheSimulation(trace).ttl_rows(ttls)[0]
    memory = [r.peak_memory_bytes for r in rows]
    assert all(m is not None for m in memory)
    low, high = memory[1], memory[2]
    assert low is not None
    assert high is not None
    assert low < high
    assert rows[2].hit_ratio > rows[1].hit_ratio + 0.005
    budget = (low + high) // 2
    advice = advise_cache(trace, ttls=ttls, budget=budget)
    chosen = rec(advice)
    assert chosen.ttl_s == 60.0
    assert "budget at their peak" in chosen.reason
    assert advice.settings["budget_bytes"] == budget
    # The budget is among those tried at the TTL, and four are.
    budgets = {r.budget_bytes for r in advice.namespaces[0].memory_rows}
    assert budget in budgets
    assert len(budgets) == 4


def test_a_budget_no_ttl_fits_lets_eviction_trim() -> None:
    trace = zipf_trace(2000, 300, seed=5, write_share=0.0, namespaces=(A,))
    advice = advise_cache(trace, ttls=(60, 600), budget=100)
    chosen = rec(advice)
    assert "no TTL's peak memory fits" in chosen.reason
    assert chosen.memory_bytes is not None
    assert chosen.memory_bytes > 100
    assert "more than the 100 B budget" in chosen.reason


# --- early refresh, stale_ttl, local tier -----------------------------------------------------


def test_early_refresh_when_reads_pile_up_behind_expiries() -> None:
    # A read every 10 ms: each expiry miss has four reads waiting on its 50 ms load.
    advice = advise_cache(every(0.01, 20.0), ttls=(1,), loader_ms=50)
    chosen = rec(advice)
    assert advice.namespaces[0].refresh.early_refresh_hits > 0
    assert chosen.early_refresh is True
    assert "early_refresh=1.0" in chosen.code
    assert "early refresh would answer" in chosen.reason


def test_no_early_refresh_when_nobody_waits() -> None:
    advice = advise_cache(every(10.0, 600.0), ttls=(15,))
    chosen = rec(advice)
    assert advice.namespaces[0].refresh.early_refresh_hits == 0
    assert chosen.early_refresh is False
    assert "early_refresh=None" in chosen.code


def test_stale_ttl_when_it_answers_reads() -> None:
    # Read every 10 s, TTL 5 s: each miss comes 5 s after the expiry, inside 30 s.
    advice = advise_cache(every(10.0, 300.0), ttls=(5,), max_stale="30 s")
    chosen = rec(advice)
    assert advice.namespaces[0].refresh.stale_ttl_hits > 0
    assert chosen.stale_ttl_s == 30.0
    assert 'stale_ttl="30 s"' in chosen.code
    assert advice.settings["max_stale_s"] == 30.0


def test_no_stale_ttl_when_it_answers_nothing_or_is_not_allowed() -> None:
    # Read every 100 s, TTL 5 s: each miss is 95 s past the expiry, beyond 30 s.
    sparse = advise_cache(every(100.0, 3000.0), ttls=(5,), max_stale=30)
    assert sparse.namespaces[0].refresh.stale_ttl_hits == 0
    assert rec(sparse).stale_ttl_s is None
    assert "stale_ttl" not in rec(sparse).code
    dense = advise_cache(every(10.0, 300.0), ttls=(5,), max_stale=None)
    assert rec(dense).stale_ttl_s is None
    assert dense.namespaces[0].refresh.stale_ttl_s is None
    assert advise_cache(every(10.0, 300.0), ttls=(5,), max_stale="0s").settings["max_stale_s"] == 0


def test_local_tier_when_most_reads_repeat_within_it() -> None:
    # A read every second: a 5 s local copy answers four reads in five. The TTL (60 s) is the
    # only one tried, so the 5 s replay is an extra one.
    advice = advise_cache(every(1.0, 600.0), ttls=(60,))
    chosen = rec(advice)
    assert chosen.local_ttl_s == 5.0
    assert 'local_ttl="5 s"' in chosen.code
    assert "local tier of 5 s" in chosen.reason
    assert [r.ttl_s for r in advice.namespaces[0].ttl_rows] == [60.0]


def test_no_local_tier_when_reads_are_far_apart() -> None:
    advice = advise_cache(every(10.0, 600.0), ttls=(5, 15, 60))
    chosen = rec(advice)
    assert chosen.hit_ratio > LOCAL_SHARE  # Redis hits, but none within 5 s of a load
    assert chosen.local_ttl_s is None
    assert "local_ttl" not in chosen.code


# --- memory -----------------------------------------------------------------------------------


def test_memory_is_the_smallest_budget_within_a_point_under_lru() -> None:
    trace = zipf_trace(3000, 400, seed=9, write_share=0.02, namespaces=(A,))
    advice = advise_cache(trace, ttls=(300,))
    ns = advice.namespaces[0]
    lru = sorted(
        (r for r in ns.memory_rows if r.policy == "allkeys-lru"), key=lambda r: r.budget_bytes
    )
    assert len(lru) == 4
    assert {r.policy for r in ns.memory_rows} == {"allkeys-lru", "allkeys-lfu", "volatile-ttl"}
    unbounded = ns.ttl_rows[0].hit_ratio
    expected = next(r.budget_bytes for r in lru if r.hit_ratio >= unbounded - 0.01 - 1e-9)
    assert ns.recommendation.memory_bytes == expected
    assert lru[-1].budget_bytes == ns.ttl_rows[0].peak_memory_bytes
    assert lru[0].hit_ratio < unbounded  # the smallest budget does evict


def test_budgets_tried() -> None:
    assert budgets_for(800, None) == [100, 200, 400, 800]
    assert budgets_for(800, 1000) == [200, 400, 800, 1000]
    assert budgets_for(800, 190) == [100, 190, 400, 800]  # 190 takes 200's place
    assert budgets_for(3, None) == [1, 2, 3]


def test_no_sizes_no_memory() -> None:
    advice = advise_cache(pairs(10, 10.0, size=None), ttls=(15, 60))
    ns = advice.namespaces[0]
    assert ns.mean_bytes is None
    assert ns.memory_rows == []
    assert ns.recommendation.memory_bytes is None
    assert all(r.peak_bytes is None for r in ns.ttl_rows)
    assert "no sizes" in ns.recommendation.reason
    check_text_and_html(advice)


# --- edges, schema, rendering -----------------------------------------------------------------


def keys_like(value: Any, example: Any, where: str = "") -> None:
    """``value`` has the shape of ``example``: the same keys, recursively, lists by their first."""
    if isinstance(example, dict):
        assert isinstance(value, dict), where
        assert set(value) == set(example), where
        for key in example:
            keys_like(value[key], example[key], f"{where}.{key}")
    elif isinstance(example, list) and example and value:
        for item in value:
            keys_like(item, example[0], f"{where}[]")


def check_text_and_html(advice: CacheAdvice) -> dict[str, Any]:
    data = advice.to_json()
    assert check_schema(data) == "cache"
    keys_like(data, CACHE)
    again = json.loads(json.dumps(data, allow_nan=False))
    assert again == data
    text = render_text(data)
    assert "Cache advice" in text
    for ns in data["namespaces"]:
        assert ns["recommendation"]["code"].splitlines()[0] in text
    page = render_html(data)
    assert page.lstrip().lower().startswith("<!doctype html")
    return data


def test_real_advice_renders_and_has_the_schema() -> None:
    trace = zipf_trace(3000, 300, seed=2, namespaces=(A, "/api/users/{id}"))
    advice = advise_cache(trace, budget="1 MiB", max_stale="30s", ttls=(5, "1 m", "5m", 3600))
    data = check_text_and_html(advice)
    assert [ns["name"] for ns in data["namespaces"]] == [ns.name for ns in advice.namespaces]
    assert {ns["name"] for ns in data["namespaces"]} == {A, "/api/users/{id}"}
    assert data["overall"]["name"] == "(all)"
    assert data["settings"] == {
        "budget_bytes": 1024 * 1024,
        "max_stale_s": 30.0,
        "loader_ms": 50.0,
        "ttls_s": [5.0, 60.0, 300.0, 3600.0],
        "unread_namespaces": [],
    }
    assert data["trace"]["requests"] == 3000
    assert 'namespace="cache"' in data["overall"]["recommendation"]["code"]
    assert {
        ast.literal_eval(kw.value)
        for ns in data["namespaces"]
        for kw in call_of(ns["recommendation"]["code"]).keywords
        if kw.arg == "namespace"
    } == {"items", "users"}


def test_an_empty_trace() -> None:
    empty = TraceBuilder("empty.log", "combined").build()
    advice = advise_cache(empty)
    assert advice.namespaces == []
    assert advice.overall.reads == 0
    assert advice.overall.memory_rows == []
    assert "no reads" in advice.overall.recommendation.reason
    data = check_text_and_html(advice)
    assert data["trace"]["start"] is None


def test_a_namespace_of_writes_only_and_progress() -> None:
    rows = [
        (0.0, Op.READ, "/api/items/1", A, 10),
        (1.0, Op.READ, "/api/items/1", A, 10),
        (2.0, Op.WRITE, "/api/orders/1", "/api/orders/{id}", None),
    ]
    calls: list[tuple[int, int]] = []
    advice = advise_cache(build(rows), ttls=(5,), progress=lambda d, t: calls.append((d, t)))
    # Nobody reads it: nothing to cache, so it is named, not advised.
    assert [ns.name for ns in advice.namespaces] == [A]
    assert advice.settings["unread_namespaces"] == ["/api/orders/{id}"]
    assert advice.overall.writes == 1
    data = check_text_and_html(advice)
    text = render_text(data, width=200)
    assert "Not advised, nobody reads them: /api/orders/{id}" in text
    assert "Not advised, nobody reads them: /api/orders/{id}." in render_html(data)
    assert calls[0][0] == 0
    assert calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    only = advise_cache(build(rows), ttls=(5,), namespaces=[A])
    assert [ns.name for ns in only.namespaces] == [A]


# --- the code ---------------------------------------------------------------------------------


def call_of(code: str) -> ast.Call:
    """The ``Cache(...)`` call of ``code``, after checking it is one plain assignment."""
    tree = ast.parse(code)
    assert len(tree.body) == 1
    statement = tree.body[0]
    assert isinstance(statement, ast.Assign)
    assert isinstance(statement.targets[0], ast.Name)
    call = statement.value
    assert isinstance(call, ast.Call)
    assert isinstance(call.func, ast.Name)
    assert call.func.id == "Cache"
    assert [type(a) for a in call.args] == [ast.Name]
    assert isinstance(call.args[0], ast.Name)
    assert call.args[0].id == "redis"
    for kw in call.keywords:
        assert isinstance(kw.value, ast.Constant), ast.dump(kw.value)
    return call


HOSTILE = [
    "/api/users/{id}",
    "/api/users",
    "/a\"b'c/{id}",
    '/x"); import os; os.system("echo pwned"); ("',
    "/\\{evil}\\n/{id}",
    "/ünïcødé/{id}",
    "/日本語/{id}",
    "/\u202eright-to-left\u0000/{id}",
    "/class/{id}",
    "/import",
    "/redis",
    "/Cache",
    "/print",
    "/2fa/{id}",
    "/",
    "",
    "{}{}{}",
    "myapp:users",
    "/" + "very-long-" * 30,
]


def test_hostile_namespace_names_give_valid_distinct_code() -> None:
    rows = []
    for i, name in enumerate(HOSTILE):
        # No sizes: the eviction replays (a libCacheSim cache each) are not what this tests.
        rows += [(float(i), Op.READ, f"k{i}", name, None), (i + 0.5, Op.READ, f"k{i}", name, None)]
    advice = advise_cache(build(rows), ttls=(5,))
    assert len(advice.namespaces) == len(HOSTILE)
    variables, namespaces = set(), set()
    for ns in [advice.overall, *advice.namespaces]:
        code = ns.recommendation.code
        call = call_of(code)
        statement = ast.parse(code).body[0]
        assert isinstance(statement, ast.Assign)
        assert isinstance(statement.targets[0], ast.Name)
        variable = statement.targets[0].id
        assert variable.isidentifier()
        assert variable not in ("redis", "Cache", "print", "class", "import")
        settings = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        check_prefix(settings["namespace"])  # a namespace redkit takes
        variables.add(variable)
        namespaces.add(settings["namespace"])
        assert settings["default_ttl"] == "5 s"
    assert len(variables) == len(namespaces) == len(HOSTILE) + 1
    assert "myapp:users" in namespaces  # already a redkit namespace: kept
    assert {"users", "users_2"} <= namespaces


def test_a_recorded_namespace_keeps_its_name_before_derived_ones() -> None:
    # "cache" is Cache's default namespace, and what the whole trace's code would be called;
    # "users" is what /api/users/{id} would become.
    names = ["/api/users/{id}", "cache", "users"]
    rows = []
    for i, name in enumerate(names):
        rows += [(float(i), Op.READ, f"k{i}", name, None), (i + 0.5, Op.READ, f"k{i}", name, None)]
    advice = advise_cache(build(rows), ttls=(5,))

    def namespace_of(ns: NamespaceAdvice) -> str:
        call = call_of(ns.recommendation.code)
        return next(ast.literal_eval(k.value) for k in call.keywords if k.arg == "namespace")

    by_name = {ns.name: namespace_of(ns) for ns in advice.namespaces}
    assert by_name == {"cache": "cache", "users": "users", "/api/users/{id}": "users_2"}
    assert namespace_of(advice.overall) == "cache_2"


def test_cache_code_quotes_any_namespace() -> None:
    for namespace in ['a"b', "a\\b", "x\ny", "é", '"""', "\udc80"]:
        code = cache_code("ns", namespace, 30, early_refresh=True, stale_ttl_s=None, local_ttl_s=1)
        call = call_of(code)
        settings = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        assert settings == {
            "namespace": namespace,
            "default_ttl": "30 s",
            "early_refresh": 1.0,
            "local_ttl": "1 s",
        }
    with pytest.raises(InvalidArgumentError, match="variable"):
        cache_code("not valid", "n", 1, early_refresh=True, stale_ttl_s=None, local_ttl_s=None)


def test_code_is_one_line_when_short_and_split_when_long() -> None:
    short = cache_code(
        "p", "products", 3600, early_refresh=True, stale_ttl_s=None, local_ttl_s=None
    )
    assert short == 'p = Cache(redis, namespace="products", default_ttl="1 h", early_refresh=1.0)'
    long = cache_code("users", "users", 300, early_refresh=True, stale_ttl_s=30, local_ttl_s=5)
    assert long == (
        'users = Cache(\n    redis,\n    namespace="users",\n    default_ttl="5 m",\n'
        '    early_refresh=1.0,\n    stale_ttl="30 s",\n    local_ttl="5 s",\n)'
    )


def test_duration_text() -> None:
    assert [duration_text(s) for s in (0.25, 1, 30, 90, 300, 3600, 5400, 86400, 1.5)] == [
        "250 ms", "1 s", "30 s", "90 s", "5 m", "1 h", "90 m", "1 d", "1500 ms",
    ]  # fmt: skip


# --- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"budget": -1}, "budget"),
        ({"budget": 0}, "budget"),
        ({"budget": "lots"}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"budget": True}, "budget"),
        ({"max_stale": -5}, "max_stale"),
        ({"max_stale": "soon"}, "max_stale"),
        ({"max_stale": math.nan}, "max_stale"),
        ({"loader_ms": -1}, "loader_ms"),
        ({"loader_ms": "50"}, "loader_ms"),
        ({"ttls": "5m"}, "ttls"),
        ({"ttls": ()}, "ttls"),
        ({"ttls": (5, 0)}, r"ttls\[1\]"),
        ({"ttls": ("forever",)}, r"ttls\[0\]"),
        ({"ttls": (None,)}, r"ttls\[0\]"),
        ({"max_stale_share": 2}, "max_stale_share"),
        ({"max_stale_share": -0.1}, "max_stale_share"),
        ({"namespaces": A}, "namespaces"),
        ({"namespaces": ["/nope"]}, "namespaces"),
        ({"namespaces": [1]}, "namespaces"),
        ({"progress": "yes"}, "progress"),
    ],
)
def test_bad_arguments_name_themselves(options: dict[str, Any], name: str) -> None:
    with pytest.raises(InvalidArgumentError, match=name):
        advise_cache(pairs(2, 10.0), **options)


def test_a_trace_is_required() -> None:
    with pytest.raises(InvalidArgumentError, match="trace"):
        advise_cache([])  # type: ignore[arg-type]


def test_a_sized_libcachesim_table_gives_the_same_hits() -> None:
    # memory_rows sizes libCacheSim's hash table to the keys (fast); its default 2**24 buckets
    # must give the very same hits.
    trace = zipf_trace(3000, 500, seed=11, write_share=0.03)
    sim = CacheSimulation(trace)
    rows = sim.memory_rows(sim.OVERALL, 300.0, [2000, 20000, 200000])
    events, reads, rate = sim._scope_events(sim.OVERALL, exact=False)
    assert rate == 1.0  # small enough to replay whole
    for row in rows:
        hits = sim._evict(events, row.policy, row.budget_bytes, 300.0, hashpower=24)
        assert row.hit_ratio == hits / reads
    assert len({r.hit_ratio for r in rows}) > 1  # the budgets do differ
