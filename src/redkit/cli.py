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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``redkit`` command; return its exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from redkit.demo.server import main as demo

            return demo(sys.stdout, host=args.host, port=args.port)
    except RedkitError as exc:
        print(f"redkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
