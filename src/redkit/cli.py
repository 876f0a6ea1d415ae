"""The ``redkit`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import redkit
from redkit.core.errors import RedkitError

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``redkit`` command; return its exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from redkit.demo.server import main as demo

            return demo(sys.stdout, host=args.host, port=args.port)
        if args.command == "gateway":
            return _gateway(args)
    except RedkitError as exc:
        print(f"redkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


def _gateway(args: argparse.Namespace) -> int:
    import os

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


if __name__ == "__main__":
    sys.exit(main())
