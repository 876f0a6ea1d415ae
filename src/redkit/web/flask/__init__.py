"""redkit in Flask: one extension, :class:`Redkit`, for rate limits, response caching and sessions.

::

    from redkit.web.flask import Redkit

    ext = Redkit(ratelimit="200 per day", cache=Cache(redis), sessions=SessionStore(redis))
    ext.init_app(app)

- The extension and its settings (:mod:`.extension`): ``@ext.limit``, ``@ext.exempt``,
  ``@ext.cache_response``; ``flask.session`` a server-side session when given a store.
- Sessions (:mod:`.sessions`): :class:`FlaskSession`, :func:`current_session` (the typed
  ``flask.session``), the :class:`RedisSessionInterface` the extension installs.
- Response caching without the extension: :func:`cache_response` on a :class:`~redkit.Cache`
  (:mod:`.cache`).

It needs ``redkit[flask]``.
"""

from __future__ import annotations

from redkit.web._extras import framework_missing

try:
    import flask  # noqa: F401  (every module here builds on it)
except ModuleNotFoundError as exc:  # an optional dependency: say which extra
    raise framework_missing(__name__, "Flask", "flask", exc) from exc

from redkit.web.clientip import TrustedProxies
from redkit.web.flask.cache import cache_response
from redkit.web.flask.extension import FlaskRequest, Redkit, RedkitState
from redkit.web.flask.sessions import FlaskSession, RedisSessionInterface, current_session
from redkit.web.keys import by_api_key, by_client_ip, by_user, tier_by_api_key

__all__ = [
    "FlaskRequest",
    "FlaskSession",
    "RedisSessionInterface",
    "Redkit",
    "RedkitState",
    "TrustedProxies",
    "by_api_key",
    "by_client_ip",
    "by_user",
    "cache_response",
    "current_session",
    "tier_by_api_key",
]
