"""Charts drawn on the server by matplotlib, as SVG images the page shows scaled to its width.

Each chart is an ``<img>`` whose source is a ``data:`` URL: the page needs no script and no
inline style (its Content-Security-Policy allows neither), the SVG keeps its own styles, and
an image's SVG runs no script either. Text reaches matplotlib with mathtext disabled (``$``),
and matplotlib escapes it in the SVG.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

# Imported with the app, so that a missing dashboard extra shows at start, not at a page view.
import matplotlib

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["bars", "lines", "stacked_hours"]

Point = tuple[float, float]
#: One colour per outcome, the same on every page.
COLOURS = {
    "allowed": "#2e7d32", "blocked": "#c62828", "denied": "#6a1b9a", "hits": "#2e7d32",
    "misses": "#ef6c00", "cache_block": "#ef9a9a", "timeout": "#757575", "loads": "#1565c0",
    "errors": "#c62828", "stale_served": "#6d4c41",
    "early_refreshes": "#00838f",
}  # fmt: skip


def _text(value: object, limit: int = 50) -> str:
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _draw(paint: Callable[[Axes], None], title: str) -> str:
    """``paint`` on a new figure's axes, as a ``data:image/svg+xml`` URL."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    with matplotlib.rc_context(
        {"svg.fonttype": "none", "font.size": 12, "axes.spines.top": False,
         "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3}
    ):  # fmt: skip
        figure = Figure(figsize=(6.4, 2.8), layout="constrained")
        FigureCanvasSVG(figure)  # its own canvas: pyplot and its global state stay unused
        axes = figure.add_subplot()
        axes.set_title(_text(title), loc="left", fontsize=12)
        paint(axes)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _clock(seconds: float, _position: object = None) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%H:%M")


#: Tick spacings of a time axis, in seconds: the first that leaves at most six ticks is used.
STEPS = (60, 300, 600, 900, 1800, 3600, 7200, 4 * 3600, 6 * 3600, 12 * 3600, 86400)


def _time_axis(axes: Axes, start: float, end: float) -> None:
    """Unix seconds on the x axis: ticks on round times of day, labelled in UTC."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    end = max(end, start + 60)  # one point alone still gets an axis (and no matplotlib warning)
    step = next((s for s in STEPS if (end - start) / s <= 6), STEPS[-1])
    first = -(-start // step) * step
    axes.xaxis.set_major_locator(FixedLocator([first + i * step for i in range(7)]))
    axes.xaxis.set_major_formatter(FuncFormatter(_clock))
    axes.set_xlim(start, end)
    axes.set_xlabel("UTC", fontsize=10, loc="right")


def lines(
    title: str,
    series: Mapping[str, Sequence[Point]],
    *,
    percent: bool = False,
    span: tuple[float, float] | None = None,
) -> str | None:
    """A line per named series of (unix seconds, value); ``None`` when there is no point.

    ``span`` is the time range the axis shows (the points' own range by default). Points are
    marked: a lone one would be no line at all.
    """
    if not any(series.values()):
        return None

    def paint(axes: Axes) -> None:
        for name, points in series.items():
            if points:
                axes.plot([t for t, _ in points], [v for _, v in points], label=_text(name, 30),
                          color=COLOURS.get(name), marker="o", markersize=2.5)  # fmt: skip
        if percent:
            from matplotlib.ticker import PercentFormatter

            axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
            axes.set_ylim(0, 1.05)
        else:
            axes.set_ylim(bottom=0)
        times = [t for points in series.values() for t, _ in points]
        _time_axis(axes, *(span or (min(times), max(times))))
        if len(series) > 1:
            axes.legend(loc="upper left", fontsize=10, frameon=False)

    return _draw(paint, title)


def stacked_hours(title: str, rows: Sequence[Mapping[str, Any]], outcomes: Sequence[str]) -> str:
    """Stacked bars per hour (``time`` in epoch ms) of the ``outcomes`` counts."""

    def paint(axes: Axes) -> None:
        times = [row["time"] / 1000 for row in rows]
        bottom = [0.0] * len(rows)
        for outcome in outcomes:
            values = [float(row[outcome]) for row in rows]
            axes.bar(times, values, width=3600 * 0.9, bottom=bottom, label=outcome,
                     color=COLOURS.get(outcome), align="edge")  # fmt: skip
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        _time_axis(axes, times[0], times[-1] + 3600)
        axes.legend(loc="upper left", fontsize=10, frameon=False)

    return _draw(paint, title)


def bars(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """One bar per label (a histogram's buckets, in order)."""

    def paint(axes: Axes) -> None:
        axes.bar([_text(label, 12) for label in labels], values, color="#1565c0")

    return _draw(paint, title)
