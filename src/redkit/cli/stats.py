"""``redkit stats``: the fleet's figures (``stats=``), summed over every process."""

from __future__ import annotations

import click

from redkit.advise._units import format_count, format_seconds
from redkit.cli.common import as_json, console, json_option, open_redis, redis_option, table, text
from redkit.stats import FleetStats, read

__all__ = ["render_stats", "stats"]

_FEATURES = ("cache", "ratelimit", "concurrency", "sessions")


@click.command(
    short_help="the fleet's figures: cache hits, decisions, sessions (stats=)",
    help="The counts that every process's caches, limiters and session stores send to Redis "
    'when created with stats="10 s", summed over the processes: per namespace or prefix, '
    "over the last --since, with the cache hit ratio. See docs/stats.md for the counters.",
)
@redis_option
@json_option
@click.option("--feature", type=click.Choice(_FEATURES), help="only this feature")
@click.option("--name", help="only this namespace or prefix")
@click.option("--since", default="1 h", show_default=True, help="how far back: 15 m, 1 h, 1 d...")
@click.option(
    "--resolution",
    type=click.Choice(["minute", "hour"]),
    default="minute",
    show_default=True,
    help="minute buckets (kept a day) or hour buckets (kept 30 days)",
)
def stats(
    redis_url: str | None,
    as_json_output: bool,
    feature: str | None,
    name: str | None,
    since: str,
    resolution: str,
) -> int:
    """``redkit stats``."""
    with open_redis(redis_url) as conn:
        figures = read(conn, feature=feature, name=name, since=since, resolution=resolution)
    if as_json_output:
        as_json(figures.to_dict())
    else:
        render_stats(figures)
    return 0


def render_stats(figures: FleetStats) -> None:
    """One table per feature: a row per name, a column per counter (totals of the range)."""
    out = console()
    shown = False
    for feature in _FEATURES:
        names = figures.names(feature)
        if not names:
            continue
        shown = True
        totals = {name: figures.totals(feature, name) for name in names}
        counters = sorted({counter for row in totals.values() for counter in row})
        extra = ["hit ratio"] if feature == "cache" else []
        grid = table(feature, "name", "processes", *counters, *extra)
        for name in names:
            row = [_cell(counter, totals[name].get(counter, 0)) for counter in counters]
            if feature == "cache":
                ratio = figures.hit_ratio(name)
                row.append("-" if ratio is None else f"{ratio:.1%}")
            grid.add_row(text(name), str(figures.processes(feature, name)), *row)
        out.print(grid)
    if not shown:
        out.print('no fleet statistics in this range (create the facades with stats="10 s")')


def _cell(counter: str, value: float) -> str:
    """A count with separators; a timing's sum (``<what>_seconds``) as a duration."""
    return format_seconds(value) if counter.endswith("_seconds") else format_count(value)
