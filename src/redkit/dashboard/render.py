"""The pages as HTML: jinja2 templates (package files, autoescaped) and their charts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2

from redkit.dashboard import charts
from redkit.dashboard.guard import Refused

__all__ = ["Renderer", "Url", "ratio_series"]

#: Builds the absolute URL of a route by name (and path parameters).
Url = Callable[..., str]

NAV = (
    ("overview", "Overview"), ("ratelimits", "Rate limits"), ("caches", "Caches"),
    ("sessions", "Sessions"), ("keyspace", "Keyspace"),
)  # fmt: skip


#: The cache counters charted together, per minute.
EVENTS = ("loads", "stale_served", "early_refreshes", "errors")


def ratio_series(
    hits: Sequence[tuple[float, float]], misses: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Hits / (hits + misses) per bucket, for the buckets that had any read."""
    missed = dict(misses)
    out = []
    for t, h in hits:
        reads = h + missed.get(t, 0)
        if reads:
            out.append((t, h / reads))
    return out


def _bytes(value: object) -> str:
    size = float(value) if isinstance(value, (int, float)) else 0.0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover - the loop returns


def _percent(value: object) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.1%}"


def _when(value: object) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Renderer:
    """The templates, loaded once from the package."""

    def __init__(self) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("redkit.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(bytes=_bytes, percent=_percent, when=_when)

    def _render(self, url: Url, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(url=url, nav=NAV, **context)

    def page(self, url: Url, page: str, data: Mapping[str, Any], **context: Any) -> str:
        """One page of the dashboard, with its charts drawn from ``data``."""
        drawn = _charts(page, data) if data else {}
        return self._render(url, f"{page}.html", page=page, data=data, charts=drawn, **context)

    def login(self, url: Url, message: str | None) -> str:
        """The login form."""
        return self._render(url, "login.html", page="login", message=message)

    def error(self, url: Url, refused: Refused) -> str:
        """A refusal, as a page."""
        return self._render(url, "error.html", page="error", refused=refused)


def _charts(page: str, data: Mapping[str, Any]) -> dict[str, str | None]:
    """The page's charts, by name (``None``: nothing to draw yet)."""
    out: dict[str, str | None] = {}
    if page == "overview" and data.get("fleet"):
        cache = data["fleet"]["cache"]
        ratio = ratio_series(cache["hits"], cache["misses"])
        out["hit_ratio"] = charts.lines(
            "cache hit ratio, fleet", {"hit ratio": ratio}, percent=True, span=_span(cache["hits"])
        )
        decisions = data["fleet"]["decisions"]
        out["decisions"] = charts.lines("rate-limit decisions per minute", decisions)
    elif page == "ratelimits":
        for report in data["prefixes"]:
            out[report["prefix"]] = charts.stacked_hours(
                f"{report['prefix']}: decisions per hour", report["per_hour"],
                ("allowed", "blocked", "denied"),
            )  # fmt: skip
    elif page == "caches":
        for ns in data["namespaces"]:
            name, series = ns["namespace"], ns["series"]
            if series:
                ratio = ratio_series(series["hits"], series["misses"])
                out[f"{name}/ratio"] = charts.lines(
                    f"{name}: hit ratio", {"hit ratio": ratio}, percent=True,
                    span=_span(series["hits"]),
                )  # fmt: skip
                events = {c: series[c] for c in EVENTS}
                out[f"{name}/events"] = charts.lines(f"{name}: per minute", events)
            out[f"{name}/ttl"] = _ttl_chart(f"{name}: TTL of its keys", ns.get("keyspace"))
    elif page == "keyspace":
        out["ttl"] = _ttl_chart("TTL of the keys", data["scan"].get("report"))
    return out


def _span(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """The time range of a series (every bucket of the range, empty ones included)."""
    return (points[0][0], points[-1][0]) if points else None


def _ttl_chart(title: str, report: Mapping[str, Any] | None) -> str | None:
    """Bars of a keyspace report's TTL histogram (``ttl``: bucket -> keys, in order)."""
    histogram = (report or {}).get("ttl")
    if not histogram or not any(histogram.values()):
        return None
    return charts.bars(title, [str(label) for label in histogram], list(histogram.values()))
