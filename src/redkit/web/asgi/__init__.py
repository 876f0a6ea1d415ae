"""redkit in Starlette and any ASGI app: pure ASGI middleware (needs ``redkit[starlette]``).

- :class:`SessionMiddleware`: server-side sessions, ``request.session`` a lazy
  :class:`RequestSession` (:mod:`.sessions`).
"""

from __future__ import annotations

from redkit.web._extras import framework_missing

try:
    import starlette  # noqa: F401  (every module here builds on Starlette's types)
except ModuleNotFoundError as exc:  # an optional dependency: say which extra
    raise framework_missing(__name__, "Starlette", "starlette", exc) from exc

from redkit.web.asgi.sessions import RequestSession, SessionMiddleware, get_session, load_session

__all__ = [
    "RequestSession",
    "SessionMiddleware",
    "get_session",
    "load_session",
]
