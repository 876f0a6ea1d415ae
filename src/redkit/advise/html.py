"""The HTML report of ``redkit advise``: one self-contained page, charts inlined as SVG.

:func:`render_html` turns the advice's JSON dict (``CacheAdvice.to_json()``,
``RatelimitAdvice.to_json()``, schema ``redkit.advise/1``) into a page that needs nothing else:
the CSS is inline, the charts are SVG drawn by matplotlib (its SVG canvas on a bare
``Figure``, so the caller's pyplot backend is never touched) and there is no script and no
external URL. The page can be mailed, attached to a ticket or opened offline.

Every string of the dict may come from an untrusted log (namespaces, clients, user agents, the
code that names them): each is HTML-escaped, matplotlib escapes the text of its SVG, and the
page's Content-Security-Policy forbids scripts besides, so a hostile log line stays text.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from redkit.advise._units import (
    NONE,
    format_bytes,
    format_count,
    format_rate,
    format_seconds,
    format_share,
    format_time,
)
from redkit.advise.report import RATE_LABELS, check_schema, clean

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["render_html"]

# Scripts, frames, objects and remote fetches all refused: the page is text, tables and SVG.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'"

_XMLNS_SVG = ' xmlns="http://www.w3.org/2000/svg"'
_XMLNS_XLINK = ' xmlns:xlink="http://www.w3.org/1999/xlink"'

_CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d9dde5; --accent: #1f6feb; --pick: #e8f1ff; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: #fafbfc; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 6px; padding-top: 12px; border-top: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase;
     letter-spacing: .04em; }
p { margin: 4px 0; }
.muted { color: var(--muted); }
.warn { color: #9a6700; }
nav ul { margin: 6px 0; padding-left: 20px; columns: 2; }
table { border-collapse: collapse; margin: 6px 0 12px; background: #fff; font-size: 13.5px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: right;
         vertical-align: top; }
th { background: #f1f3f6; font-weight: 600; }
td.text, th.text { text-align: left; }
tr.chosen td { background: var(--pick); font-weight: 600; }
.scroll { overflow-x: auto; }
.recommendation { background: #fff; border: 1px solid var(--line);
                  border-left: 4px solid var(--accent); padding: 10px 14px; margin: 12px 0; }
pre { background: #0f1722; color: #e6edf3; padding: 12px 14px; border-radius: 6px;
      overflow-x: auto; font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 6px 0; background: #fff; border: 1px solid var(--line); padding: 6px; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 12.5px; color: var(--muted); max-width: 520px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
"""


def _e(value: object) -> str:
    """``value`` as HTML text: escaped (quotes too, so it is safe in attributes as well)."""
    return html.escape(clean(value, newlines=True), quote=True)


def render_html(data: Mapping[str, Any]) -> str:
    """The report of ``data`` (an advice's ``to_json()``) as one self-contained HTML page.

    Raises:
        InvalidArgumentError: for a dict of another schema or kind.
        ModuleNotFoundError: naming ``redkit[advise]``, when matplotlib is missing.

    """
    kind = check_schema(data)
    _matplotlib()
    charts = _Charts()
    trace = data.get("trace") or {}
    settings = data.get("settings") or {}
    title = "Cache advice" if kind == "cache" else "Rate-limit advice"
    if kind == "cache":
        sections = [("overall", "Overall", data.get("overall"))]
        sections += [
            (f"ns-{index}", f"Namespace {clean(ns.get('name'))}", ns)
            for index, ns in enumerate(data.get("namespaces") or [], 1)
        ]

        def render(part: Mapping[str, Any]) -> str:
            return _namespace(part, settings, charts)

        intro = _cache_settings(settings)
    else:
        sections = [("overall", "Overall", data.get("overall"))]
        sections += [
            (f"route-{index}", f"Route {clean(route.get('name'))}", route)
            for index, route in enumerate(data.get("routes") or [], 1)
        ]

        def render(part: Mapping[str, Any]) -> str:
            return _route(part, settings, charts)

        intro = _ratelimit_settings(settings)
    present = [(anchor, heading, part) for anchor, heading, part in sections if part]
    body = [
        f"<header><h1>{_e(title)}</h1>{_trace(trace)}{intro}</header>",
        "<nav><h3>Contents</h3><ul>"
        + "".join(
            f'<li><a href="#{anchor}">{_e(heading)}</a></li>' for anchor, heading, _ in present
        )
        + "</ul></nav>",
    ]
    for anchor, heading, part in present:
        body.append(f'<section id="{anchor}"><h2>{_e(heading)}</h2>{render(part)}</section>')
    body.append(
        f"<footer>Schema {_e(data.get('schema'))}. Made by redkit advise from "
        f"{_e(trace.get('source'))}; every number is a replay of that trace.</footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}: {_e(trace.get('source'))}</title>"
        f"<style>{_CSS}</style></head>\n<body><main>\n"
        + "\n".join(body)
        + "\n</main></body></html>\n"
    )


# --- page parts ---------------------------------------------------------------------------


def _table(
    headers: Sequence[tuple[str, bool]],
    rows: Sequence[Sequence[object]],
    *,
    chosen: Callable[[int], bool] = lambda index: False,
) -> str:
    """A table; each header ``(label, is_text)`` (text columns align left, numbers right)."""
    head = "".join(
        f'<th{" class=text" if is_text else ""} scope="col">{_e(label)}</th>'
        for label, is_text in headers
    )
    lines = []
    for index, row in enumerate(rows):
        cells = "".join(
            f"<td{' class=text' if headers[i][1] else ''}>{_e(cell)}</td>"
            for i, cell in enumerate(row)
        )
        mark = ' class="chosen"' if chosen(index) else ""
        lines.append(f"<tr{mark}>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )


def _trace(trace: Mapping[str, Any]) -> str:
    parts = [
        f"<p><strong>{_e(trace.get('source'))}</strong> ({_e(trace.get('format'))}): "
        f"{_e(format_count(trace.get('requests')))} requests from "
        f"{_e(format_count(trace.get('lines')))} lines, {_e(format_time(trace.get('start')))} to "
        f"{_e(format_time(trace.get('end')))} ({_e(format_seconds(trace.get('duration_s')))})"
        "</p>"
    ]
    malformed = trace.get("malformed") or 0
    examples = trace.get("malformed_examples") or []
    if malformed:
        shown = f"; the first {len(examples)}:" if examples else "."
        parts.append(
            f'<p class="warn">{_e(format_count(malformed))} malformed lines skipped{_e(shown)}</p>'
        )
    if examples:
        parts.append(
            _table(
                [("line", False), ("reason", True), ("text", True)],
                [(format_count(m.get("line")), m.get("reason"), m.get("text")) for m in examples],
            )
        )
    return "".join(parts)


def _cache_settings(settings: Mapping[str, Any]) -> str:
    budget = settings.get("budget_bytes")
    stale = settings.get("max_stale_s")
    loader = settings.get("loader_ms")
    return (
        f"<p>Memory budget <strong>{_e(format_bytes(budget) if budget is not None else 'none')}"
        f"</strong>, staleness budget <strong>"
        f"{_e(format_seconds(stale) if stale is not None else 'none')}</strong>, loader "
        f"<strong>{_e(f'{loader:g} ms' if loader is not None else NONE)}</strong>; TTLs tried: "
        f"{_e(', '.join(format_seconds(t) for t in settings.get('ttls_s') or []) or NONE)}.</p>"
        + (
            f"<p>Not advised, nobody reads them: {_e(', '.join(map(str, unread)))}.</p>"
            if (unread := settings.get("unread_namespaces"))
            else ""
        )
    )


def _namespace(ns: Mapping[str, Any], settings: Mapping[str, Any], charts: _Charts) -> str:
    rec = ns.get("recommendation") or {}
    parts = [
        f"<p>{_e(format_count(ns.get('requests')))} requests: "
        f"{_e(format_count(ns.get('reads')))} reads, {_e(format_count(ns.get('writes')))} writes, "
        f"{_e(format_count(ns.get('keys')))} keys, mean size "
        f"{_e(format_bytes(ns.get('mean_bytes')))}.</p>"
    ]
    if not ns.get("writes_seen", True):
        parts.append(
            '<p class="warn">No writes in the trace: staleness cannot be measured (the stale '
            "column is blank), so the TTL is bounded by hits and memory only.</p>"
        )
    if rec:
        parts.append(_cache_recommendation(rec))
    figures = [
        charts.figure(
            _ttl_chart,
            ns,
            "Hit ratio (left) and origin load, misses per second (right), against the TTL; "
            "the dashed line is the recommended TTL.",
        ),
        charts.figure(
            _memory_chart,
            ns,
            "The miss-ratio curve: the share of reads that miss at each memory budget, with "
            "Redis's eviction policies.",
        ),
    ]
    parts.append(f'<div class="charts">{"".join(f for f in figures if f)}</div>')
    rows = ns.get("ttl_rows") or []
    if rows:
        loader = settings.get("loader_ms")
        coalesced = f"coalesced ({loader:g} ms)" if loader is not None else "coalesced"
        parts.append("<h3>By TTL (TTL-only, no memory limit)</h3>")
        parts.append(
            _table(
                [
                    ("TTL", False),
                    ("hits", False),
                    ("misses", False),
                    ("hit ratio", False),
                    ("origin load", False),
                    ("stale hits", False),
                    ("peak memory", False),
                    (coalesced, False),
                ],
                [
                    (
                        format_seconds(r.get("ttl_s")),
                        format_count(r.get("hits")),
                        format_count(r.get("misses")),
                        format_share(r.get("hit_ratio")),
                        format_rate(r.get("origin_load_per_s")),
                        format_share(r.get("stale_hit_share")),
                        format_bytes(r.get("peak_bytes")),
                        format_count(r.get("coalesced")),
                    )
                    for r in rows
                ],
                chosen=lambda i: (
                    rec.get("ttl_s") is not None and rows[i].get("ttl_s") == rec["ttl_s"]
                ),
            )
        )
    memory = ns.get("memory_rows") or []
    if memory:
        policies = list(dict.fromkeys(str(r.get("policy")) for r in memory))
        several = len({r.get("ttl_s") for r in memory}) > 1
        cells: dict[tuple[Any, Any], dict[str, Any]] = {}
        for r in memory:
            cells.setdefault((r.get("budget_bytes"), r.get("ttl_s")), {})[str(r.get("policy"))] = (
                r.get("hit_ratio")
            )
        parts.append("<h3>Hit ratio by memory budget</h3>")
        parts.append(
            _table(
                [
                    ("memory", False),
                    *([("TTL", False)] if several else []),
                    *((p, False) for p in policies),
                ],
                [
                    (
                        format_bytes(budget),
                        *([format_seconds(ttl)] if several else []),
                        *(format_share(by.get(p)) for p in policies),
                    )
                    for (budget, ttl), by in cells.items()
                ],
            )
        )
    refresh = ns.get("refresh") or {}
    if refresh:
        stale_ttl = refresh.get("stale_ttl_s")
        text = (
            f"At TTL {format_seconds(refresh.get('ttl_s'))}, early refresh (XFetch) would turn "
            f"{format_count(refresh.get('early_refresh_hits'))} misses into hits that wait for "
            "nothing"
        )
        if stale_ttl is not None:
            text += (
                f"; a stale_ttl of {format_seconds(stale_ttl)}, "
                f"{format_count(refresh.get('stale_ttl_hits'))} more"
            )
        parts.append(f"<p>{_e(text)}.</p>")
    return "".join(parts)


def _cache_recommendation(rec: Mapping[str, Any]) -> str:
    options = [
        f"TTL <strong>{_e(format_seconds(rec.get('ttl_s')))}</strong>",
        f"early refresh <strong>{'on' if rec.get('early_refresh') else 'off'}</strong>",
    ]
    for key, label in (("stale_ttl_s", "stale_ttl"), ("local_ttl_s", "local_ttl")):
        if rec.get(key) is not None:
            options.append(f"{label} <strong>{_e(format_seconds(rec[key]))}</strong>")
    if rec.get("memory_bytes") is not None:
        options.append(f"memory <strong>{_e(format_bytes(rec['memory_bytes']))}</strong>")
    outcome = f"hit ratio <strong>{_e(format_share(rec.get('hit_ratio')))}</strong>"
    if rec.get("stale_hit_share") is not None:
        outcome += f", stale hits <strong>{_e(format_share(rec['stale_hit_share']))}</strong>"
    return (
        f'<div class="recommendation"><p><strong>Recommendation:</strong> {", ".join(options)} '
        f"→ {outcome}.</p>{_reason_and_code(rec)}</div>"
    )


def _reason_and_code(rec: Mapping[str, Any]) -> str:
    parts = []
    if rec.get("reason"):
        parts.append(f'<p class="muted">Why: {_e(rec["reason"])}</p>')
    if rec.get("code"):
        parts.append(f"<pre><code>{_e(str(rec['code']).rstrip())}</code></pre>")
    return "".join(parts)


def _ratelimit_settings(settings: Mapping[str, Any]) -> str:
    protect = settings.get("protect")
    budget = ""
    if protect is not None:
        budget = f" (refuse at most {100 - protect:g} % of ordinary clients' requests)"
    return (
        f"<p>Clients by <strong>{_e(settings.get('by'))}</strong>, protecting <strong>"
        f"{_e(f'{protect:g} %' if protect is not None else NONE)}</strong>{_e(budget)}.</p>"
    )


_PERCENTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))


def _route(route: Mapping[str, Any], settings: Mapping[str, Any], charts: _Charts) -> str:
    rec = route.get("recommendation") or {}
    parts = [
        f"<p>{_e(format_count(route.get('requests')))} requests from "
        f"{_e(format_count(route.get('clients')))} clients (by {_e(settings.get('by'))}).</p>"
    ]
    if rec:
        heavy = rec.get("refused_heavy_clients")
        parts.append(
            '<div class="recommendation"><p><strong>Recommendation:</strong> '
            f"<strong>{_e(rec.get('algorithm'))}</strong>, <strong>"
            f"{_e(format_count(rec.get('limit')))}</strong> per "
            f"{_e(format_seconds(rec.get('window_s')))} → refuses <strong>"
            f"{_e(format_share(rec.get('refused_ordinary_share')))}</strong> of ordinary clients' "
            f"requests and caps <strong>{_e(format_count(heavy))}</strong> heavy "
            f"client{'' if heavy == 1 else 's'}.</p>{_reason_and_code(rec)}</div>"
        )
    protect = settings.get("protect")
    figures = [
        charts.figure(
            _rates_chart,
            route,
            "Requests per client: the share of clients at or under each rate (the percentiles "
            "p50, p90, p99 and the maximum).",
        ),
        charts.figure(
            lambda fig, r: _refusals_chart(fig, r, protect),
            route,
            "Refusals per candidate limit, one line per algorithm: of all requests (left) and "
            "of ordinary clients' requests (right, the dashed line is the budget).",
        ),
    ]
    parts.append(f'<div class="charts">{"".join(f for f in figures if f)}</div>')
    rates = route.get("rates") or {}
    burst = route.get("burst") or {}
    if rates or burst:
        rows: list[tuple[object, ...]] = [
            (label, *(format_rate(rates[key].get(p), unit) for p, _ in _PERCENTILES))
            for key, label, unit in RATE_LABELS
            if rates.get(key)
        ]
        if burst:
            rows.append(
                (
                    "busiest 1 s",
                    *(format_count(burst[p]) if p in burst else NONE for p, _ in _PERCENTILES),
                )
            )
        parts.append("<h3>Requests per client</h3>")
        parts.append(_table([("", True), *((p, False) for p, _ in _PERCENTILES)], rows))
    talkers = route.get("top_talkers") or []
    if talkers:
        parts.append("<h3>Top talkers</h3>")
        parts.append(
            _table(
                [("client", True), ("requests", False), ("share", False), ("user agent", True)],
                [
                    (
                        t.get("client"),
                        format_count(t.get("requests")),
                        format_share(t.get("share")),
                        t.get("user_agent") if t.get("user_agent") is not None else NONE,
                    )
                    for t in talkers
                ],
            )
        )
    candidates = route.get("candidates") or []
    if candidates:
        parts.append("<h3>Candidate limits (refused shares)</h3>")
        parts.append(
            _table(
                [
                    ("algorithm", True),
                    ("limit", False),
                    ("window", False),
                    ("requests", False),
                    ("clients", False),
                    ("ordinary", False),
                    ("most refused", True),
                ],
                [
                    (
                        c.get("algorithm"),
                        format_count(c.get("limit")),
                        format_seconds(c.get("window_s")),
                        format_share(c.get("refused_requests_share")),
                        format_share(c.get("refused_clients_share")),
                        format_share(c.get("refused_ordinary_share")),
                        ", ".join(
                            f"{clean(t.get('client'))} ({format_count(t.get('refused'))})"
                            for t in (c.get("refused_top") or [])[:3]
                        )
                        or NONE,
                    )
                    for c in candidates
                ],
                chosen=lambda i: (
                    bool(rec)
                    and all(
                        candidates[i].get(k) == rec.get(k)
                        for k in ("algorithm", "limit", "window_s")
                    )
                ),
            )
        )
    return "".join(parts)


# --- charts -----------------------------------------------------------------------------------


def _matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"redkit.advise.html needs matplotlib ({exc}): pip install 'redkit[advise]'",
            name=exc.name,
        ) from exc


def _label(value: object, limit: int = 60) -> str:
    """Text for matplotlib: no mathtext (``$`` would start it), controls escaped, not too long."""
    text = clean(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


class _Charts:
    """Draws the page's charts, each with ids of its own (several SVGs share one document)."""

    def __init__(self) -> None:
        self._count = 0

    def figure(
        self,
        draw: Callable[[Figure, Mapping[str, Any]], bool],
        part: Mapping[str, Any],
        caption: str,
    ) -> str:
        """A ``<figure>`` of what ``draw`` puts on a new figure; ``""`` when it had no data."""
        self._count += 1
        with _style(f"redkit-advise-{self._count}"):
            from matplotlib.backends.backend_svg import FigureCanvasSVG
            from matplotlib.figure import Figure

            figure = Figure(figsize=(6.4, 3.4), layout="constrained")
            FigureCanvasSVG(figure)  # the figure's own canvas: pyplot's backend is not used
            if not draw(figure, part):
                return ""
            buffer = io.StringIO()
            figure.savefig(
                buffer,
                format="svg",
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
            )
        svg = buffer.getvalue()
        # Inline SVG in HTML needs neither the XML prolog, nor the doctype (which names a remote
        # DTD), nor the namespace declarations (the HTML parser knows SVG and xlink:href): with
        # them gone the page holds no URL at all.
        svg = svg[svg.index("<svg") :]
        head, rest = svg.split(">", 1)
        for declaration in (_XMLNS_XLINK, _XMLNS_SVG):
            head = head.replace(declaration, "")
        svg = head + ">" + rest
        return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


@contextmanager
def _style(salt: str) -> Iterator[None]:
    """Matplotlib settings for one chart, restored after (the caller's own stay as they were).

    Text as SVG ``<text>`` (escaped by matplotlib, selectable, small) rather than glyph paths;
    a salt per chart so the ids of two charts never collide in one page.
    """
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": salt,
            "font.size": 9,
            "axes.spines.top": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    ):
        yield


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(xmax=1))


def _count_axis(axis: Any) -> None:
    """Plain numbers (``1,000``) on a log axis, not mathtext powers of ten."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda value, _position: format_count(value)))
    axis.set_minor_formatter(NullFormatter())


def _finite(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _ttl_chart(figure: Figure, ns: Mapping[str, Any]) -> bool:
    rows = [r for r in ns.get("ttl_rows") or [] if _finite([r.get("ttl_s"), r.get("hit_ratio")])]
    rows = [r for r in rows if r["ttl_s"] > 0]
    if not rows:
        return False
    ttls = [r["ttl_s"] for r in rows]
    axes: Axes = figure.add_subplot()
    axes.set_title(_label(f"Hit ratio and origin load by TTL: {ns.get('name')}"))
    axes.set_xscale("log")
    (hits,) = axes.plot(ttls, [r["hit_ratio"] for r in rows], marker="o", label="hit ratio")
    lines = [hits]
    stale = [(r["ttl_s"], r.get("stale_hit_share")) for r in rows]
    if any(s is not None for _, s in stale):
        (stale_line,) = axes.plot(
            [t for t, s in stale if s is not None],
            [s for _, s in stale if s is not None],
            marker=".",
            linestyle=":",
            color="tab:red",
            label="stale hits",
        )
        lines.append(stale_line)
    axes.set_ylim(0, 1.02)
    _percent_axis(axes.yaxis)
    axes.set_xticks(ttls, [format_seconds(t) for t in ttls], rotation=45)
    axes.minorticks_off()
    axes.set_xlabel("TTL")
    load = [r.get("origin_load_per_s") for r in rows]
    if _finite(load):
        right = axes.twinx()
        (origin,) = right.plot(
            ttls, load, marker="s", color="tab:orange", label="origin load (misses/s)"
        )
        right.set_ylabel("misses per second")
        right.set_ylim(bottom=0)
        right.grid(False)
        lines.append(origin)
    chosen = (ns.get("recommendation") or {}).get("ttl_s")
    if isinstance(chosen, (int, float)) and chosen > 0:
        axes.axvline(chosen, color="tab:green", linestyle="--", linewidth=1)
    axes.legend(handles=lines, loc="center right", fontsize=8)
    return True


def _memory_chart(figure: Figure, ns: Mapping[str, Any]) -> bool:
    rows = [
        r
        for r in ns.get("memory_rows") or []
        if _finite([r.get("budget_bytes"), r.get("hit_ratio")]) and r["budget_bytes"] > 0
    ]
    if not rows:
        return False
    several = len({r.get("ttl_s") for r in rows}) > 1
    lines: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        name = str(r.get("policy"))
        if several:
            name += f", TTL {format_seconds(r.get('ttl_s'))}"
        lines.setdefault(name, []).append((r["budget_bytes"], 1 - r["hit_ratio"]))
    axes: Axes = figure.add_subplot()
    axes.set_title(_label(f"Miss ratio by memory: {ns.get('name')}"))
    axes.set_xscale("log", base=2)
    for name, points in lines.items():
        points.sort()
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=_label(name))
    budgets = sorted({r["budget_bytes"] for r in rows})
    axes.set_xticks(budgets, [format_bytes(b) for b in budgets], rotation=45)
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    _percent_axis(axes.yaxis)
    axes.set_xlabel("memory budget")
    axes.set_ylabel("miss ratio")
    chosen = (ns.get("recommendation") or {}).get("memory_bytes")
    if isinstance(chosen, (int, float)) and chosen > 0:
        axes.axvline(chosen, color="tab:green", linestyle="--", linewidth=1)
    axes.legend(fontsize=8)
    return True


def _rates_chart(figure: Figure, route: Mapping[str, Any]) -> bool:
    rates = route.get("rates") or {}
    panels = [(key, label, unit) for key, label, unit in RATE_LABELS if rates.get(key)]
    if not panels:
        return False
    figure.suptitle(_label(f"Requests per client: {route.get('name')}"))
    axes_list = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for axes, (key, label, _unit) in zip(axes_list, panels, strict=True):
        points = [
            (rates[key][p], share) for p, share in _PERCENTILES if _finite([rates[key].get(p)])
        ]
        points.sort()
        axes.step([p[0] for p in points], [p[1] for p in points], where="post", marker="o")
        # Symmetric log: wide ranges fit, and a rate of 0 (most clients, per second) too.
        axes.set_xscale("symlog", linthresh=1)
        _count_axis(axes.xaxis)
        axes.set_xlabel(f"requests {label}")
        axes.set_ylim(0, 1.05)
        _percent_axis(axes.yaxis)
    axes_list[0].set_ylabel("clients at or under")
    return True


def _refusals_chart(figure: Figure, route: Mapping[str, Any], protect: object) -> bool:
    candidates = [
        c
        for c in route.get("candidates") or []
        if _finite([c.get("limit"), c.get("refused_requests_share")]) and c["limit"] > 0
    ]
    if not candidates:
        return False
    several = len({c.get("window_s") for c in candidates}) > 1
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for c in candidates:
        name = str(c.get("algorithm"))
        if several:
            name += f" / {format_seconds(c.get('window_s'))}"
        groups.setdefault(name, []).append(c)
    figure.suptitle(_label(f"Refusals per candidate limit: {route.get('name')}"))
    left, right = figure.subplots(1, 2, sharex=True)
    for name, group in groups.items():
        group = sorted(group, key=lambda c: c["limit"])
        limits = [c["limit"] for c in group]
        left.plot(
            limits, [c["refused_requests_share"] for c in group], marker="o", label=_label(name)
        )
        ordinary = [c.get("refused_ordinary_share") for c in group]
        if _finite(ordinary):
            right.plot(limits, ordinary, marker="o", label=_label(name))
    rec = route.get("recommendation") or {}
    if _finite([rec.get("limit"), rec.get("refused_ordinary_share")]):
        right.plot(
            [rec["limit"]], [rec["refused_ordinary_share"]], marker="*", markersize=14,
            color="tab:green", linestyle="none", label="recommended",
        )  # fmt: skip
    if isinstance(protect, (int, float)) and math.isfinite(protect):
        right.axhline((100 - protect) / 100, color="tab:red", linestyle="--", linewidth=1)
    limits = sorted({c["limit"] for c in candidates})
    for axes, title in ((left, "of all requests"), (right, "of ordinary clients' requests")):
        axes.set_xscale("log")
        axes.set_xticks(limits, [format_count(limit) for limit in limits])
        axes.minorticks_off()
        axes.set_title(title, fontsize=9)
        axes.set_xlabel("limit per window")
        axes.set_ylim(bottom=0)
        _percent_axis(axes.yaxis)
    left.set_ylabel("refused")
    right.legend(fontsize=7)
    return True
