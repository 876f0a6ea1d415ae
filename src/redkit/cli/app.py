"""The ``redkit`` group, its commands, and how their errors become exit statuses."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

import redkit
from redkit.cli import advise, features, keyspace, serve, stats
from redkit.core.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidKeyError,
    RedkitError,
)

__all__ = ["RedkitGroup", "redkit_group", "run"]


class RedkitGroup(click.Group):
    """The root group: its ``main`` maps redkit's errors to exit statuses (see :func:`run`).

    So click's ``CliRunner`` and the console script see the same statuses and messages.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        """Run the command line; exit with its status (return it when not standalone)."""
        status = run(sys.argv[1:] if args is None else list(args))
        if standalone_mode:
            sys.exit(status)
        return status


@click.group(
    name="redkit",
    cls=RedkitGroup,
    help="Caching, rate limiting and sessions on Redis.",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    redkit.__version__, "--version", prog_name="redkit", message="%(prog)s %(version)s"
)
def redkit_group() -> None:
    """The ``redkit`` command: see ``redkit --help``."""


for _command in (
    serve.demo,
    serve.gateway,
    serve.dashboard,
    advise.advise,
    keyspace.inspect,
    keyspace.keys,
    features.ratelimit,
    features.cache,
    features.sessions,
    stats.stats,
):
    redkit_group.add_command(_command)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def run(argv: list[str]) -> int:
    """Parse ``argv`` and run its command; return the exit status.

    ``--help`` and ``--version`` exit with ``SystemExit(0)`` and a usage error with
    ``SystemExit(2)``, as argparse did; a command returns its status.
    """
    try:
        with redkit_group.make_context("redkit", argv) as ctx:
            status = redkit_group.invoke(ctx)
    except click.exceptions.Exit as done:
        raise SystemExit(done.exit_code) from None
    except click.UsageError as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 130
    except (InvalidArgumentError, InvalidKeyError, ConfigurationError) as exc:
        # Bad input (a flag's value, an identifier, the URL or a setting missing): one line,
        # the usage error's exit status.
        print(f"redkit: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except RedkitError as exc:
        print(f"redkit: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status if isinstance(status, int) else 0
