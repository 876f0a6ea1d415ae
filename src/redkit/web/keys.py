"""Key functions (who a request counts against) and tier resolvers (which plan applies).

Each ``by_*`` function returns a :data:`~redkit.web.request.KeyFunc`. Identifiers carry their
kind (``ip:``, ``user:``, ``apikey:``) so an IP and a user id never share a bucket. Raw API
keys never reach Redis: the identifier holds a SHA-256 digest of the key.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Container, Mapping
from typing import Any

from redkit.core.errors import ConfigurationError, InvalidArgumentError
from redkit.core.keys import digest
from redkit.web.clientip import TrustedProxies, group_address, resolve_client_ip
from redkit.web.request import KeyFunc, RequestInfo, TierFunc

__all__ = [
    "API_KEY_HEADER",
    "ON_UNKNOWN_CLIENT",
    "UnknownClientError",
    "by_api_key",
    "by_client_ip",
    "by_user",
    "hash_api_key",
    "tier_by_api_key",
]

#: The header API keys come in unless told otherwise.
API_KEY_HEADER = "X-API-Key"


#: What :func:`by_client_ip` may do with a request that has no client address.
ON_UNKNOWN_CLIENT = ("refuse", "share", "allow")


class UnknownClientError(ConfigurationError):
    """A request came without a client address, and the limit was told to refuse such.

    A unix socket (``uvicorn --uds``) or a test transport gives none: every client would
    share one bucket. Trust the proxy in front, or choose ``on_unknown_client=``.
    """


def by_client_ip(
    proxies: TrustedProxies | None = None,
    *,
    ipv6_prefix: int = 64,
    ipv4_prefix: int = 32,
    on_unknown_client: str = "refuse",
) -> Callable[[RequestInfo], str | None]:
    """Count requests per client address: ``ip:<address>``, or ``ip:<network>`` for IPv6.

    Args:
        proxies: the proxies whose forwarding header may be believed; without them only the
            socket peer counts (see :mod:`redkit.web.clientip`).
        ipv6_prefix: IPv6 clients are grouped by this prefix (a /64 is one subscriber).
        ipv4_prefix: IPv4 clients are grouped by this prefix (32: one address each).
        on_unknown_client: a request whose client has no IP address (behind a unix socket,
            ``uvicorn --uds``, or a test transport), where no trusted proxy names one:
            ``"refuse"`` (the default) raises :class:`UnknownClientError` (the app answers
            500, and the message says to trust the proxy); ``"share"`` counts all of them in
            one bucket, ``ip:unknown``; ``"allow"`` leaves them unlimited.

    """
    _check_prefix(ipv6_prefix, 128, "ipv6_prefix")
    _check_prefix(ipv4_prefix, 32, "ipv4_prefix")
    if on_unknown_client not in ON_UNKNOWN_CLIENT:
        raise InvalidArgumentError(
            f"on_unknown_client must be one of {ON_UNKNOWN_CLIENT}, got {on_unknown_client!r}"
        )
    header = proxies.header if proxies is not None else ""

    def key(request: RequestInfo) -> str | None:
        values = request.headers(header) if header else []
        address = resolve_client_ip(request.peer, values, proxies)
        if address is None:
            return _unknown_client(request.peer, on_unknown_client, proxies)
        return "ip:" + group_address(address, ipv6_prefix=ipv6_prefix, ipv4_prefix=ipv4_prefix)

    return key


def _unknown_client(peer: str | None, policy: str, proxies: TrustedProxies | None) -> str | None:
    if policy == "share":
        return "ip:unknown"
    if policy == "allow":
        return None
    where = f"the peer {peer!r} is no IP address" if peer else "the server gives no peer"
    trust = (
        "this request's proxy sent no forwarding header the proxies settings believe"
        if proxies is not None
        else "trust the proxy in front: by_client_ip(TrustedProxies(hops=1)) (Flask: "
        "REDKIT_RATELIMIT_PROXY_HOPS = 1), or uvicorn --forwarded-allow-ips"
    )
    raise UnknownClientError(
        f"a rate limit by client IP got a request without a client address ({where}: a unix "
        f"socket or a test transport), and every such client would share one bucket: {trust}; "
        "or pass by_client_ip(on_unknown_client='share') for one bucket, 'allow' to leave "
        "them unlimited"
    )


def _check_prefix(value: int, top: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise InvalidArgumentError(f"{name} must be an int from 0 to {top}, got {value!r}")


def by_user(
    get_user: Callable[[Any], object | None] | None = None,
    *,
    fallback: KeyFunc | None = None,
    anonymous: bool = True,
) -> KeyFunc:
    """Count requests per signed-in user: ``user:<id>``.

    Args:
        get_user: called with the framework's request (Starlette ``Request``,
            ``flask.Request``); returns the user id or ``None``. By default the framework's
            usual places are read (see :meth:`RequestInfo.user_id`).
        fallback: the key of anonymous requests; by default their client IP
            (:func:`by_client_ip`, socket peer only).
        anonymous: ``False`` leaves anonymous requests unlimited instead of using
            ``fallback``.

    """
    other = fallback if fallback is not None else by_client_ip()

    def known(request: RequestInfo) -> str | Awaitable[str | None] | None:
        user = get_user(request.native) if get_user is not None else request.user_id()
        if user is not None and user != "":
            return f"user:{user}"
        return other(request) if anonymous else None

    def key(request: RequestInfo) -> str | Awaitable[str | None] | None:
        pending = request.session_pending()
        if pending is not None:
            # Under ASGI the session may not be loaded yet (the limit ran first): load it,
            # or a signed-in user would be counted by IP.
            return _after(pending, known, request)
        return known(request)

    return key


async def _after(pending: Awaitable[None], key: KeyFunc, request: RequestInfo) -> str | None:
    await pending
    found = key(request)
    return await found if inspect.isawaitable(found) else found


def hash_api_key(raw: str) -> str:
    """The part of an identifier that stands for an API key: 128 bits of its SHA-256."""
    return digest(raw)


def by_api_key(
    header: str = API_KEY_HEADER,
    *,
    known: Container[str] | Callable[[str], bool | Awaitable[bool]] | None = None,
    fallback: KeyFunc | None = None,
) -> KeyFunc:
    """Count requests per API key: ``apikey:<sha-256 digest of the key>``.

    Args:
        header: the header the key comes in.
        known: the valid keys (a set, a mapping such as the tier table), or a function of the
            raw key saying whether it is valid (a coroutine function under ASGI). A key it
            does not know counts as no key. Without it every distinct key gets a bucket of its
            own, so a client that makes up a new key per request is never limited: give it
            unless the app refuses unknown keys before the limit runs.
        fallback: the key of requests without a (known) API key; by default their client IP.
            Pass a function returning ``None`` to leave them unlimited.

    """
    other = fallback if fallback is not None else by_client_ip()
    check: Callable[[str], bool | Awaitable[bool]] | None
    check = known if known is None or callable(known) else known.__contains__

    def key(request: RequestInfo) -> str | Awaitable[str | None] | None:
        raw = _first(request.headers(header))
        if raw is None:
            return other(request)
        if check is None:
            return "apikey:" + hash_api_key(raw)
        valid = check(raw)
        if inspect.isawaitable(valid):
            return _checked(valid, raw, other, request)
        return "apikey:" + hash_api_key(raw) if valid else other(request)

    return key


async def _checked(
    valid: Awaitable[bool], raw: str, other: KeyFunc, request: RequestInfo
) -> str | None:
    if await valid:
        return "apikey:" + hash_api_key(raw)
    fallen = other(request)
    return await fallen if inspect.isawaitable(fallen) else fallen


def _first(values: list[str]) -> str | None:
    for value in values:
        value = value.strip()
        if value:
            return value
    return None


def tier_by_api_key(
    tiers: Mapping[str, str] | Callable[[str], str | Awaitable[str | None] | None],
    *,
    default: str,
    header: str = API_KEY_HEADER,
) -> TierFunc:
    """Pick a :class:`~redkit.TieredRatelimit` tier from the request's API key.

    Args:
        tiers: API keys mapped to tier names, or a function of the raw key returning the
            tier name or ``None`` (a database lookup; a coroutine function under ASGI).
        default: the tier of requests without a key, or with a key ``tiers`` does not know.
        header: the header the key comes in.

    """
    lookup = tiers.get if isinstance(tiers, Mapping) else tiers

    def tier(request: RequestInfo) -> str | Awaitable[str]:
        raw = _first(request.headers(header))
        if raw is None:
            return default
        found = lookup(raw)
        if inspect.isawaitable(found):
            return _or_default(found, default)
        return found if found is not None else default

    return tier


async def _or_default(found: Awaitable[str | None], default: str) -> str:
    name = await found
    return name if name is not None else default
