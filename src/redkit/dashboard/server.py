"""``redkit dashboard``: the dashboard on its own, served by uvicorn."""

from __future__ import annotations

import ipaddress

# At the top, not in serve(): `redkit dashboard` imports this module to learn whether the
# dashboard extra (uvicorn, starlette, jinja2, matplotlib) is installed.
import uvicorn

from redkit.core.errors import InvalidArgumentError
from redkit.dashboard.app import Dashboard

__all__ = ["is_loopback", "serve"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.0/8``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(
    redis_url: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8377,
    token: str | None,
    admin_token: str | None,
    no_auth: bool = False,
) -> None:
    """Serve the dashboard of ``redis_url`` on ``host:port`` until interrupted.

    Raises:
        InvalidArgumentError: no token, unless ``no_auth`` on a loopback address; ``no_auth``
            on any other address; a token too short; a port not from 1 to 65535.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgumentError(f"port must be an int from 1 to 65535, got {port!r}")
    if no_auth and not is_loopback(host):
        raise InvalidArgumentError(
            f"no_auth serves the dashboard to anyone who reaches {host}: it is allowed on "
            "loopback only (--host 127.0.0.1); set REDKIT_DASHBOARD_TOKEN for any other host"
        )
    if token is None and not no_auth:
        raise InvalidArgumentError(
            "the dashboard needs a token: set REDKIT_DASHBOARD_TOKEN (and "
            "REDKIT_DASHBOARD_ADMIN_TOKEN for the actions), or bind to 127.0.0.1 with --no-auth"
        )
    app = Dashboard(redis_url, token=token, admin_token=admin_token, no_auth=no_auth)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
