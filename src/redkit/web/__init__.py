"""redkit in web apps: rate limits, response caching and sessions for FastAPI, Starlette, Flask.

Every framework adapter lives here, one package per framework; the features
(:mod:`redkit.ratelimit`, :mod:`redkit.cache`, :mod:`redkit.sessions`) import none.

- :mod:`redkit.web.asgi`: Starlette and any ASGI app (``redkit[starlette]``): the pure ASGI
  ``SessionMiddleware`` and ``RateLimitMiddleware``, and ``cache_response`` for endpoints.
- :mod:`redkit.web.fastapi`: FastAPI's dependencies (``RateLimit``, ``rate_limit``), and all of
  :mod:`redkit.web.asgi` and the key functions again: a FastAPI app's one import.
- :mod:`redkit.web.flask`: the one Flask extension, ``Redkit`` (rate limits, response caching,
  sessions), and ``cache_response`` for views.

The modules beside them need no web framework and are shared by every adapter: client IPs
behind proxies (:mod:`.clientip`), key functions and tier resolvers (:mod:`.keys`), the
request they read (:mod:`.request`), rate-limit headers (:mod:`.headers`), the limit rule
(:mod:`.rule`) and the response cache's rules (:mod:`.response_cache`). The session logic
the adapters share (the lazy session, its commit, the cookie) is framework-free too, in
:mod:`redkit.sessions`. A ``redkit.web.django`` would sit beside the three packages, built
on the same parts.
"""

from __future__ import annotations

from redkit.web.clientip import TrustedProxies, resolve_client_ip
from redkit.web.headers import Policy, policies_for, ratelimit_headers, retry_after_seconds
from redkit.web.keys import by_api_key, by_client_ip, by_user, hash_api_key, tier_by_api_key
from redkit.web.request import KeyFunc, RequestInfo, TierFunc
from redkit.web.rule import Decision, LimitRule, too_many_requests_body

__all__ = [
    "Decision",
    "KeyFunc",
    "LimitRule",
    "Policy",
    "RequestInfo",
    "TierFunc",
    "TrustedProxies",
    "by_api_key",
    "by_client_ip",
    "by_user",
    "hash_api_key",
    "policies_for",
    "ratelimit_headers",
    "resolve_client_ip",
    "retry_after_seconds",
    "tier_by_api_key",
    "too_many_requests_body",
]
