"""The serving commands: ``redkit demo``, ``redkit gateway`` and ``redkit dashboard``."""

from __future__ import annotations

import os
import sys

import click

from redkit.cli.common import redis_option, rest_token
from redkit.core.errors import ConfigurationError

__all__ = ["dashboard", "demo", "gateway"]


@click.command(
    short_help="serve the demo API on an embedded Redis (or the one at REDIS_URL)",
    help="Serve a FastAPI demo of redkit's rate limits, caches and sessions, on a SQLite "
    "database and a real redis-server that it starts and stops itself. With REDIS_URL set, "
    "use that Redis instead. Ctrl-C stops it.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="the address to serve on")
@click.option(
    "--port", type=int, default=8000, show_default=True, help="the port (taken: a free one)"
)
def demo(host: str, port: int) -> int:
    """``redkit demo``."""
    from redkit.demo.server import main as serve_demo

    return serve_demo(sys.stdout, host=host, port=port)


@click.command(
    short_help="serve an Upstash-compatible REST API in front of a Redis",
    help="Serve Upstash's REST protocol in front of any Redis (standalone or cluster), so "
    "that the official Upstash SDKs run on it. Each flag has an environment variable "
    "(REDKIT_GATEWAY_TOKEN...), the better place for tokens; see docs/gateway.md.",
)
@click.option("--redis", metavar="URL", help="redis://, rediss://, redis+cluster://")
@click.option("--token", metavar="T", help="the read-write token")
@click.option("--read-only-token", metavar="T", help="a read-only token")
@click.option(
    "--tokens-file", metavar="PATH", help='JSON: {"<token>": {"redis": URL, "read_only": b}}'
)
@click.option(
    "--allow-command",
    metavar="CMD",
    multiple=True,
    help="a denied command to allow (FLUSHALL, CONFIG...); repeat for more",
)
@click.option("--max-body", type=int, metavar="BYTES", help="default 10 MB")
@click.option("--max-response", type=int, metavar="BYTES", help="the largest reply; default 16 MiB")
@click.option(
    "--script-timeout",
    type=float,
    metavar="SECONDS",
    help="kill a script that runs longer; default 5, 0 for no limit",
)
@click.option(
    "--max-streams",
    type=int,
    metavar="N",
    help="subscriptions (/subscribe, /psubscribe) open at once at most; default 100",
)
@click.option("--host", help="the address to serve on (default 127.0.0.1)")
@click.option("--port", type=int, help="the port (default 8080)")
def gateway(
    redis: str | None,
    token: str | None,
    read_only_token: str | None,
    tokens_file: str | None,
    allow_command: tuple[str, ...],
    max_body: int | None,
    max_response: int | None,
    script_timeout: float | None,
    max_streams: int | None,
    host: str | None,
    port: int | None,
) -> int:
    """``redkit gateway``: settings from the flags, else the environment."""
    from redkit.gateway.server import build
    from redkit.gateway.server import main as serve_gateway

    app = build(
        redis=redis,
        token=token,
        read_only_token=read_only_token,
        tokens_file=tokens_file,
        allow=list(allow_command) or None,
        max_body=max_body,
        max_response=max_response,
        script_timeout=script_timeout,
        max_streams=max_streams,
    )
    host = host or os.environ.get("REDKIT_GATEWAY_HOST") or "127.0.0.1"
    port = port if port is not None else _port_from_env("REDKIT_GATEWAY_PORT", 8080)
    upstream = redis or os.environ.get("REDKIT_GATEWAY_REDIS") or os.environ.get("REDIS_URL")
    return serve_gateway(sys.stdout, app, host=host, port=port, redis=upstream)


def _port_from_env(variable: str, default: int) -> int:
    raw = os.environ.get(variable) or str(default)
    if not raw.isdigit():
        raise ConfigurationError(
            f"{variable} must be a port number, got {raw!r}", variable=variable
        )
    return int(raw)


@click.command(
    short_help="serve the dashboard: limits, caches, sessions, keyspace",
    help="Serve redkit's dashboard for a Redis (rate limits, cache hit ratios, sessions, the "
    "keyspace). It needs a token (--token or REDKIT_DASHBOARD_TOKEN) unless bound to loopback "
    "with --no-auth; the actions (reset, invalidate, revoke) need the admin token.",
)
@redis_option
@click.option("--host", default="127.0.0.1", show_default=True, help="the address to serve on")
@click.option("--port", type=int, default=8377, show_default=True, help="the port")
@click.option(
    "--token",
    envvar="REDKIT_DASHBOARD_TOKEN",
    metavar="T",
    help="read access (env REDKIT_DASHBOARD_TOKEN)",
)
@click.option(
    "--admin-token",
    envvar="REDKIT_DASHBOARD_ADMIN_TOKEN",
    metavar="T",
    help="the actions' token (env REDKIT_DASHBOARD_ADMIN_TOKEN)",
)
@click.option("--no-auth", is_flag=True, help="no token, on a loopback address only")
def dashboard(
    redis_url: str | None,
    host: str,
    port: int,
    token: str | None,
    admin_token: str | None,
    no_auth: bool,
) -> int:
    """``redkit dashboard``: the dashboard's server, imported only when asked for."""
    url = redis_url or os.environ.get("REDIS_URL") or os.environ.get("UPSTASH_REDIS_REST_URL")
    if not url:
        raise ConfigurationError(
            "redkit dashboard needs a Redis: give --redis URL or set REDIS_URL "
            "(or UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN)",
            variable="REDIS_URL",
        )
    token_of_rest = rest_token() if url.startswith(("http://", "https://")) else None
    try:
        # Lazily: the dashboard's libraries (starlette, uvicorn) load only for this command.
        from redkit.dashboard.server import serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("redkit"):
            raise
        print(
            f"redkit: error: redkit dashboard needs {exc.name}: pip install 'redkit[dashboard]'",
            file=sys.stderr,
        )
        return 1
    serve(
        url, host=host, port=port, token=token, admin_token=admin_token, no_auth=no_auth,
        rest_token=token_of_rest,
    )  # fmt: skip
    return 0
