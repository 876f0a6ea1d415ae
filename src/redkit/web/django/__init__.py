"""redkit in Django: a cache backend, a session engine and rate limits, switched on by settings.

::

    CACHES = {"default": {"BACKEND": "redkit.web.django.RedisCache",
                          "LOCATION": "redis://127.0.0.1:6379/0"}}
    SESSION_ENGINE = "redkit.web.django.sessions"

- The cache backend (:mod:`.cache`): :class:`RedisCache`, Django's whole ``BaseCache``
  contract on redkit's :class:`~redkit.Cache`; :func:`cache_page` (:mod:`.response_cache`)
  caches views' responses, with ETags and 304s.
- The session engine (:mod:`.sessions`): its ``SessionStore`` on redkit's session store;
  :class:`SessionMiddleware` (:mod:`.middleware`) answers a failed session 503 or 409.
- Rate limits (:mod:`.limits`): the ``ratelimit`` decorator and ``RatelimitMiddleware``.
  (The module is not named ``ratelimit``: importing it would make ``redkit.web.django.ratelimit``
  the module rather than the decorator.)

It needs ``redkit[django]``. The names are loaded on first use, so that Django's settings
may name this package before Django is configured.
"""

from __future__ import annotations

from typing import Any

from redkit.web._extras import framework_missing

try:
    import django  # noqa: F401  (every module here builds on it)
except ModuleNotFoundError as exc:  # an optional dependency: say which extra
    raise framework_missing(__name__, "Django", "django", exc) from exc

__all__ = [
    "RatelimitMiddleware",
    "RedisCache",
    "SessionMiddleware",
    "arevoke_user_sessions",
    "cache_page",
    "ratelimit",
    "revoke_user_sessions",
]

# Which module holds each public name: importing them here at once would import Django's
# cache and auth machinery before the project's settings are configured.
_HOMES = {
    "RedisCache": "redkit.web.django.cache",
    "cache_page": "redkit.web.django.response_cache",
    "ratelimit": "redkit.web.django.limits",
    "RatelimitMiddleware": "redkit.web.django.limits",
    "revoke_user_sessions": "redkit.web.django.sessions",
    "arevoke_user_sessions": "redkit.web.django.sessions",
    "SessionMiddleware": "redkit.web.django.middleware",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
