"""The Flask extension: ``ext = Redkit(); ext.init_app(app)``.

It brings rate limits (an app-wide default limit, per-view limits with ``@ext.limit``, exempt
views and blueprints with ``@ext.exempt``, the same 429 body and headers as the ASGI side),
response caching (``@ext.cache_response(ttl=...)`` on the app's :class:`~redkit.Cache`) and
server-side sessions (the app's ``flask.session`` kept in a :class:`~redkit.SessionStore`).

Settings (``app.config``, prefix ``REDKIT_``; an argument of the extension is the default):

- ``REDKIT_RATELIMIT_ENABLED``: ``False`` turns every limit off (tests, maintenance).
- ``REDKIT_RATELIMIT_DEFAULT``: the app-wide limit: a ``Ratelimit``/``TieredRatelimit``, or a
  rate string (``"200 per day"``, ``"10/second; 1000/day"``) counted on ``Redkit(redis=...)``,
  else on ``REDIS_URL`` (the app's config, then the environment).
- ``REDKIT_RATELIMIT_ON_UNKNOWN_CLIENT``: ``"refuse"``, ``"share"`` or ``"allow"``: a request
  without a client address (see :func:`~redkit.web.keys.by_client_ip`).
- ``REDKIT_RATELIMIT_HEADERS_IETF`` / ``REDKIT_RATELIMIT_HEADERS_LEGACY``: header sets.
- ``REDKIT_RATELIMIT_TRUSTED_PROXIES`` (CIDRs) or ``REDKIT_RATELIMIT_PROXY_HOPS`` (a count),
  and ``REDKIT_RATELIMIT_PROXY_HEADER`` (``"x-forwarded-for"`` or ``"forwarded"``): whose
  forwarding header the default key believes. (Or put werkzeug's ``ProxyFix`` in front:
  ``request.remote_addr`` is then already the client.)
- ``REDKIT_RATELIMIT_IPV6_PREFIX``: IPv6 clients are grouped by this prefix (64).
- ``REDKIT_RATELIMIT_EXEMPT``: endpoint names never limited (``["static"]``).
- ``REDKIT_CACHE``: the :class:`~redkit.Cache` that ``@ext.cache_response`` stores in.
- ``REDKIT_SESSION_STORE``: a :class:`~redkit.SessionStore`: ``flask.session`` lives there
  (see :mod:`redkit.web.flask.sessions`); ``REDKIT_SESSION_OPTIONS``: its cookie options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Blueprint, Flask, Response, current_app, g, request, session

from redkit.cache import Cache
from redkit.core.durations import Duration
from redkit.core.errors import InvalidArgumentError
from redkit.drivers.connect import Connection, connect
from redkit.ratelimit.facade import Ratelimit
from redkit.ratelimit.rates import limits_from
from redkit.sessions import SessionStore
from redkit.web.clientip import TrustedProxies
from redkit.web.flask.cache import cache_response
from redkit.web.flask.sessions import install_sessions
from redkit.web.keys import by_client_ip
from redkit.web.request import UNMATCHED, KeyFunc, TierFunc, session_user_id
from redkit.web.rule import (
    AnyRatelimit,
    CostFunc,
    Decision,
    ExemptFunc,
    LimitRule,
    RatelimitLike,
    limiter_from,
)

if TYPE_CHECKING:
    from redkit.drivers.rest import RestConnection

__all__ = ["FlaskRequest", "Redkit", "RedkitState"]

F = TypeVar("F", bound=Callable[..., Any])

#: The key in ``app.extensions``.
EXTENSION = "redkit"


class FlaskRequest:
    """The current Flask request seen as a :class:`~redkit.web.request.RequestInfo`."""

    @property
    def peer(self) -> str | None:
        """``request.remote_addr`` (the client's, if ``ProxyFix`` rewrote it)."""
        return request.remote_addr

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name``."""
        return request.headers.getlist(name)

    def user_id(self) -> object | None:
        """``g.user_id``, else the session's ``user_id``."""
        user = g.get("user_id")
        return user if user is not None else session_user_id(session)

    @property
    def native(self) -> Any:
        """``flask.request``."""
        return request._get_current_object()  # type: ignore[attr-defined]

    def route(self) -> str:
        """The matched URL rule (``/items/<int:item_id>``); :data:`UNMATCHED` for a 404."""
        rule = request.url_rule
        return rule.rule if rule is not None else UNMATCHED

    def session_pending(self) -> None:
        """``None``: Flask's session loads on first use."""
        return


@dataclass
class _Spec:
    """A per-view limit as declared; made into a rule per app (headers follow its config)."""

    ratelimit: RatelimitLike
    options: dict[str, Any]


@dataclass
class RedkitState:
    """What the extension keeps per app, in ``app.extensions["redkit"]``.

    Attributes:
        extension: the :class:`Redkit` that set the app up.
        enabled: whether limits apply (``REDKIT_RATELIMIT_ENABLED``).
        default: the app-wide limit, if any.
        ietf: the IETF headers' switch.
        legacy: the legacy headers' switch.
        key: the key of limits that name none (the client IP, per the proxy settings).
        exempt: endpoint names never limited.
        cache: the :class:`~redkit.Cache` of ``@ext.cache_response``, if any.
        sessions: the :class:`~redkit.SessionStore` behind ``flask.session``, if any.

    """

    extension: Redkit
    enabled: bool
    default: LimitRule | None
    ietf: bool
    legacy: bool
    key: KeyFunc
    exempt: frozenset[str]
    redis: Any = None
    rules: dict[int, LimitRule] = field(default_factory=dict)
    cache: Any = None
    sessions: Any = None


class Redkit:
    """redkit in a Flask app: rate limits, response caching and server-side sessions.

    Args:
        app: the app, to set it up at once (else call :meth:`init_app`).
        ratelimit: the app-wide default limit (``REDKIT_RATELIMIT_DEFAULT`` overrides it):
            a blocking :class:`~redkit.Ratelimit` or :class:`~redkit.TieredRatelimit`, or a
            rate string (``"200 per day"``, ``"10/second; 1000/day"``).
        default_limits: Flask-Limiter's spelling: rate strings, all applied (as one string
            joined by ``;``, checked in one atomic call); not together with ``ratelimit``.
        redis: the connection of rate strings; else ``REDIS_URL`` (the app's config, then
            the environment).
        key: who a request counts against under the default limit (and under view limits
            that name none); the client IP per the proxy settings by default.
        tier: for a tiered default limiter, a tier name or a function choosing one.
        cost: what one request costs under the default limit, or a function of the request.
        exempt_when: a predicate on the request; true leaves it out of the default limit.
        cache: the :class:`~redkit.Cache` that :meth:`cache_response` stores responses in
            (``REDKIT_CACHE`` overrides it).
        sessions: a :class:`~redkit.SessionStore`: ``flask.session`` becomes a server-side
            session in it (``REDKIT_SESSION_STORE`` overrides it).
        session_options: the cookie options of
            :class:`~redkit.web.flask.sessions.RedisSessionInterface` (``REDKIT_SESSION_OPTIONS``).

    Views with limits of their own (:meth:`limit`) are not counted by the default limit.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        ratelimit: RatelimitLike | None = None,
        default_limits: Sequence[str] = (),
        redis: Connection | RestConnection | None = None,
        key: KeyFunc | None = None,
        tier: str | TierFunc | None = None,
        cost: int | CostFunc = 1,
        exempt_when: ExemptFunc | None = None,
        cache: Cache | None = None,
        sessions: SessionStore | None = None,
        session_options: Mapping[str, Any] | None = None,
    ) -> None:
        if default_limits:
            if ratelimit is not None:
                raise InvalidArgumentError("give ratelimit= or default_limits=, not both")
            if isinstance(default_limits, str) or not all(
                isinstance(limit, str) for limit in default_limits
            ):
                raise InvalidArgumentError(
                    "default_limits must be a list of rate strings, such as ['200 per day', "
                    f"'50 per hour'], got {default_limits!r:.60}"
                )
            ratelimit = "; ".join(default_limits)
        if isinstance(ratelimit, str):
            limits_from(ratelimit)  # a malformed rate fails here, not at the first request
        self._default = ratelimit
        self._redis = redis
        self._exempt_when = exempt_when
        self._cache = cache
        self._sessions = sessions
        self._session_options = dict(session_options or {})
        self._key = key
        self._tier = tier
        self._cost = cost
        # A view's limits and exemption are marked on the view function itself, under this
        # extension's own token: two views made by one factory share a name, not their limits.
        self._token = object()
        self._exempt_blueprints: set[str] = set()
        if app is not None:
            self.init_app(app)

    # -- set-up -----------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read the app's ``REDKIT_*`` settings and register the extension's hooks."""
        if EXTENSION in app.extensions:
            raise InvalidArgumentError("redkit is set up on this app already")
        state = app.extensions[EXTENSION] = self.init_ratelimit(app)
        state.cache = self.init_cache(app)
        state.sessions = self.init_sessions(app)

    def init_ratelimit(self, app: Flask) -> RedkitState:
        """Set up rate limiting on ``app``: settings, the default limit, the request hooks."""
        config = app.config
        config.setdefault("REDKIT_RATELIMIT_ENABLED", True)
        config.setdefault("REDKIT_RATELIMIT_DEFAULT", self._default)
        config.setdefault("REDKIT_RATELIMIT_HEADERS_IETF", True)
        config.setdefault("REDKIT_RATELIMIT_HEADERS_LEGACY", True)
        config.setdefault("REDKIT_RATELIMIT_TRUSTED_PROXIES", ())
        config.setdefault("REDKIT_RATELIMIT_PROXY_HOPS", 0)
        config.setdefault("REDKIT_RATELIMIT_PROXY_HEADER", "x-forwarded-for")
        config.setdefault("REDKIT_RATELIMIT_IPV6_PREFIX", 64)
        config.setdefault("REDKIT_RATELIMIT_EXEMPT", ["static"])
        config.setdefault("REDKIT_RATELIMIT_ON_UNKNOWN_CLIENT", "refuse")
        networks = config["REDKIT_RATELIMIT_TRUSTED_PROXIES"]
        hops = config["REDKIT_RATELIMIT_PROXY_HOPS"]
        proxies = (
            TrustedProxies(networks, hops=hops, header=config["REDKIT_RATELIMIT_PROXY_HEADER"])
            if networks or hops
            else None
        )
        key = self._key or by_client_ip(
            proxies,
            ipv6_prefix=config["REDKIT_RATELIMIT_IPV6_PREFIX"],
            on_unknown_client=config["REDKIT_RATELIMIT_ON_UNKNOWN_CLIENT"],
        )
        redis = self._redis
        if redis is None and config.get("REDIS_URL"):
            redis = connect(config["REDIS_URL"])
        ietf = bool(config["REDKIT_RATELIMIT_HEADERS_IETF"])
        legacy = bool(config["REDKIT_RATELIMIT_HEADERS_LEGACY"])
        default = config["REDKIT_RATELIMIT_DEFAULT"]
        rule = None
        if default is not None:
            options = {"key": key, "tier": self._tier, "cost": self._cost}
            options.update(ietf=ietf, legacy=legacy, exempt_when=self._exempt_when)
            limiter = limiter_from(
                default, redis, blocking=True, setting="REDKIT_RATELIMIT_DEFAULT"
            )
            rule = self._rule(limiter, options)
        app.before_request(self._before_request)
        app.after_request(self._after_request)
        return RedkitState(
            extension=self,
            enabled=bool(config["REDKIT_RATELIMIT_ENABLED"]),
            default=rule,
            ietf=ietf,
            legacy=legacy,
            key=key,
            exempt=frozenset(config["REDKIT_RATELIMIT_EXEMPT"]),
            redis=redis,
        )

    def init_cache(self, app: Flask) -> Cache | None:
        """The app's response cache (``REDKIT_CACHE``), if it has one."""
        cache = app.config.setdefault("REDKIT_CACHE", self._cache)
        if cache is not None and not isinstance(cache, Cache):
            raise InvalidArgumentError(
                "REDKIT_CACHE must be a blocking redkit Cache object (Cache(connect(url))), "
                f"got {type(cache).__name__}: {cache!r:.60}"
            )
        return cache

    def init_sessions(self, app: Flask) -> SessionStore | None:
        """Keep ``flask.session`` in the app's session store (``REDKIT_SESSION_STORE``)."""
        store = app.config.setdefault("REDKIT_SESSION_STORE", self._sessions)
        options = app.config.setdefault("REDKIT_SESSION_OPTIONS", self._session_options)
        if store is None:
            return None
        if not isinstance(store, SessionStore):
            raise InvalidArgumentError(
                "REDKIT_SESSION_STORE must be a blocking SessionStore object "
                f"(SessionStore(connect(url))), got {type(store).__name__}: {store!r:.60}"
            )
        install_sessions(app, store, **options)
        return store

    def cache_response(
        self,
        ttl: Duration | None = None,
        *,
        vary: Sequence[str] = (),
        tags: Iterable[str] = (),
        prefix: str = "response",
        **others: object,
    ) -> Callable[[F], F]:
        """Cache a GET/HEAD view's responses in the app's cache.

        The arguments of :func:`redkit.web.flask.cache.cache_response`, but the cache: the
        app's (``Redkit(cache=...)`` or ``REDKIT_CACHE``), found per request.
        """
        return cache_response(_app_cache, ttl, vary=vary, tags=tags, prefix=prefix, **others)

    @staticmethod
    def _rule(ratelimit: AnyRatelimit, options: dict[str, Any]) -> LimitRule:
        rule = LimitRule(ratelimit, **options)
        if rule.is_async:
            raise InvalidArgumentError(
                "Flask needs a blocking Ratelimit or TieredRatelimit, not an asyncio one"
            )
        return rule

    # -- decorators -------------------------------------------------------------------------

    def limit(
        self,
        ratelimit: RatelimitLike,
        *,
        key: KeyFunc | None = None,
        tier: str | TierFunc | None = None,
        cost: int | CostFunc = 1,
        scope: str | None = None,
        ietf: bool | None = None,
        legacy: bool | None = None,
        policy_name: str = "default",
        exempt_when: ExemptFunc | None = None,
    ) -> Callable[[F], F]:
        """Give a view a limit of its own, instead of the default: ``@ext.limit(limiter)``.

        Place it under ``@app.route`` (either order works). Stacked, every limit applies,
        in order, each charged on its own (for all-or-none, give one ``Ratelimit`` a list of
        limits). ``ietf`` / ``legacy`` default to the app's settings and ``key`` to its
        default key; the other arguments are those of :class:`~redkit.web.rule.LimitRule`.
        ``ratelimit`` may be a rate string (``"5/minute"``), counted on the app's connection
        (``Redkit(redis=...)`` or ``REDIS_URL``). Each route counts on its own (its URL rule
        is part of the identifier) unless views share a ``scope``.
        """
        options: dict[str, Any] = {
            "key": key, "tier": tier, "cost": cost, "scope": scope, "ietf": ietf,
            "legacy": legacy, "policy_name": policy_name, "exempt_when": exempt_when,
        }  # fmt: skip
        spec = _Spec(ratelimit, options)
        # Checked now, so a mistake shows at import rather than at the first request. A rate
        # string's rule is made per app (on its connection) at its first request; its options
        # are checked here on a limiter of that rate that is never used (it opens nothing).
        limiter = (
            Ratelimit(_NEVER_OPENED, limits_from(ratelimit))
            if isinstance(ratelimit, str)
            else ratelimit
        )
        self._rule(limiter, {**options, "ietf": True, "legacy": True})

        def decorate(view: F) -> F:
            # Prepended: decorators apply bottom-up, and the top one should be checked first.
            limits = _marks(view, _LIMITS)
            limits[self._token] = [spec, *limits.get(self._token, ())]
            return view

        return decorate

    def exempt(self, target: F | Blueprint) -> F | Blueprint:
        """Never limit this view, or any view of this blueprint: ``@ext.exempt``."""
        if isinstance(target, Blueprint):
            self._exempt_blueprints.add(target.name)
        else:
            _marks(target, _EXEMPT)[self._token] = True
        return target

    # -- the request hooks ------------------------------------------------------------------

    def _rules_for_request(self, state: RedkitState) -> list[LimitRule]:
        if not state.enabled or request.endpoint in state.exempt:
            return []
        if request.blueprint is not None and any(
            part in self._exempt_blueprints for part in _blueprint_chain(request.blueprint)
        ):
            return []
        view = current_app.view_functions.get(request.endpoint or "")
        if view is None:
            return [state.default] if state.default is not None else []
        if getattr(view, _EXEMPT, {}).get(self._token):
            return []
        specs = getattr(view, _LIMITS, {}).get(self._token)
        if not specs:
            return [state.default] if state.default is not None else []
        rules = []
        for spec in specs:
            rule = state.rules.get(id(spec))
            if rule is None:
                # What the view left open follows the app's settings.
                options = dict(spec.options)
                for name, value in (
                    ("ietf", state.ietf),
                    ("legacy", state.legacy),
                    ("key", state.key),
                ):
                    if options[name] is None:
                        options[name] = value
                limiter = limiter_from(spec.ratelimit, state.redis, blocking=True)
                rule = state.rules[id(spec)] = self._rule(limiter, options)
            rules.append(rule)
        return rules

    def _before_request(self) -> Response | None:
        state: RedkitState = current_app.extensions[EXTENSION]
        decisions: list[Decision] = []
        g._redkit_ratelimit = decisions
        info = FlaskRequest()
        for rule in self._rules_for_request(state):
            decision = rule.check_sync(info)
            if decision is None:
                continue
            decisions.append(decision)
            if not decision.allowed:
                return Response(decision.body(), status=429, mimetype="application/json")
        return None

    def _after_request(self, response: Response) -> Response:
        decisions: list[Decision] = g.get("_redkit_ratelimit") or []
        if decisions:
            # The refusal, else the limit with the least left, is the one worth telling.
            shown = next(
                (d for d in decisions if not d.allowed),
                min(decisions, key=lambda d: d.result.remaining),
            )
            for name, value in shown.headers:
                response.headers.setdefault(name, value)  # as the ASGI side: the view's win
        return response


#: The connection of the limiters that only check a rate string's options: never used.
_NEVER_OPENED = Connection("redis://127.0.0.1:6379")


def _app_cache() -> Cache:
    state = current_app.extensions.get(EXTENSION)
    if state is None or state.cache is None:
        raise InvalidArgumentError("@ext.cache_response needs a cache: Redkit(cache=Cache(...))")
    cache: Cache = state.cache
    return cache


#: Attributes of a view function: its limits and its exemption, per extension (by token).
_LIMITS = "__redkit_limits__"
_EXEMPT = "__redkit_exempt__"


def _marks(view: Callable[..., Any], attribute: str) -> dict[object, Any]:
    """A copy of the view's marks of one kind, now the view's own, to change.

    Kept in the function's ``__dict__``, which ``functools.wraps`` copies: a decorator placed
    above ``@ext.limit`` still carries the limits to the function Flask registers. Copied on
    write, since that copy shares the dict: a limit given to a wrapper stays off the function
    it wraps. A bound method's marks go on its function (reading them falls through to it).
    """
    target = view.__func__ if inspect.ismethod(view) else view
    marks: dict[object, Any] = dict(getattr(target, attribute, None) or {})
    try:
        setattr(target, attribute, marks)
    except AttributeError:  # a builtin, a callable without a __dict__: nowhere to keep it
        raise InvalidArgumentError(
            f"redkit can mark only a view function, not {type(view).__name__}"
        ) from None
    return marks


def _blueprint_chain(name: str) -> list[str]:
    """``"a.b.c"`` -> ``["a", "a.b", "a.b.c"]``: a nested blueprint's parents are exempt too."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]
