"""The cache advice's code, pasted: it builds a real Cache, with exactly the advised settings."""

from __future__ import annotations

from typing import Any

from redkit import Cache
from redkit.advise import Op, Request, TraceBuilder, advise_cache
from redkit.advise.cache_advice import NamespaceAdvice
from redkit.drivers.connect import Connection
from support.cache_traces import START

#: Namespaces a log could hold, hostile ones among them.
NAMES = [
    "/api/users/{id}",
    "/api/users",
    '/x"); import os; os.system("echo pwned"); ("',
    "/日本語/{id}",
    "/class/{id}",
    "/redis",
    "myapp:products",
]


def busy_trace() -> Any:
    """Each namespace read in its own rhythm, so the advice differs between them.

    - a read every 10 ms for 20 s: reads pile up behind each expiry (early refresh) and
      repeat within 5 s (a local tier);
    - a read every 10 s, TTLs of 5 s tried too: misses just after an expiry (stale_ttl);
    - the others: a read every 2 s, written now and then.
    """
    builder = TraceBuilder("hand", "test")
    line = 0

    def add(t: float, op: Op, key: str, namespace: str) -> None:
        nonlocal line
        line += 1
        size = None if op == Op.WRITE else 200
        builder.add(Request(START + t, line, op, key, namespace, size=size))

    for i in range(2000):
        add(i * 0.01, Op.READ, "/api/users/1", NAMES[0])
    for i in range(30):
        add(i * 10.0, Op.READ, "/api/users", NAMES[1])
    for n, name in enumerate(NAMES[2:], 2):
        for i in range(100):
            add(i * 2.0 + n / 10, Op.READ, f"k{n}", name)
            if i % 25 == 24:
                add(i * 2.0 + n / 10 + 0.5, Op.WRITE, f"k{n}", name)
    return builder.build()


def expected_settings(ns: NamespaceAdvice) -> dict[str, Any]:
    rec = ns.recommendation
    return {
        "default_ttl_ms": round(rec.ttl_s * 1000),
        "early_refresh": 1.0 if rec.early_refresh else None,
        "stale_ms": None if rec.stale_ttl_s is None else round(rec.stale_ttl_s * 1000),
        "local_ttl_s": rec.local_ttl_s,
    }


def built_settings(cache: Cache) -> dict[str, Any]:
    flows = cache._flows
    # The TTLs and the XFetch factor are the entries' (how values are stored and judged).
    return {
        "default_ttl_ms": flows.entries.default_ttl_ms,
        "early_refresh": flows.entries.early_refresh,
        "stale_ms": flows.entries.stale_ms,
        "local_ttl_s": None if flows.local is None else flows.local.ttl_s,
    }


def test_each_recommendations_code_builds_that_cache(conn: Connection) -> None:
    advice = advise_cache(busy_trace(), max_stale="30 s", ttls=(1, 5, 15, 60, 300))
    scopes = [advice.overall, *advice.namespaces]
    assert len(advice.namespaces) == len(NAMES)
    recs = [ns.recommendation for ns in scopes]
    # The trace makes every option appear, so each is checked on a real Cache.
    assert any(r.early_refresh for r in recs)
    assert not all(r.early_refresh for r in recs)
    assert any(r.stale_ttl_s is not None for r in recs)
    assert any(r.local_ttl_s is not None for r in recs)
    namespaces = set()
    for ns in scopes:
        # What a user does: import redkit's names, bind redis, paste the code.
        env: dict[str, Any] = {}
        exec("from redkit import Cache", env)
        env["redis"] = conn
        before = set(env)
        exec(ns.recommendation.code, env)
        (variable,) = set(env) - before
        cache = env[variable]
        try:
            assert isinstance(cache, Cache)
            assert built_settings(cache) == expected_settings(ns)
            namespaces.add(cache._flows.namespace)
            # And it caches, under its own namespace.
            assert cache.get_or_set("k", lambda name=ns.name: {"from": name}) == {"from": ns.name}
            assert cache.get("k") == {"from": ns.name}
        finally:
            cache.close()
        assert env["redis"] is conn  # the code did not rebind the connection
    assert len(namespaces) == len(scopes)
    assert "myapp:products" in namespaces
