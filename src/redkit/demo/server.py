"""``redkit demo``: serve the demo app on an embedded Redis until Ctrl-C.

With ``REDIS_URL`` set, or Upstash's variables (``UPSTASH_REDIS_REST_URL`` and
``UPSTASH_REDIS_REST_TOKEN``, or Vercel's ``KV_REST_API_*``), the demo uses that Redis instead of
starting one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import warnings
from collections.abc import Mapping
from typing import TextIO

from redkit.core.errors import InsecureCookieWarning
from redkit.drivers.connect import from_env
from redkit.drivers.embedded import EmbeddedRedis

__all__ = ["DEFAULT_PORT", "main"]

DEFAULT_PORT = 8000
_CONFIGURED = ("REDIS_URL", "UPSTASH_REDIS_REST_URL", "KV_REST_API_URL")


def _listen(host: str, port: int, out: TextIO) -> socket.socket:
    """A listening socket on ``port``, or on a free port when that one is taken."""
    for candidate in (port, 0):
        listener = socket.socket(
            socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
        )
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((host, candidate))
        except OSError as exc:
            listener.close()
            if exc.errno != errno.EADDRINUSE or candidate == 0:
                raise
            print(f"Port {port} is taken: using a free one.", file=out, flush=True)
            continue
        listener.listen(128)
        return listener
    raise AssertionError("unreachable")  # pragma: no cover


def main(
    out: TextIO,
    environ: Mapping[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
) -> int:
    """Serve the demo until interrupted (Ctrl-C, SIGTERM); return the exit status.

    The port is ``port``, or a free one when it is taken (0: always a free one). The URL is
    printed once the socket listens: requests sent then wait for the app to start.
    """
    import uvicorn

    from redkit.demo.app import create_app, installed_metrics
    from redkit.demo.db import Database

    env = os.environ if environ is None else environ
    with contextlib.ExitStack() as stack:
        if any(env.get(name) for name in _CONFIGURED):
            redis = from_env(env)
            where = "REDIS_URL" if env.get("REDIS_URL") else "Upstash's REST API"
            print(f"Using the Redis at {where}: {redis!r}.", file=out, flush=True)
        else:
            server = stack.enter_context(EmbeddedRedis())
            redis = server.connect()
            print(f"Started an embedded redis-server on {server.url} (pid {server.pid}).",
                  file=out, flush=True)  # fmt: skip
        stack.callback(redis.close)
        # The demo serves plain HTTP on loopback, so its session cookie cannot be Secure; the
        # middleware's warning about that (raised when the app starts) says nothing new here.
        warnings.filterwarnings("ignore", category=InsecureCookieWarning)
        metrics = installed_metrics()
        if metrics is not None:
            stack.callback(metrics.disable)
        app = create_app(redis, Database(), metrics=metrics)
        listener = stack.enter_context(_listen(host, port, out))
        bound_port = listener.getsockname()[1]
        url = f"http://{f'[{host}]' if ':' in host else host}:{bound_port}"
        config = uvicorn.Config(
            app, log_level="warning", access_log=False, proxy_headers=False, lifespan="off"
        )
        web = uvicorn.Server(config)
        print(f"redkit demo: {url}/  (Ctrl-C stops it)", file=out, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            # uvicorn shuts down on Ctrl-C, then raises it again: here it is the way to stop.
            web.run(sockets=[listener])
    if not any(env.get(name) for name in _CONFIGURED):
        print("Stopped the embedded redis-server.", file=out, flush=True)
    return 0
