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
    commands.add_parser(
        "demo",
        help="walk through redkit on an embedded Redis (or the one at REDIS_URL)",
        description="Start a real redis-server, make rate-limit decisions and cache reads "
        "with it, and stop it. With REDIS_URL set, use that Redis instead.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``redkit`` command; return its exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from redkit.demo.walkthrough import main as demo

            return demo(sys.stdout)
    except RedkitError as exc:
        print(f"redkit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
