"""Serving web apps for tests: real servers on loopback, in a thread, stopped after.

``serve_asgi(app)`` runs an ASGI app (Starlette, FastAPI, pure ASGI) under uvicorn;
``serve_wsgi(app)`` runs a WSGI app (Flask) under werkzeug's threaded server. Both yield the
base URL (``http://127.0.0.1:<port>``) and stop the server when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from redkit.drivers.connect import Connection

__all__ = ["serve_asgi", "serve_wsgi"]


@contextlib.contextmanager
def serve_asgi(app: Any, conn: Connection | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port; yield its base URL.

    uvicorn's proxy headers are off: it would otherwise rewrite the client address from
    ``X-Forwarded-For`` itself (it trusts 127.0.0.1 by default), and the tests are about
    redkit's own resolution. ``conn``'s asyncio clients, which belong to the server thread's
    event loop, are closed in that loop before it ends.
    """
    import uvicorn

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, uvicorn's separate writes of a response's
    # head and body meet the client's delayed ACK, and every request takes 40 ms.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="auto", log_level="warning", access_log=False, proxy_headers=False
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        try:
            await server.serve(sockets=[listener])
        finally:
            if conn is not None:
                await conn.aclose()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        listener.close()


@contextlib.contextmanager
def serve_wsgi(app: Any) -> Iterator[str]:
    """Serve ``app`` with werkzeug's threaded server on 127.0.0.1; yield its base URL."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass  # one line per request would bury the test output

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
