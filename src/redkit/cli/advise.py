"""``redkit advise cache|ratelimit|sample``: replay a request log, recommend settings."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import click

from redkit.cli.common import as_json
from redkit.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from redkit.advise.trace import Trace

__all__ = ["advise"]


@click.group(
    short_help="replay a request log and recommend cache and rate-limit settings",
    help="Replay a request log (access logs, JSON lines, CSV or cache traces) against "
    "candidate cache and rate-limit settings and recommend some, with the numbers and the "
    "code to paste. Try it on a sample: redkit advise cache --sample",
)
def advise() -> None:
    """``redkit advise``."""


def _log_options(fn: Any) -> Any:
    """The flags ``cache`` and ``ratelimit`` share."""
    for option in reversed(
        [
            click.argument("logs", nargs=-1, metavar="LOG..."),
            click.option("--sample", is_flag=True, help="read redkit's shipped sample log instead"),
            click.option(
                "--format",
                "log_format",
                default="auto",
                metavar="FORMAT",
                help="auto (the default; it knows a trace recorder's file too), clf, combined, "
                "jsonl, csv or twitter",
            ),
            click.option(
                "--key-pattern",
                multiple=True,
                metavar="REGEX=NAME",
                help="put keys (paths) matching REGEX in namespace NAME; repeat for more",
            ),
            click.option("--html", metavar="PATH", help="also write an HTML report with charts"),
            click.option(
                "--json",
                "as_json_output",
                is_flag=True,
                help="print the advice as JSON instead of tables",
            ),
        ]
    ):
        fn = option(fn)
    return fn


@advise.command(
    "cache",
    short_help="TTLs, early refresh, stale_ttl, a local tier and memory, per namespace",
    help="Simulate a cache-aside Cache on the log's reads and writes, per namespace (route "
    "template), at a range of TTLs and memory budgets, and recommend its settings.",
)
@_log_options
@click.option("--budget", metavar="SIZE", help="the Redis memory for the cache: 256MB, 1 GiB...")
@click.option(
    "--max-stale",
    metavar="DURATION",
    help="how long past its TTL a value may be served while it reloads (stale_ttl): 30s",
)
@click.option(
    "--max-stale-hits",
    default="1",
    metavar="PERCENT",
    help="the most of a namespace's hits a TTL may serve stale were writes not invalidated "
    "(default 1; 100 when every write invalidates its key)",
)
@click.option(
    "--loader-ms",
    default="50",
    metavar="MS",
    help="how long a load from the origin takes, in ms (default 50)",
)
@click.option("--ttl", metavar="DURATION", help="a TTL to try besides the usual ones: 45s, 10m...")
def advise_cache_command(**flags: Any) -> int:
    """``redkit advise cache``."""
    return _advise(SimpleNamespace(advice="cache", **flags))


@advise.command(
    "ratelimit",
    short_help="an algorithm and limit per route (and tier) that spares ordinary clients",
    help="Measure each client's request rates per route, simulate the five algorithms at "
    "candidate limits, and recommend, per route, the limit that refuses ordinary clients "
    "least while capping the heaviest ones.",
)
@_log_options
@click.option(
    "--by",
    default="ip",
    metavar="CLIENT",
    help="who a limit counts: ip (the default), user, or header:NAME (header:X-API-Key)",
)
@click.option(
    "--protect",
    default="99",
    metavar="PERCENT",
    help="the share of ordinary clients' requests a limit must let through (default 99)",
)
@click.option(
    "--tier-by",
    metavar="FIELD",
    help="a field naming each client's tier (header:X-Plan): a limit per tier",
)
def advise_ratelimit_command(**flags: Any) -> int:
    """``redkit advise ratelimit``."""
    return _advise(SimpleNamespace(advice="ratelimit", **flags))


@advise.command(
    "sample",
    short_help="write a generated access log to try the advice on",
    help="Write a realistic Combined Log Format log (routes, Zipf-distributed ids, writes, "
    "browsers, a scraper bot), the same for the same seed.",
)
@click.argument("out", metavar="OUT")
@click.option("--requests", type=int, default=100_000, help="lines (default 100000)")
@click.option("--clients", type=int, default=2000, help="ordinary clients")
@click.option("--seed", type=int, default=14, help="the random seed (default 14)")
def advise_sample_command(out: str, requests: int, clients: int, seed: int) -> int:
    """``redkit advise sample OUT``."""
    return _advise(
        SimpleNamespace(advice="sample", out=out, requests=requests, clients=clients, seed=seed)
    )


def _advise(args: Any) -> int:
    """``redkit advise cache|ratelimit|sample``: check every flag, read, advise, report."""
    from redkit.advise.sample import generate_log

    if args.advice == "sample":
        if args.out == "-":
            generate_log(sys.stdout, requests=args.requests, clients=args.clients, seed=args.seed)
        else:
            _writable(args.out, "OUT")
            written = generate_log(
                args.out, requests=args.requests, clients=args.clients, seed=args.seed
            )
            print(f"redkit: wrote {written:,} lines to {args.out}", file=sys.stderr)
        return 0
    logs = _logs(args)
    if args.html is not None:
        _writable(args.html, "--html")
    try:
        if args.advice == "cache":
            data = _advise_cache(args, logs)
        else:
            data = _advise_ratelimit(args, logs)
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("redkit"):
            raise  # a broken install of redkit itself: the traceback helps
        # The analyses need the advise extra; say so, not a traceback.
        print(
            f"redkit: error: redkit advise needs {exc.name or 'its extra'}: "
            "pip install 'redkit[advise]'",
            file=sys.stderr,
        )
        return 1
    from redkit.advise import report

    if args.html is not None:
        from redkit.advise.html import render_html

        page = render_html(data)
        try:
            Path(args.html).write_text(page, encoding="utf-8")
        except OSError as exc:
            raise InvalidArgumentError(
                f"--html: cannot write {args.html}: {exc.strerror or exc}"
            ) from None
    if args.as_json_output:
        as_json(data)
    else:
        report.print_report(data)
    if args.html is not None:
        print(f"redkit: wrote the HTML report to {args.html}", file=sys.stderr)
    return 0


def _logs(args: Any) -> list[str]:
    if args.sample and args.logs:
        raise InvalidArgumentError(
            f"redkit advise {args.advice}: give LOG files or --sample, not both"
        )
    if args.sample:
        from redkit.advise.sample import sample_log

        return [str(sample_log())]
    if not args.logs:
        raise InvalidArgumentError(
            f"redkit advise {args.advice} needs a LOG file to read (or --sample, to try it on "
            "redkit's sample log)"
        )
    return list(args.logs)


def _writable(path: str, flag: str) -> None:
    """Fail before a long analysis, not after it, when its output cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise InvalidArgumentError(f"{flag}: {path} is a directory; give a file name")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidArgumentError(f"{flag}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise InvalidArgumentError(f"{flag}: cannot write {path} (permission denied)")


def _attribute(text: str, flag: str, *, simple: Sequence[str] = ()) -> str:
    """``ip``/``user`` (the ``simple`` ones) or ``header:NAME`` / ``field:NAME``."""
    if text in simple:
        return text
    kind, sep, name = text.partition(":")
    if sep and kind in ("header", "field") and name.strip() and name == name.strip():
        return text
    choices = ", ".join([*simple, "header:NAME (header:X-API-Key)", "field:NAME"])
    raise InvalidArgumentError(f"{flag} must be one of {choices}; got {text!r}")


def _number(text: str, flag: str, *, low: float, high: float, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not low <= value <= high:  # nan fails too
        raise InvalidArgumentError(f"{flag} must be {what}, got {text!r}")
    return value


def _is_recorded(path: str) -> bool:
    """Whether ``path`` starts with a trace recorder's header (``{"redkit_trace": 1, ...}``)."""
    import gzip

    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
            first = next((line for line in lines if line.strip()), "")
        header = json.loads(first)
    except (OSError, EOFError, ValueError):
        return False  # read_trace says what is wrong with it
    return isinstance(header, dict) and "redkit_trace" in header


def _read(args: Any, logs: list[str], attributes: Sequence[str]) -> Trace:
    from redkit.advise import read_recorded, read_trace, report

    # A recorder's trace (docs/advise-recorder.md) has a reader of its own.
    recorded = [] if args.log_format != "auto" else [log for log in logs if _is_recorded(log)]
    if recorded:
        if len(logs) > 1:
            raise InvalidArgumentError(
                f"{recorded[0]} is a recorded trace: give it alone (several recorders' files "
                "can be joined first: cat a.jsonl b.jsonl > trace.jsonl)"
            )
        if args.key_pattern:
            raise InvalidArgumentError(
                "--key-pattern does not apply to a recorded trace: its namespaces are the "
                "caches' and limiters' own"
            )
        return read_recorded(recorded[0])
    label = "the sample log" if args.sample else ", ".join(Path(log).name for log in logs)
    with report.progress_callback(f"reading {label}") as progress:
        return read_trace(
            logs,
            format=args.log_format,
            key_patterns=list(args.key_pattern),
            attributes=attributes,
            progress=progress,
        )


def _advise_cache(args: Any, logs: list[str]) -> dict[str, Any]:
    from redkit.advise import report
    from redkit.advise._units import parse_seconds, parse_size
    from redkit.advise.templates import parse_key_pattern

    # Every flag is checked before the log is read: a typo costs no wait.
    budget = None if args.budget is None else parse_size(args.budget, name="--budget")
    max_stale = (
        None
        if args.max_stale is None
        else parse_seconds(args.max_stale, name="--max-stale", allow_zero=True)
    )
    loader_ms = _number(
        args.loader_ms, "--loader-ms", low=0, high=3_600_000, what="a number of milliseconds"
    )
    stale_hits = _number(
        args.max_stale_hits, "--max-stale-hits", low=0, high=100, what="a percentage (1)"
    )
    extra = None if args.ttl is None else parse_seconds(args.ttl, name="--ttl")
    for spec in args.key_pattern:
        parse_key_pattern(spec)
    trace = _read(args, logs, ())
    from redkit.advise.cache_advice import advise_cache
    from redkit.advise.cache_sim import DEFAULT_TTLS

    # The user's TTL among the usual ones.
    ttls: list[float | str] = sorted({*DEFAULT_TTLS, *([] if extra is None else [extra])})
    with report.progress_callback("simulating", unit="steps") as progress:
        advice = advise_cache(
            trace,
            budget=budget,
            max_stale=max_stale,
            loader_ms=loader_ms,
            ttls=ttls,
            max_stale_share=stale_hits / 100,
            progress=progress,
        )
    return advice.to_json()


def _advise_ratelimit(args: Any, logs: list[str]) -> dict[str, Any]:
    from redkit.advise import report
    from redkit.advise.templates import parse_key_pattern

    by = _attribute(args.by, "--by", simple=("ip", "user"))
    tier_by = None if args.tier_by is None else _attribute(args.tier_by, "--tier-by")
    protect = _number(
        args.protect, "--protect", low=1, high=100, what="a percentage from 1 to 100 (99)"
    )
    for spec in args.key_pattern:
        parse_key_pattern(spec)
    attributes = [a for a in (by, tier_by) if a is not None and ":" in a]
    trace = _read(args, logs, list(dict.fromkeys(attributes)))
    from redkit.advise.ratelimit_advice import advise_ratelimit

    with report.progress_callback("simulating", unit="steps") as progress:
        advice = advise_ratelimit(trace, by=by, protect=protect, tier_by=tier_by, progress=progress)
    return advice.to_json()
