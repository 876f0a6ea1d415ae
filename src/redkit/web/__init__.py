"""redkit in web apps: rate limits for FastAPI, Starlette (any ASGI app) and Flask.

The modules here need no web framework: client IPs behind proxies (:mod:`.clientip`), key
functions and tier resolvers (:mod:`.keys`), rate-limit headers (:mod:`.headers`) and the
rule both sides apply (:mod:`.rule`). The framework adapters import their framework:
:mod:`redkit.web.fastapi` (``RateLimit``, ``rate_limit``), :mod:`redkit.web.starlette`
(``RateLimitMiddleware``) and :mod:`redkit.web.flask` (``Redkit``).
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
