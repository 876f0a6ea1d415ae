"""The ``redkit`` command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redkit
from redkit.core.errors import InvalidArgumentError, RedkitError

if TYPE_CHECKING:
    from redkit.advise.trace import Trace

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redkit", description="Caching, rate limiting and sessions on Redis."
    )
    parser.add_argument("--version", action="version", version=f"redkit {redkit.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="serve the demo API on an embedded Redis (or the one at REDIS_URL)",
        description="Serve a FastAPI demo of redkit's rate limits, caches and sessions, on a "
        "SQLite database and a real redis-server that it starts and stops itself. With "
        "REDIS_URL set, use that Redis instead. Ctrl-C stops it.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="the address to serve on")
    demo.add_argument("--port", type=int, default=8000, help="the port (taken: a free one)")
    gateway = commands.add_parser(
        "gateway",
        help="serve an Upstash-compatible REST API in front of a Redis",
        description="Serve Upstash's REST protocol in front of any Redis (standalone or "
        "cluster), so that the official Upstash SDKs run on it. Each flag has an environment "
        "variable (REDKIT_GATEWAY_TOKEN...), the better place for tokens; see docs/gateway.md.",
    )
    gateway.add_argument("--redis", metavar="URL", help="redis://, rediss://, redis+cluster://")
    gateway.add_argument("--token", metavar="T", help="the read-write token")
    gateway.add_argument("--read-only-token", metavar="T", help="a read-only token")
    gateway.add_argument(
        "--tokens-file", metavar="PATH", help='JSON: {"<token>": {"redis": URL, "read_only": b}}'
    )
    gateway.add_argument(
        "--allow-command",
        metavar="CMD",
        action="append",
        help="a denied command to allow (FLUSHALL, CONFIG...); repeat for more",
    )
    gateway.add_argument("--max-body", type=int, metavar="BYTES", help="default 10 MB")
    gateway.add_argument(
        "--max-response", type=int, metavar="BYTES", help="the largest reply; default 16 MiB"
    )
    gateway.add_argument(
        "--script-timeout",
        type=float,
        metavar="SECONDS",
        help="kill a script that runs longer; default 5, 0 for no limit",
    )
    gateway.add_argument(
        "--max-streams",
        type=int,
        metavar="N",
        help="subscriptions (/subscribe, /psubscribe) open at once at most; default 100",
    )
    gateway.add_argument("--host", help="the address to serve on (default 127.0.0.1)")
    gateway.add_argument("--port", type=int, help="the port (default 8080)")
    _advise_parser(commands)
    return parser


def _advise_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    advise = commands.add_parser(
        "advise",
        help="replay a request log and recommend cache and rate-limit settings",
        description="Replay a request log (access logs, JSON lines, CSV or cache traces) "
        "against candidate cache and rate-limit settings and recommend some, with the numbers "
        "and the code to paste. Try it on a sample: redkit advise cache --sample",
    )
    kinds = advise.add_subparsers(dest="advice", required=True, metavar="ADVICE")
    cache = kinds.add_parser(
        "cache",
        help="TTLs, early refresh, stale_ttl, a local tier and memory, per namespace",
        description="Simulate a cache-aside Cache on the log's reads and writes, per namespace "
        "(route template), at a range of TTLs and memory budgets, and recommend its settings.",
    )
    ratelimit = kinds.add_parser(
        "ratelimit",
        help="an algorithm and limit per route (and tier) that spares ordinary clients",
        description="Measure each client's request rates per route, simulate the five "
        "algorithms at candidate limits, and recommend, per route, the limit that refuses "
        "ordinary clients least while capping the heaviest ones.",
    )
    for sub in (cache, ratelimit):
        sub.add_argument("logs", nargs="*", metavar="LOG", help="log files (.gz too), merged")
        sub.add_argument(
            "--sample", action="store_true", help="read redkit's shipped sample log instead"
        )
        sub.add_argument(
            "--format",
            default="auto",
            metavar="FORMAT",
            help="auto (the default; it knows a trace recorder's file too), clf, combined, "
            "jsonl, csv or twitter",
        )
        sub.add_argument(
            "--key-pattern",
            action="append",
            default=[],
            metavar="REGEX=NAME",
            help="put keys (paths) matching REGEX in namespace NAME; repeat for more",
        )
        sub.add_argument("--html", metavar="PATH", help="also write an HTML report with charts")
        sub.add_argument(
            "--json", action="store_true", help="print the advice as JSON instead of tables"
        )
    cache.add_argument(
        "--budget", metavar="SIZE", help="the Redis memory for the cache: 256MB, 1 GiB..."
    )
    cache.add_argument(
        "--max-stale",
        metavar="DURATION",
        help="how long past its TTL a value may be served while it reloads (stale_ttl): 30s",
    )
    cache.add_argument(
        "--max-stale-hits",
        default="1",
        metavar="PERCENT",
        help="the most of a namespace's hits a TTL may serve stale were writes not "
        "invalidated (default 1; 100 when every write invalidates its key)",
    )
    cache.add_argument(
        "--loader-ms",
        default="50",
        metavar="MS",
        help="how long a load from the origin takes, in ms (default 50)",
    )
    cache.add_argument(
        "--ttl", metavar="DURATION", help="a TTL to try besides the usual ones: 45s, 10m..."
    )
    ratelimit.add_argument(
        "--by",
        default="ip",
        metavar="CLIENT",
        help="who a limit counts: ip (the default), user, or header:NAME (header:X-API-Key)",
    )
    ratelimit.add_argument(
        "--protect",
        default="99",
        metavar="PERCENT",
        help="the share of ordinary clients' requests a limit must let through (default 99)",
    )
    ratelimit.add_argument(
        "--tier-by",
        metavar="FIELD",
        help="a field naming each client's tier (header:X-Plan): a limit per tier",
    )
    sample = kinds.add_parser(
        "sample",
        help="write a generated access log to try the advice on",
        description="Write a realistic Combined Log Format log (routes, Zipf-distributed ids, "
        "writes, browsers, a scraper bot), the same for the same seed.",
    )
    sample.add_argument("out", metavar="OUT", help="the file to write (- for stdout)")
    sample.add_argument("--requests", type=int, default=100_000, help="lines (default 100000)")
    sample.add_argument("--clients", type=int, default=2000, help="ordinary clients")
    sample.add_argument("--seed", type=int, default=14, help="the random seed (default 14)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``redkit`` command; return its exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from redkit.demo.server import main as demo

            return demo(sys.stdout, host=args.host, port=args.port)
        if args.command == "gateway":
            return _gateway(args)
        if args.command == "advise":
            return _advise(args)
    except InvalidArgumentError as exc:
        # Bad input (a flag's value, a file): one line, the usage error's exit status.
        print(f"redkit: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RedkitError as exc:
        print(f"redkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


def _gateway(args: argparse.Namespace) -> int:

    from redkit.core.errors import ConfigurationError as RedkitConfigurationError
    from redkit.gateway.server import build
    from redkit.gateway.server import main as serve

    app = build(
        redis=args.redis,
        token=args.token,
        read_only_token=args.read_only_token,
        tokens_file=args.tokens_file,
        allow=args.allow_command,
        max_body=args.max_body,
        max_response=args.max_response,
        script_timeout=args.script_timeout,
        max_streams=args.max_streams,
    )
    host = args.host or os.environ.get("REDKIT_GATEWAY_HOST") or "127.0.0.1"
    raw_port = os.environ.get("REDKIT_GATEWAY_PORT") or "8080"
    if args.port is not None:
        port = args.port
    elif raw_port.isdigit():
        port = int(raw_port)
    else:
        raise RedkitConfigurationError(
            f"REDKIT_GATEWAY_PORT must be a port number, got {raw_port!r}",
            variable="REDKIT_GATEWAY_PORT",
        )
    redis = args.redis or os.environ.get("REDKIT_GATEWAY_REDIS") or os.environ.get("REDIS_URL")
    return serve(sys.stdout, app, host=host, port=port, redis=redis)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _advise(args: argparse.Namespace) -> int:
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
    if args.json:
        json.dump(_finite(data), sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
    else:
        report.print_report(data)
    if args.html is not None:
        print(f"redkit: wrote the HTML report to {args.html}", file=sys.stderr)
    return 0


def _logs(args: argparse.Namespace) -> list[str]:
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


def _read(args: argparse.Namespace, logs: list[str], attributes: Sequence[str]) -> Trace:
    from redkit.advise import read_recorded, read_trace, report

    # A recorder's trace (docs/advise-recorder.md) has a reader of its own.
    recorded = [] if args.format != "auto" else [log for log in logs if _is_recorded(log)]
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
            format=args.format,
            key_patterns=args.key_pattern,
            attributes=attributes,
            progress=progress,
        )


def _advise_cache(args: argparse.Namespace, logs: list[str]) -> dict[str, Any]:
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


def _advise_ratelimit(args: argparse.Namespace, logs: list[str]) -> dict[str, Any]:
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


def _finite(value: Any) -> Any:
    """``value`` with infinities and NaN as ``null``: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
