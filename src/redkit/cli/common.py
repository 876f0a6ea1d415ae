"""What the operations commands share: ``--redis``, ``--json``, the connection, the output.

Every name and key printed comes from Redis, so from whoever wrote it: it is printed as plain
text (never as rich markup) with control characters escaped, so a key cannot drive the
terminal.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from redkit.advise.report import clean
from redkit.core.errors import ConfigurationError
from redkit.drivers.connect import Connection, connect, from_env

if TYPE_CHECKING:
    from redkit.drivers.rest import RestConnection

__all__ = [
    "as_json",
    "console",
    "finite",
    "json_option",
    "open_redis",
    "redis_option",
    "table",
    "text",
]

F = TypeVar("F", bound=Callable[..., Any])

_REDIS_HELP = (
    "redis://, rediss://, unix://, redis+cluster:// or an Upstash https:// REST URL (its token "
    "from UPSTASH_REDIS_REST_TOKEN); default: REDIS_URL, else UPSTASH_REDIS_REST_URL and "
    "UPSTASH_REDIS_REST_TOKEN"
)


def redis_option(fn: F) -> F:
    """``--redis URL``: which Redis (else the environment, as :func:`redkit.from_env`)."""
    return click.option("--redis", "redis_url", metavar="URL", help=_REDIS_HELP)(fn)


def json_option(fn: F) -> F:
    """``--json``: one JSON document on stdout instead of tables."""
    return click.option(
        "--json", "as_json_output", is_flag=True, help="print one JSON document instead"
    )(fn)


def rest_token() -> str:
    """The token of a REST URL given as the Redis: ``UPSTASH_REDIS_REST_TOKEN``.

    Raises:
        ConfigurationError: when it is not set.

    """
    token = os.environ.get("UPSTASH_REDIS_REST_TOKEN")
    if not token:
        raise ConfigurationError(
            "the Redis is a REST URL: set UPSTASH_REDIS_REST_TOKEN to its token",
            variable="UPSTASH_REDIS_REST_TOKEN",
        )
    return token


@contextmanager
def open_redis(url: str | None) -> Iterator[Connection | RestConnection]:
    """The connection ``--redis`` names (or the environment's), closed when the block ends."""
    if url is None:
        conn = from_env()
    elif url.startswith(("http://", "https://")):
        conn = connect(url, token=rest_token())
    else:
        conn = connect(url)
    try:
        yield conn
    finally:
        conn.close()


def finite(value: Any) -> Any:
    """``value`` with infinities and NaN as ``null``: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def as_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout."""
    json.dump(finite(data), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def console() -> Console:
    """A console on stdout; wide enough off a terminal that key names are not cut."""
    out = sys.stdout
    return Console(file=out, width=None if out.isatty() else 120, highlight=False)


def text(value: object, style: str = "") -> Text:
    """``value`` as plain text, control characters escaped; never markup."""
    return Text(clean(value), style=style)


def table(title: str, *columns: str) -> Table:
    """A table whose columns after the first are right-aligned figures."""
    grid = Table(title=text(title), title_justify="left", show_edge=False)  # never markup
    for index, column in enumerate(columns):
        grid.add_column(column, justify="left" if index == 0 else "right", overflow="fold")
    return grid
