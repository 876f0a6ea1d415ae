"""The ``redkit`` command line, on click (parsing) and rich (tables, progress bars).

``main`` is the console script's entry point (``redkit = "redkit.cli:main"``). Each command
group lives in a module of its own: :mod:`redkit.cli.serve` (demo, gateway, dashboard),
:mod:`redkit.cli.advise`, :mod:`redkit.cli.keyspace` (inspect, keys),
:mod:`redkit.cli.features` (ratelimit, cache, sessions) and :mod:`redkit.cli.stats`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

#: The line printed when the command line's libraries are missing.
MISSING_EXTRA = "redkit: error: the command line needs click and rich: pip install 'redkit[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``redkit`` command; return its exit status."""
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        print(MISSING_EXTRA, file=sys.stderr)
        return 2
    from redkit.cli.app import run

    return run(sys.argv[1:] if argv is None else list(argv))
