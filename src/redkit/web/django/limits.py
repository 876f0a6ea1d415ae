"""Rate limits for Django views: the :func:`ratelimit` decorator and :class:`RatelimitMiddleware`.

::

    @ratelimit("10/m", key="ip")
    def search(request): ...

    @ratelimit("10/s;1000/d", key="user_or_ip", block=False)
    async def feed(request):
        if request.limited: ...

Settings (all optional)::

    REDKIT_RATELIMIT = {
        "DEFAULT": None,            # a rate the middleware applies to every view
        "KEY": "ip",                # the middleware's key (the kinds of ratelimit(key=))
        "TRUSTED_PROXIES": [],      # networks whose X-Forwarded-For is believed ("PROXY_HOPS":
                                    # n instead; "PROXY_HEADER": "forwarded" for RFC 7239)
        "USING": "default",         # the cache alias whose LOCATION to use, or "LOCATION": url
        "TIMEOUT": 5.0,             # seconds a decision may take; past it (or Redis down)
        "ON_TIMEOUT": "allow",      # "allow" (fail open) or "deny"; never a 500
        "PREFIX": "redkit:django",  # the start of every counter's key
    }

Refusals answer 429 with ``{"error": "Too many requests", "retryAfter": N}``, ``Retry-After``
and the IETF ``RateLimit-Policy`` / ``RateLimit`` headers (and the ``X-RateLimit-*`` ones), as
redkit's other adapters do.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from redkit.core.errors import ConfigurationError, InvalidArgumentError
from redkit.core.keys import digest
from redkit.drivers.connect import Connection
from redkit.ratelimit.facade import Ratelimit
from redkit.ratelimit.limiters import Limiter
from redkit.ratelimit.multi import MultiLimit
from redkit.ratelimit.rates import limits_from
from redkit.ratelimit.tiers import TieredRatelimit
from redkit.web.clientip import TrustedProxies
from redkit.web.django.connection import read_setting, redis_for
from redkit.web.django.request import DjangoRequest, user_pk
from redkit.web.keys import by_client_ip, by_user
from redkit.web.request import KeyFunc, RequestInfo
from redkit.web.rule import Decision, LimitRule

__all__ = ["ALL", "RatelimitMiddleware", "ratelimit"]

V = TypeVar("V", bound=Callable[..., Any])
_SETTING = "REDKIT_RATELIMIT"
_KNOWN = frozenset(
    {"DEFAULT", "KEY", "TRUSTED_PROXIES", "PROXY_HOPS", "PROXY_HEADER", "USING", "LOCATION",
     "OPTIONS", "TIMEOUT", "ON_TIMEOUT", "PREFIX", "ON_UNKNOWN_CLIENT"}
)  # fmt: skip
#: Every HTTP method: ``method=ALL`` (the default) limits requests of any method.
ALL: tuple[str, ...] = ()
_KEY_KINDS = ("ip", "user", "user_or_ip", "header:<name>", "get:<param>", "post:<field>")
#: A rate: ``"10/m"``, ``"10/s;1000/d"``; per tier a mapping of tier names to such.
RateSpec = str | Mapping[str, str]


def _settings() -> dict[str, Any]:
    return read_setting(_SETTING, _KNOWN)


def _limiter_of(text: str, what: str) -> Limiter:
    """One limiter for a rate string; several rates make one multi-limit (one atomic call)."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{what} must be a rate string such as '10/m', got {text!r}")
    try:
        limits = limits_from(text)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{what}: {exc}") from None
    return limits[0] if len(limits) == 1 else MultiLimit(tuple(limits))


@dataclass(frozen=True)
class _Key:
    """A ``key=`` as given, checked; made into a key function once the proxies are known."""

    kind: str
    arg: str = ""
    func: Callable[[HttpRequest], object] | None = None

    def build(self, ip: KeyFunc) -> KeyFunc:
        if self.kind == "ip":
            return ip
        if self.kind in ("user", "user_or_ip"):
            return by_user(user_pk, fallback=ip, anonymous=self.kind == "user_or_ip")
        if self.kind == "callable":
            func = self.func
            assert func is not None

            def call(request: RequestInfo) -> str | None:
                value = func(request.native)
                return None if value is None else f"key:{digest(str(value))}"

            return call
        kind, name = self.kind, self.arg

        def value_key(request: RequestInfo) -> str | Awaitable[str | None] | None:
            native: HttpRequest = request.native
            if kind == "header":
                value = native.headers.get(name)
            else:
                value = (native.GET if kind == "get" else native.POST).get(name)
            if not value:
                return ip(request)  # without the value, the client's address counts
            # Raw values (API keys, user names) never reach Redis: a digest of them does.
            return f"{kind}:{name}:{digest(value)}"

        return value_key


def _parse_key(key: object) -> _Key:
    if callable(key):
        if iscoroutinefunction(key):
            raise InvalidArgumentError("key= must be a plain function of the request, not async")
        return _Key("callable", func=cast(Callable[[HttpRequest], object], key))
    if not isinstance(key, str):
        raise InvalidArgumentError(f"key= must be one of {_KEY_KINDS} or a function, got {key!r}")
    if key in ("ip", "user", "user_or_ip"):
        auth = "django.contrib.auth"
        if key != "ip" and settings.configured and auth not in settings.INSTALLED_APPS:
            raise ConfigurationError(
                f"key={key!r} needs django.contrib.auth (request.user): add it to "
                "INSTALLED_APPS with its AuthenticationMiddleware, or key by 'ip'",
                variable="key",
            )
        return _Key(key)
    kind, sep, arg = key.partition(":")
    if sep and kind in ("header", "get", "post") and arg.strip():
        return _Key(kind, arg.strip())
    raise InvalidArgumentError(f"key= must be one of {_KEY_KINDS} or a function, got {key!r}")


def _parse_methods(method: str | Iterable[str]) -> frozenset[str]:
    names = [method] if isinstance(method, str) else list(method)
    if not all(isinstance(m, str) and m.strip() for m in names):
        raise InvalidArgumentError(f"method= must be a method name or several, got {method!r}")
    return frozenset(m.strip().upper() for m in names)


class _Settings:
    """What ``REDKIT_RATELIMIT`` says, read on first use; read again when it changes."""

    def __init__(self) -> None:
        config = _settings()
        self.config = config
        networks = config.get("TRUSTED_PROXIES") or ()
        hops = config.get("PROXY_HOPS", 0)
        header = config.get("PROXY_HEADER", "x-forwarded-for")
        proxies = TrustedProxies(networks, hops=hops, header=header) if networks or hops else None
        self.ip = by_client_ip(proxies, on_unknown_client=config.get("ON_UNKNOWN_CLIENT", "refuse"))
        self.prefix = config.get("PREFIX", "redkit:django")
        self.timeout = config.get("TIMEOUT", 5.0)
        self.on_timeout = config.get("ON_TIMEOUT", "allow")
        try:  # checked now (the middleware reads them at startup), not at a first request
            Ratelimit(_UNUSED, limits_from("1/s")[0], timeout=self.timeout,
                      on_timeout=self.on_timeout, prefix=self.prefix)  # fmt: skip
        except InvalidArgumentError as exc:
            raise ConfigurationError(f"{_SETTING}: {exc}", variable=_SETTING) from None
        self._lock = threading.Lock()
        self._redis: Any = None

    def redis(self) -> Any:
        with self._lock:
            if self._redis is None:
                self._redis = redis_for(self.config, _SETTING)
            return self._redis


_lock = threading.Lock()
_current: _Settings | None = None


def _now() -> _Settings:
    global _current
    with _lock:
        if _current is None:
            _current = _Settings()
        return _current


def _settings_changed(*, setting: str, **_: Any) -> None:
    global _current
    if setting in (_SETTING, "CACHES"):
        with _lock:
            _current = None


setting_changed.connect(_settings_changed)


class _Limit:
    """One declared limit: its rule made on first use, made again when the settings change."""

    def __init__(
        self,
        rate: RateSpec | Ratelimit | TieredRatelimit,
        key: object,
        tier: str | Callable[[HttpRequest], str] | None,
        cost: int,
        scope: str,
    ) -> None:
        self.key = _parse_key(key)
        self.scope = scope
        self.cost = cost
        if isinstance(rate, (Ratelimit, TieredRatelimit)):
            self.given: Ratelimit | TieredRatelimit | None = rate
            self.limiters: Limiter | dict[str, Limiter] | None = None
        elif isinstance(rate, Mapping):
            if not rate:
                raise InvalidArgumentError("a rate per tier needs at least one tier")
            self.given = None
            self.limiters = {str(t): _limiter_of(r, f"rate of tier {t!r}") for t, r in rate.items()}
        else:
            self.given = None
            self.limiters = _limiter_of(rate, "rate")
        tiered = isinstance(self.limiters, dict) or isinstance(self.given, TieredRatelimit)
        if tiered and tier is None:
            raise InvalidArgumentError(
                "a rate per tier needs tier= (a tier name, or a function of the request)"
            )
        if not tiered and tier is not None:
            raise InvalidArgumentError("tier= needs a rate per tier: {'free': '10/m', ...}")
        if callable(tier) and iscoroutinefunction(tier):
            raise InvalidArgumentError("tier= must be a plain function of the request")
        self.tier = tier
        # A check of the rest of the arguments (cost...) now, not at the first request.
        LimitRule(Ratelimit(_UNUSED, limits_from("1/s")[0]), cost=cost, scope=scope)
        self._made: tuple[_Settings, LimitRule] | None = None
        self._lock = threading.Lock()

    def rule(self) -> LimitRule:
        current = _now()
        with self._lock:
            if self._made is None or self._made[0] is not current:
                self._made = (current, self._make(current))
            return self._made[1]

    def _make(self, current: _Settings) -> LimitRule:
        options: dict[str, Any] = {"timeout": current.timeout, "on_timeout": current.on_timeout}
        limiter: Ratelimit | TieredRatelimit
        if self.given is not None:
            limiter = self.given
        elif isinstance(self.limiters, dict):
            limiter = TieredRatelimit(
                current.redis(), self.limiters, prefix=current.prefix, **options
            )
        else:
            assert self.limiters is not None
            limiter = Ratelimit(current.redis(), self.limiters, prefix=current.prefix, **options)
        tier = self.tier
        tier_func: Any = tier
        if callable(tier):
            func = tier

            def tier_func(request: RequestInfo) -> str:
                return func(request.native)

        return LimitRule(
            limiter, key=self.key.build(current.ip), tier=tier_func, cost=self.cost,
            scope=self.scope,
        )  # fmt: skip


#: A connection never opened: the one of the limiter that checks the arguments of a limit.
_UNUSED = Connection("redis://127.0.0.1:6379")


def _refusal(decision: Decision) -> HttpResponse:
    response = HttpResponse(decision.body(), status=429, content_type="application/json")
    _add_headers(response, decision)
    return response


def _add_headers(response: HttpResponseBase, decision: Decision) -> None:
    for name, value in decision.headers:
        response.setdefault(name, value)  # a view's own headers win


async def _to_thread(func: Callable[..., Any], *args: Any) -> Any:
    # A blocking limiter off the event loop: its round trip never stalls other requests.
    return await sync_to_async(func, thread_sensitive=False)(*args)


def ratelimit(
    rate: RateSpec | Ratelimit | TieredRatelimit,
    *,
    key: str | Callable[[HttpRequest], object] = "ip",
    method: str | Iterable[str] = ALL,
    block: bool = True,
    tier: str | Callable[[HttpRequest], str] | None = None,
    cost: int = 1,
    scope: str | None = None,
) -> Callable[[V], V]:
    """Limit a view (sync or async): ``@ratelimit("10/m", key="ip")``.

    Args:
        rate: ``"10/m"``, several rates at once ``"10/s;1000/d"`` (all decided in one atomic
            call), a mapping of tier names to rates (with ``tier=``), or a redkit
            :class:`~redkit.Ratelimit` / :class:`~redkit.TieredRatelimit` of your own.
        key: who a request counts against: ``"ip"`` (the client's address, through
            ``TRUSTED_PROXIES`` only), ``"user"`` (the signed-in user; anonymous requests are
            not limited by it), ``"user_or_ip"``, ``"header:<name>"``, ``"get:<param>"``,
            ``"post:<field>"`` (a request without the value counts by its address), or a
            function of the request returning the identifier (``None``: not limited).
        method: the methods limited (``"POST"``, ``["POST", "PUT"]``); others pass uncounted.
        block: ``True`` answers a refused request 429; ``False`` calls the view with
            ``request.limited = True``.
        tier: for a rate per tier, the tier's name or a function of the request choosing it.
        cost: what one request counts for.
        scope: the counter's name; views given the same ``scope`` share counters. By default
            each view counts on its own (its module and name).

    Raises:
        InvalidArgumentError: at decoration, for a bad rate, key, method, tier or cost.
        ConfigurationError: at decoration, for ``key="user"`` without ``django.contrib.auth``.

    """
    methods = _parse_methods(method)
    if not isinstance(block, bool):
        raise InvalidArgumentError(f"block= must be True or False, got {block!r}")

    def decorate(view: V) -> V:
        name = scope if scope is not None else f"{view.__module__}.{view.__qualname__}"
        limit = _Limit(rate, key, tier, cost, name)

        def applies(request: HttpRequest) -> bool:
            return not methods or (request.method or "").upper() in methods

        def finish(request: HttpRequest, decision: Decision | None) -> HttpResponse | None:
            limited = decision is not None and not decision.allowed
            request.limited = getattr(request, "limited", False) or limited  # type: ignore[attr-defined]
            return _refusal(decision) if limited and block and decision is not None else None

        if iscoroutinefunction(view):

            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                decision = None
                if applies(request):
                    # Making the rule opens nothing (connections connect on first use).
                    rule = limit.rule()
                    decision = await rule.check_async(DjangoRequest(request), _to_thread)
                refused = finish(request, decision)
                if refused is not None:
                    return refused
                response = await view(request, *args, **kwargs)
                if decision is not None:
                    _add_headers(response, decision)
                return response

            wrapped: Any = functools.wraps(view)(async_view)
            return cast(V, markcoroutinefunction(wrapped))

        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            decision = limit.rule().check_sync(DjangoRequest(request)) if applies(request) else None
            refused = finish(request, decision)
            if refused is not None:
                return refused
            response = view(request, *args, **kwargs)
            if decision is not None:
                _add_headers(response, decision)
            return response

        return cast(V, functools.wraps(view)(sync_view))

    return decorate


class RatelimitMiddleware:
    """Apply ``REDKIT_RATELIMIT["DEFAULT"]`` to every view, each view on its own counters.

    Put it after ``AuthenticationMiddleware`` when ``"KEY"`` is by user. A request no view
    matched (a 404) is not counted. Works under WSGI and ASGI.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        config = _settings()
        default = config.get("DEFAULT")
        self._limits: dict[str, _Limit] = {}
        self._lock = threading.Lock()
        self._default = default
        self._key = config.get("KEY", "ip")
        current = _now()  # the settings checked now: a mistake fails at startup
        if default is not None:
            _Limit(default, self._key, None, 1, "check")
            current.redis()  # a USING without a Redis LOCATION, say (nothing is opened yet)

    def __call__(self, request: HttpRequest) -> Any:
        """Answer the request; the decision's headers go on the response."""
        if self.is_async:
            return self._acall(request)
        response = self.get_response(request)
        return self._with_headers(request, response)

    async def _acall(self, request: HttpRequest) -> Any:
        response = await cast(Callable[[HttpRequest], Awaitable[Any]], self.get_response)(request)
        return self._with_headers(request, response)

    def _with_headers(self, request: HttpRequest, response: Any) -> Any:
        decision: Decision | None = getattr(request, "_redkit_ratelimit", None)
        if decision is not None and isinstance(response, HttpResponseBase):
            _add_headers(response, decision)
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        """Count the request on the view's counter; a refusal answers 429 here."""
        if self._default is None:
            return None
        name = f"{getattr(view_func, '__module__', '')}.{getattr(view_func, '__qualname__', '')}"
        with self._lock:
            limit = self._limits.get(name)
            if limit is None:
                limit = self._limits[name] = _Limit(self._default, self._key, None, 1, name)
        decision = limit.rule().check_sync(DjangoRequest(request))
        if decision is None:
            return None
        request._redkit_ratelimit = decision  # type: ignore[attr-defined]
        if not decision.allowed:
            request.limited = True  # type: ignore[attr-defined]
            return _refusal(decision)
        return None
