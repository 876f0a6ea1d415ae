r"""The terminal report of ``redkit advise``: the advice's JSON dict as tables, with ``rich``.

:func:`render_text` gives the report as a string (no colour unless asked), :func:`print_report`
prints it on a terminal (colour when the file is one), and :func:`progress_callback` shows a
progress bar while a big log is read. They render the dict that ``CacheAdvice.to_json()`` and
``RatelimitAdvice.to_json()`` return (schema ``redkit.advise/1``, docs/advise.md), so a report
can also be made again later from a saved ``--json``.

Every string of the dict may come from an untrusted log (a namespace, a client, a user agent):
it is printed as plain text, never as rich markup, and its control characters are shown as
``\x1b``-style escapes, so a log line cannot drive the terminal.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from redkit.advise._units import (
    NONE,
    format_bytes,
    format_count,
    format_rate,
    format_seconds,
    format_share,
    format_time,
)
from redkit.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table
    from rich.text import Text

__all__ = ["SCHEMA", "print_report", "progress_callback", "render_text"]

#: The schema the renderers read.
SCHEMA = "redkit.advise/1"

# C0 and C1 controls and DEL: what a terminal would act on. Newlines are kept in code only.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _rich() -> None:
    """Fail early, naming the extra, when rich is missing."""
    try:
        import rich  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            f"redkit.advise.report needs rich ({exc}): pip install 'redkit[advise]'",
            name=exc.name,
        ) from exc


def clean(value: object, *, newlines: bool = False) -> str:
    r"""``value`` as text a terminal prints and does not act on (controls escaped as ``\xNN``)."""
    text = "" if value is None else str(value)
    pattern = _CONTROL_BUT_NEWLINE if newlines else _CONTROL
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def check_schema(data: Mapping[str, Any]) -> str:
    """The kind of advice ``data`` is (``"cache"`` or ``"ratelimit"``), after checking its schema.

    Raises:
        InvalidArgumentError: for a dict of another schema or kind.

    """
    if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, Mapping) else type(data).__name__
        raise InvalidArgumentError(
            f"expected an advice dict of schema {SCHEMA!r} (what to_json() returns), got "
            f"schema {found!r}"
        )
    kind = data.get("kind")
    if kind not in ("cache", "ratelimit"):
        raise InvalidArgumentError(f'expected kind "cache" or "ratelimit", got {kind!r}')
    return str(kind)


def render_text(data: Mapping[str, Any], *, width: int = 100, color: bool = False) -> str:
    """The report of ``data`` (an advice's ``to_json()``) as text ``width`` columns wide.

    Plain text by default; ``color=True`` keeps the ANSI styles a terminal shows.
    """
    _rich()
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    for part in _renderables(data):
        console.print(part)
    # Rich pads each line to the width; the padding is noise in a file or a diff.
    return "\n".join(line.rstrip() for line in buffer.getvalue().split("\n"))


def print_report(data: Mapping[str, Any], *, file: IO[str] | None = None) -> None:
    """Print the report of ``data`` on ``file`` (stdout), in colour when it is a terminal."""
    _rich()
    from rich.console import Console

    console = Console(file=file or sys.stdout, highlight=False, emoji=False)
    for part in _renderables(data):
        console.print(part)


@contextmanager
def progress_callback(
    description: str = "reading", *, file: IO[str] | None = None, unit: str = "bytes"
) -> Iterator[Callable[[int, int], None]]:
    """A ``callback(done, total)`` that draws a progress bar on ``file`` (stderr).

    ``unit`` is ``"bytes"`` (a reader's bytes read, shown as ``0.5/1.0 MB``) or ``"steps"``
    (an analysis's steps, shown as ``3/12``). Silent (the callback does nothing) when ``file``
    is not a terminal, so piped output and logs stay clean. The bar is removed when the block
    ends.
    """
    if unit not in ("bytes", "steps"):
        raise InvalidArgumentError(f'unit must be "bytes" or "steps", got {unit!r}')
    stream = file or sys.stderr
    if not _is_terminal(stream):
        yield _ignore
        return
    _rich()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn() if unit == "bytes" else MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(clean(description), total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total if total > 0 else None)

        yield update


def _ignore(done: int, total: int) -> None:
    """The callback of a progress bar nobody sees."""


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


# --- the report -----------------------------------------------------------------------------


def _renderables(data: Mapping[str, Any]) -> list[RenderableType]:
    kind = check_schema(data)
    parts: list[RenderableType] = []
    title = "Cache advice" if kind == "cache" else "Rate-limit advice"
    parts.extend(_trace(title, data.get("trace") or {}))
    if kind == "cache":
        parts.extend(_cache_settings(data.get("settings") or {}))
        overall = data.get("overall")
        if overall:
            parts.extend(_namespace(overall, data.get("settings") or {}, "Overall"))
        for ns in data.get("namespaces") or []:
            parts.extend(_namespace(ns, data.get("settings") or {}, None))
    else:
        settings = data.get("settings") or {}
        parts.extend(_ratelimit_settings(settings))
        overall = data.get("overall")
        if overall:
            parts.extend(_route(overall, settings, "Overall"))
        for route in data.get("routes") or []:
            parts.extend(_route(route, settings, None))
    return parts


def _text(value: object, style: str = "") -> Text:
    from rich.text import Text

    return Text(clean(value), style=style)


def _line(*pieces: tuple[object, str] | str) -> Text:
    """A line of pieces, each ``(value, style)`` or plain; values cleaned, never markup."""
    from rich.text import Text

    line = Text()
    for piece in pieces:
        if isinstance(piece, tuple):
            line.append(clean(piece[0]), style=piece[1])
        else:
            line.append(clean(piece))
    return line


def _table(title: str, columns: Sequence[tuple[str, str]]) -> Table:
    """A table; each column ``(header, justify)``."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=_text(title, "bold"), title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for header, justify in columns:
        table.add_column(_text(header), justify=justify)  # type: ignore[arg-type]
    return table


def _rule(label: str, name: object) -> RenderableType:
    from rich.rule import Rule

    return Rule(_line((label, "bold"), " ", (name, "bold cyan")), align="left")


def _trace(title: str, trace: Mapping[str, Any]) -> list[RenderableType]:
    parts: list[RenderableType] = [
        _line((title, "bold"), " for ", (trace.get("source"), "bold"), f" ({trace.get('format')})"),
        _line(
            f"{format_count(trace.get('requests'))} requests from "
            f"{format_count(trace.get('lines'))} lines, {format_time(trace.get('start'))} to "
            f"{format_time(trace.get('end'))} ({format_seconds(trace.get('duration_s'))})"
        ),
    ]
    malformed = trace.get("malformed") or 0
    examples = trace.get("malformed_examples") or []
    if malformed:
        shown = f"; the first {len(examples)}:" if examples else "."
        parts.append(
            _line((f"{format_count(malformed)} malformed lines", "yellow"), f" skipped{shown}")
        )
    if examples:
        table = _table("", [("line", "right"), ("reason", "left"), ("text", "left")])
        for example in examples:
            table.add_row(
                _text(format_count(example.get("line"))),
                _text(example.get("reason")),
                _text(example.get("text"), "dim"),
            )
        parts.append(table)
    return parts


def _cache_settings(settings: Mapping[str, Any]) -> list[RenderableType]:
    budget = settings.get("budget_bytes")
    stale = settings.get("max_stale_s")
    ttls = settings.get("ttls_s") or []
    parts: list[RenderableType] = [
        _line(
            "Memory budget ",
            (format_bytes(budget) if budget is not None else "none", "bold"),
            ", staleness budget ",
            (format_seconds(stale) if stale is not None else "none", "bold"),
            ", loader ",
            (f"{settings.get('loader_ms', 0):g} ms", "bold"),
            ", TTLs ",
            ", ".join(format_seconds(t) for t in ttls) or NONE,
        ),
    ]
    unread = settings.get("unread_namespaces") or []
    if unread:
        parts.append(_line("Not advised, nobody reads them: ", ", ".join(map(str, unread))))
    parts.append(_line(""))
    return parts


def _namespace(
    ns: Mapping[str, Any], settings: Mapping[str, Any], label: str | None
) -> list[RenderableType]:
    recommendation = ns.get("recommendation") or {}
    chosen = recommendation.get("ttl_s")
    parts: list[RenderableType] = [
        _rule(label or "Namespace", "" if label else ns.get("name")),
        _line(
            f"{format_count(ns.get('requests'))} requests: {format_count(ns.get('reads'))} "
            f"reads, {format_count(ns.get('writes'))} writes, {format_count(ns.get('keys'))} "
            f"keys, mean size {format_bytes(ns.get('mean_bytes'))}"
        ),
    ]
    if not ns.get("writes_seen", True):
        parts.append(
            _line(
                ("No writes in the trace: ", "yellow"),
                "staleness cannot be measured (the stale column is blank), so the TTL is bounded "
                "by hits and memory only.",
            )
        )
    rows = ns.get("ttl_rows") or []
    if rows:
        loader = settings.get("loader_ms")
        table = _table(
            "By TTL (TTL-only, no memory limit)",
            [
                ("TTL", "right"),
                ("hits", "right"),
                ("misses", "right"),
                ("hit ratio", "right"),
                ("origin load", "right"),
                ("stale hits", "right"),
                ("peak memory", "right"),
                (f"coalesced ({loader:g} ms)" if loader is not None else "coalesced", "right"),
            ],
        )
        for row in rows:
            mark = row.get("ttl_s") == chosen
            table.add_row(
                _text(("▶ " if mark else "") + format_seconds(row.get("ttl_s"))),
                _text(format_count(row.get("hits"))),
                _text(format_count(row.get("misses"))),
                _text(format_share(row.get("hit_ratio"))),
                _text(format_rate(row.get("origin_load_per_s"))),
                _text(format_share(row.get("stale_hit_share"))),
                _text(format_bytes(row.get("peak_bytes"))),
                _text(format_count(row.get("coalesced"))),
                style="bold" if mark else None,
            )
        parts.append(table)
    parts.extend(_memory(ns.get("memory_rows") or []))
    parts.extend(_refresh(ns.get("refresh")))
    if recommendation:
        parts.extend(_cache_recommendation(recommendation))
    return parts


def _memory(rows: Sequence[Mapping[str, Any]]) -> list[RenderableType]:
    """The miss-ratio curve as a table: a row per budget (and TTL), a column per policy."""
    if not rows:
        return []
    policies = list(dict.fromkeys(str(r.get("policy")) for r in rows))
    ttls = list(dict.fromkeys(r.get("ttl_s") for r in rows))
    columns = [("memory", "right")]
    if len(ttls) > 1:
        columns.append(("TTL", "right"))
    table = _table(
        "Hit ratio by memory budget"
        + (f" (TTL {format_seconds(ttls[0])})" if len(ttls) == 1 else ""),
        [*columns, *((policy, "right") for policy in policies)],
    )
    cells: dict[tuple[Any, Any], dict[str, float | None]] = {}
    for row in rows:
        cells.setdefault((row.get("budget_bytes"), row.get("ttl_s")), {})[
            str(row.get("policy"))
        ] = row.get("hit_ratio")
    for (budget, ttl), by_policy in cells.items():
        first = [_text(format_bytes(budget))]
        if len(ttls) > 1:
            first.append(_text(format_seconds(ttl)))
        table.add_row(*first, *(_text(format_share(by_policy.get(p))) for p in policies))
    return [table]


def _refresh(refresh: Mapping[str, Any] | None) -> list[RenderableType]:
    if not refresh:
        return []
    stale_ttl = refresh.get("stale_ttl_s")
    line = _line(
        f"At TTL {format_seconds(refresh.get('ttl_s'))}, early refresh (XFetch) would turn ",
        (format_count(refresh.get("early_refresh_hits")), "bold"),
        " misses into hits that wait for nothing",
    )
    if stale_ttl is not None:
        line.append_text(
            _line(
                f"; a stale_ttl of {format_seconds(stale_ttl)}, ",
                (format_count(refresh.get("stale_ttl_hits")), "bold"),
                " more",
            )
        )
    line.append(".")
    return [line]


def _cache_recommendation(rec: Mapping[str, Any]) -> list[RenderableType]:
    options = [
        ("TTL ", format_seconds(rec.get("ttl_s"))),
        ("early refresh ", "on" if rec.get("early_refresh") else "off"),
    ]
    if rec.get("stale_ttl_s") is not None:
        options.append(("stale_ttl ", format_seconds(rec.get("stale_ttl_s"))))
    if rec.get("local_ttl_s") is not None:
        options.append(("local_ttl ", format_seconds(rec.get("local_ttl_s"))))
    if rec.get("memory_bytes") is not None:
        options.append(("memory ", format_bytes(rec.get("memory_bytes"))))
    pieces: list[tuple[object, str] | str] = [("Recommendation: ", "bold green")]
    for index, (name, value) in enumerate(options):
        pieces.extend([", " if index else "", name, (value, "bold")])
    pieces.extend([" → hit ratio ", (format_share(rec.get("hit_ratio")), "bold")])
    if rec.get("stale_hit_share") is not None:
        pieces.extend([", stale hits ", (format_share(rec.get("stale_hit_share")), "bold")])
    return [_line(*pieces), *_reason_and_code(rec)]


def _reason_and_code(rec: Mapping[str, Any]) -> list[RenderableType]:
    from rich.syntax import Syntax

    parts: list[RenderableType] = []
    if rec.get("reason"):
        parts.append(_line(("Why: ", "italic"), clean(rec.get("reason"))))
    code = rec.get("code")
    if code:
        # No panel and no indent: the lines copy from the terminal as they paste into a file.
        parts.append(
            Syntax(
                clean(code, newlines=True).rstrip("\n"),
                "python",
                theme="ansi_dark",
                word_wrap=True,
                background_color="default",
            )
        )
    parts.append(_line(""))
    return parts


# --- rate limits ----------------------------------------------------------------------------


def _ratelimit_settings(settings: Mapping[str, Any]) -> list[RenderableType]:
    protect = settings.get("protect")
    budget = ""
    if protect is not None:
        budget = f" (refuse at most {100 - protect:g} % of ordinary clients' requests)"
    return [
        _line(
            "Clients by ",
            (settings.get("by"), "bold"),
            ", protecting ",
            (f"{protect:g} %" if protect is not None else NONE, "bold"),
            budget,
        ),
        _line(""),
    ]


#: The rates of the schema's ``rates`` block: key, label, unit.
RATE_LABELS = (
    ("per_second", "per second", "s"),
    ("per_minute", "per minute", "min"),
    ("per_hour", "per hour", "h"),
)


def _route(
    route: Mapping[str, Any], settings: Mapping[str, Any], label: str | None
) -> list[RenderableType]:
    parts: list[RenderableType] = [
        _rule(label or "Route", "" if label else route.get("name")),
        _line(
            f"{format_count(route.get('requests'))} requests from "
            f"{format_count(route.get('clients'))} clients (by {clean(settings.get('by'))})"
        ),
    ]
    rates = route.get("rates") or {}
    burst = route.get("burst") or {}
    if rates or burst:
        table = _table(
            "Requests per client",
            [("", "left"), ("p50", "right"), ("p90", "right"), ("p99", "right"), ("max", "right")],
        )
        for key, label_, unit in RATE_LABELS:
            values = rates.get(key)
            if values:
                table.add_row(
                    _text(label_),
                    *(
                        _text(format_rate(values.get(p), unit))
                        for p in ("p50", "p90", "p99", "max")
                    ),
                )
        if burst:
            table.add_row(
                _text("busiest 1 s"),
                *(
                    _text(format_count(burst.get(p)) if p in burst else NONE)
                    for p in ("p50", "p90", "p99", "max")
                ),
            )
        parts.append(table)
    talkers = route.get("top_talkers") or []
    if talkers:
        table = _table(
            "Top talkers",
            [("client", "left"), ("requests", "right"), ("share", "right"), ("user agent", "left")],
        )
        for talker in talkers:
            agent = talker.get("user_agent")
            table.add_row(
                _text(talker.get("client")),
                _text(format_count(talker.get("requests"))),
                _text(format_share(talker.get("share"))),
                _text(agent if agent is not None else NONE, "" if agent is not None else "dim"),
            )
        parts.append(table)
    parts.extend(_candidates(route.get("candidates") or [], route.get("recommendation") or {}))
    rec = route.get("recommendation")
    if rec:
        parts.extend(_ratelimit_recommendation(rec, settings))
    return parts


def _is_chosen(candidate: Mapping[str, Any], rec: Mapping[str, Any]) -> bool:
    return bool(rec) and all(
        candidate.get(key) == rec.get(key) for key in ("algorithm", "limit", "window_s")
    )


def _candidates(
    candidates: Sequence[Mapping[str, Any]], rec: Mapping[str, Any]
) -> list[RenderableType]:
    if not candidates:
        return []
    table = _table(
        "Candidate limits (refused shares)",
        [
            ("algorithm", "left"),
            ("limit", "right"),
            ("window", "right"),
            ("requests", "right"),
            ("clients", "right"),
            ("ordinary", "right"),
            ("most refused", "left"),
        ],
    )
    for candidate in candidates:
        mark = _is_chosen(candidate, rec)
        top = candidate.get("refused_top") or []
        table.add_row(
            _text(("▶ " if mark else "") + clean(candidate.get("algorithm"))),
            _text(format_count(candidate.get("limit"))),
            _text(format_seconds(candidate.get("window_s"))),
            _text(format_share(candidate.get("refused_requests_share"))),
            _text(format_share(candidate.get("refused_clients_share"))),
            _text(format_share(candidate.get("refused_ordinary_share"))),
            _text(
                ", ".join(
                    f"{clean(t.get('client'))} ({format_count(t.get('refused'))})" for t in top[:3]
                )
                or NONE
            ),
            style="bold" if mark else None,
        )
    return [table]


def _ratelimit_recommendation(
    rec: Mapping[str, Any], settings: Mapping[str, Any]
) -> list[RenderableType]:
    heavy = rec.get("refused_heavy_clients")
    return [
        _line(
            ("Recommendation: ", "bold green"),
            (rec.get("algorithm"), "bold"),
            ", ",
            (format_count(rec.get("limit")), "bold"),
            f" per {format_seconds(rec.get('window_s'))} → refuses ",
            (format_share(rec.get("refused_ordinary_share")), "bold"),
            " of ordinary clients' requests and caps ",
            (format_count(heavy), "bold"),
            " heavy client" + ("" if heavy == 1 else "s"),
        ),
        *_reason_and_code(rec),
    ]
