"""Advice dicts as ``CacheAdvice.to_json()`` and ``RatelimitAdvice.to_json()`` give them.

Written by hand to the schema of docs/advise.md ("redkit.advise/1"), with realistic numbers: an
hour of a combined log, two namespaces (one written to, one never), two routes and a bot. The
renderers are tested on these, on copies with every nullable field set to ``None``
(:func:`with_nulls`) and with every list emptied (:func:`emptied`).
"""

from __future__ import annotations

import copy
from typing import Any

MiB = 1024 * 1024
TTLS = [1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0]
START = 1764666000.0  # 2025-12-02 09:00:00Z
DURATION = 3600.0

TRACE: dict[str, Any] = {
    "source": "access.log",
    "format": "combined",
    "requests": 120000,
    "lines": 120004,
    "malformed": 4,
    "malformed_examples": [
        {"line": 17, "reason": "no timestamp", "text": '10.0.0.9 - - "GET / HTTP/1.1" 200'},
        {"line": 2291, "reason": "status is not a number", "text": "10.0.0.3 - - [02/Dec/2025"},
        {"line": 50110, "reason": "truncated line", "text": "10.0.0.4 - -"},
        {"line": 118002, "reason": "no request line", "text": "-"},
    ],
    "start": START,
    "end": START + DURATION,
    "duration_s": DURATION,
}


def _ttl_rows(
    reads: int, ratios: list[float], stale: list[float] | None, mean_bytes: float
) -> list[dict[str, Any]]:
    rows = []
    for index, (ttl, ratio) in enumerate(zip(TTLS, ratios, strict=True)):
        hits = round(reads * ratio)
        misses = reads - hits
        rows.append(
            {
                "ttl_s": ttl,
                "hits": hits,
                "misses": misses,
                "hit_ratio": hits / reads,
                "origin_load_per_s": misses / DURATION,
                "stale_hit_share": None if stale is None else stale[index],
                "peak_bytes": round(mean_bytes * min(misses, 400 + 900 * index)),
                "coalesced": misses // 40,
            }
        )
    return rows


def _memory_rows(ttl: float, best: float) -> list[dict[str, Any]]:
    rows = []
    for budget, factor in ((16 * MiB, 0.78), (64 * MiB, 0.93), (256 * MiB, 1.0), (1024 * MiB, 1.0)):
        for policy, penalty in (
            ("allkeys-lru", 0.0),
            ("allkeys-lfu", -0.01),
            ("volatile-ttl", 0.04),
        ):
            ratio = max(0.0, min(best, best * factor - penalty))
            rows.append(
                {"budget_bytes": budget, "policy": policy, "ttl_s": ttl, "hit_ratio": ratio}
            )
    return rows


USERS_RATIOS = [0.12, 0.35, 0.48, 0.63, 0.72, 0.8, 0.873, 0.9, 0.93, 0.945, 0.96, 0.962]
USERS_STALE = [0.0, 0.0, 0.0, 0.0005, 0.001, 0.002, 0.0041, 0.009, 0.024, 0.051, 0.12, 0.19]
USERS: dict[str, Any] = {
    "name": "/api/users/{id}",
    "requests": 80000,
    "reads": 76000,
    "writes": 4000,
    "keys": 12000,
    "mean_bytes": 1250.5,
    "writes_seen": True,
    "ttl_rows": _ttl_rows(76000, USERS_RATIOS, USERS_STALE, 1250.5),
    "memory_rows": _memory_rows(300.0, 0.873),
    "refresh": {
        "ttl_s": 300.0,
        "early_refresh_hits": 1830,
        "stale_ttl_s": 30.0,
        "stale_ttl_hits": 950,
    },
    "recommendation": {
        "ttl_s": 300.0,
        "early_refresh": True,
        "stale_ttl_s": 30.0,
        "local_ttl_s": 5.0,
        "memory_bytes": 64 * MiB,
        "hit_ratio": 0.873,
        "stale_hit_share": 0.0041,
        "reason": "the longest TTL whose stale hits stay under the 30 s budget; 64 MiB holds "
        "93 % of what an unlimited cache would",
        "code": 'users = Cache(\n    redis,\n    namespace="users",\n    default_ttl="5 m",\n'
        '    early_refresh=1.0,\n    stale_ttl="30 s",\n    local_ttl="5 s",\n)',
    },
}

PRODUCTS_RATIOS = [0.2, 0.41, 0.55, 0.7, 0.78, 0.84, 0.9, 0.93, 0.95, 0.966, 0.975, 0.977]
PRODUCTS: dict[str, Any] = {
    "name": "/api/products/{id}",
    "requests": 40000,
    "reads": 40000,
    "writes": 0,
    "keys": 3100,
    "mean_bytes": 8400.0,
    "writes_seen": False,
    "ttl_rows": _ttl_rows(40000, PRODUCTS_RATIOS, None, 8400.0),
    "memory_rows": _memory_rows(3600.0, 0.966),
    "refresh": {
        "ttl_s": 3600.0,
        "early_refresh_hits": 310,
        "stale_ttl_s": None,
        "stale_ttl_hits": 0,
    },
    "recommendation": {
        "ttl_s": 3600.0,
        "early_refresh": True,
        "stale_ttl_s": None,
        "local_ttl_s": None,
        "memory_bytes": 256 * MiB,
        "hit_ratio": 0.966,
        "stale_hit_share": None,
        "reason": "no writes in the trace, so staleness is unknown: the TTL is the longest "
        "that still adds hits",
        "code": 'products = Cache(redis, namespace="products", default_ttl="1 h", '
        "early_refresh=1.0)",
    },
}

OVERALL_RATIOS = [0.147, 0.37, 0.5, 0.65, 0.74, 0.81, 0.882, 0.91, 0.937, 0.952, 0.965, 0.967]
OVERALL: dict[str, Any] = {
    **copy.deepcopy(USERS),
    "name": "(all)",
    "requests": 120000,
    "reads": 116000,
    "keys": 15100,
    "mean_bytes": 3715.9,
    "ttl_rows": _ttl_rows(116000, OVERALL_RATIOS, USERS_STALE, 3715.9),
}

CACHE: dict[str, Any] = {
    "schema": "redkit.advise/1",
    "kind": "cache",
    "trace": TRACE,
    "settings": {
        "budget_bytes": 256 * MiB,
        "max_stale_s": 30.0,
        "loader_ms": 50.0,
        "ttls_s": TTLS,
        "unread_namespaces": ["/api/login"],
    },
    "overall": OVERALL,
    "namespaces": [USERS, PRODUCTS],
}


def _candidates(route_requests: int) -> list[dict[str, Any]]:
    rows = []
    for algorithm, bias in (
        ("fixed_window", 1.15),
        ("sliding_window", 1.0),
        ("token_bucket", 0.95),
        ("gcra", 0.97),
        ("sliding_log", 0.9),
    ):
        for limit, refused in ((30, 0.21), (60, 0.12), (120, 0.061), (240, 0.02)):
            share = min(1.0, refused * bias)
            rows.append(
                {
                    "algorithm": algorithm,
                    "limit": limit,
                    "window_s": 60.0,
                    "refused_requests_share": share,
                    "refused_clients_share": share / 6,
                    "refused_ordinary_share": share / 10,
                    "refused_top": [
                        {"client": "203.0.113.66", "refused": round(route_requests * share * 0.8)},
                        {"client": "198.51.100.7", "refused": round(route_requests * share * 0.1)},
                    ],
                }
            )
    return rows


TALKERS = [
    {
        "client": "203.0.113.66",
        "requests": 9100,
        "share": 0.182,
        "user_agent": "python-requests/2.31",
    },
    {"client": "198.51.100.7", "requests": 2100, "share": 0.042, "user_agent": "Googlebot/2.1"},
    {
        "client": "192.0.2.14",
        "requests": 640,
        "share": 0.0128,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
    },
    {"client": "192.0.2.99", "requests": 410, "share": 0.0082, "user_agent": None},
]

SEARCH: dict[str, Any] = {
    "name": "GET /api/search",
    "requests": 50000,
    "clients": 1200,
    "rates": {
        "per_second": {"p50": 0.0, "p90": 1.0, "p99": 3.0, "max": 41.0},
        "per_minute": {"p50": 2.0, "p90": 9.0, "p99": 38.0, "max": 1480.0},
        "per_hour": {"p50": 11.0, "p90": 64.0, "p99": 520.0, "max": 9100.0},
    },
    "burst": {"p50": 1, "p99": 6, "max": 52},
    "top_talkers": TALKERS,
    "candidates": _candidates(50000),
    "recommendation": {
        "algorithm": "sliding_window",
        "limit": 120,
        "window_s": 60.0,
        "refused_ordinary_share": 0.0061,
        "refused_heavy_clients": 2,
        "reason": "the lowest limit that refuses under 1 % of ordinary clients' requests; it "
        "caps the two heaviest clients (a script and a crawler)",
        "code": 'search_limit = Ratelimit(redis, SlidingWindow(120, "60 s"))',
    },
}

LOGIN: dict[str, Any] = {
    **copy.deepcopy(SEARCH),
    "name": "POST /api/login",
    "requests": 3000,
    "clients": 900,
    "top_talkers": TALKERS[2:],
    "candidates": _candidates(3000)[:8],
    "recommendation": {
        "algorithm": "fixed_window",
        "limit": 30,
        "window_s": 60.0,
        "refused_ordinary_share": 0.0,
        "refused_heavy_clients": 0,
        "reason": "no client comes near any candidate; the smallest one costs nobody",
        "code": 'login_limit = Ratelimit(redis, FixedWindow(30, "60 s"))',
    },
}

RATELIMIT: dict[str, Any] = {
    "schema": "redkit.advise/1",
    "kind": "ratelimit",
    "trace": copy.deepcopy(TRACE),
    "settings": {"by": "ip", "protect": 99.0},
    "overall": {**copy.deepcopy(SEARCH), "name": "(all)", "requests": 120000, "clients": 1400},
    "routes": [SEARCH, LOGIN],
}

# Where the schema allows null, per block: these keys of each such dict.
_NULLABLE_TRACE = ("start", "end")
_NULLABLE_NS = ("mean_bytes",)
_NULLABLE_TTL_ROW = ("stale_hit_share", "peak_bytes")
_NULLABLE_REFRESH = ("stale_ttl_s",)
_NULLABLE_CACHE_RECOMMENDATION = ("stale_ttl_s", "local_ttl_s", "memory_bytes", "stale_hit_share")


def with_nulls(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with every field the schema lets be null set to ``None``."""
    data = copy.deepcopy(data)
    for key in _NULLABLE_TRACE:
        data["trace"][key] = None
    if data["kind"] == "cache":
        data["settings"]["budget_bytes"] = None
        data["settings"]["max_stale_s"] = None
        for ns in [data["overall"], *data["namespaces"]]:
            for key in _NULLABLE_NS:
                ns[key] = None
            for row in ns["ttl_rows"]:
                for key in _NULLABLE_TTL_ROW:
                    row[key] = None
            for key in _NULLABLE_REFRESH:
                ns["refresh"][key] = None
            for key in _NULLABLE_CACHE_RECOMMENDATION:
                ns["recommendation"][key] = None
    else:
        for route in [data["overall"], *data["routes"]]:
            for talker in route["top_talkers"]:
                talker["user_agent"] = None
    return data


def emptied(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with every list empty: an analysis of a trace with nothing in it."""
    data = copy.deepcopy(data)
    data["trace"]["malformed_examples"] = []
    data["trace"]["malformed"] = 0
    if data["kind"] == "cache":
        data["settings"]["ttls_s"] = []
        data["settings"]["unread_namespaces"] = []
        data["namespaces"] = []
        data["overall"]["ttl_rows"] = []
        data["overall"]["memory_rows"] = []
    else:
        data["routes"] = []
        data["overall"]["top_talkers"] = []
        data["overall"]["candidates"] = []
    return data
