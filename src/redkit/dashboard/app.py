"""The dashboard as an ASGI app: pages, their JSON twins under ``/api/``, the actions.

Every page is rendered on the server (jinja2, autoescaped) and carries no script: charts are
SVG images, forms are plain POSTs, and a running keyspace scan refreshes its page by
``<meta http-equiv="refresh">``. Links come from ``url_for``, so the app works mounted under
any path of another Starlette or FastAPI app.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from redkit.core import keys
from redkit.core.driver import Backend, as_backend
from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import InvalidArgumentError, InvalidKeyError, RedkitError
from redkit.core.flow import run_async
from redkit.core.ops import command
from redkit.core.replies import server_time_ms
from redkit.dashboard.actions import Actions, Done
from redkit.dashboard.auth import COOKIE, LOGIN_S, Auth, Identity
from redkit.dashboard.caches import CacheReports
from redkit.dashboard.guard import Refused, SecurityHeaders, identify, same_origin
from redkit.dashboard.overview import server_rows
from redkit.dashboard.ratelimits import prefix_report
from redkit.dashboard.render import Renderer, Url
from redkit.dashboard.scans import KeyspaceScans
from redkit.dashboard.sessions import session_report
from redkit.dashboard.sources import read_fleet
from redkit.sessions.flows import user_id_from_text
from redkit.stats import FleetStats

__all__ = ["Dashboard"]

#: The cookie that carries an action's outcome over its redirect, and how long it may.
FLASH = "redkit_dashboard_done"
FLASH_S = 60

Handler = Callable[[Request], Awaitable[Response]]
#: How far back minute buckets of the fleet statistics reach.
DAY_MS = 86_400_000
PAGES = ("overview", "ratelimits", "caches", "sessions", "keyspace")


def _prefixes(values: Sequence[str], name: str) -> tuple[str, ...]:
    if isinstance(values, str):
        raise InvalidArgumentError(f"{name} takes a list of prefixes, not one str: [{values!r}]")
    return tuple(keys.check_prefix(v) for v in values)


def _origins(values: Sequence[str]) -> tuple[str, ...]:
    """Each an origin as a browser's ``Origin`` header names it: a scheme and a host only."""
    if isinstance(values, str):
        raise InvalidArgumentError(
            f"allowed_origins takes a list of origins, not one str: [{values!r}]"
        )
    for value in values:
        parts = urlsplit(value) if isinstance(value, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or value != f"{parts.scheme}://{parts.netloc}"
        ):
            raise InvalidArgumentError(
                "allowed_origins are origins as a browser sends them, a scheme and a host "
                f"without a path ('https://admin.example.com'), got {value!r}"
            )
    return tuple(values)


class Dashboard:
    """redkit's dashboard: an ASGI app showing one Redis (or Redis Cluster).

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL (the dashboard then owns and closes
            its connection) or a redis-py client.
        token: the read token: ``Authorization: Bearer <token>`` or the login form.
        admin_token: the token that also allows the actions (reset, bump, invalidate, revoke);
            ``None``: the dashboard is read-only.
        no_auth: serve without any token, to loopback host names only.
        ratelimit_prefixes: the rate limiters' prefixes to show (with those in fleet stats).
        session_prefixes: the session stores' prefixes.
        cache_namespaces: cache namespaces to show besides those that report fleet stats.
        hours: how many hours the rate-limit analytics cover.
        stats_since: how far back the fleet statistics' charts reach (per minute, at most a
            day: ``"1 h"``, ``"6 h"``, ``"1 d"``).
        top: how many identifiers and users each table lists.
        timeout: seconds each call to Redis may take.
        scan_count: the keyspace scan's ``SCAN COUNT``.
        allowed_origins: origins besides the dashboard's own host that may POST (a proxy's).

    Raises:
        InvalidArgumentError: no token without ``no_auth``, a token too short, equal tokens, a
            prefix that is not one, a setting out of its range.
    """

    def __init__(
        self,
        redis: object,
        *,
        token: str | None,
        admin_token: str | None = None,
        no_auth: bool = False,
        ratelimit_prefixes: Sequence[str] = ("@upstash/ratelimit",),
        session_prefixes: Sequence[str] = ("session",),
        cache_namespaces: Sequence[str] = (),
        hours: int = 24,
        stats_since: Duration = "1 h",
        top: int = 10,
        timeout: float = 5.0,
        scan_count: int = 1000,
        allowed_origins: Sequence[str] = (),
    ) -> None:
        self.auth = Auth(token, admin_token, no_auth)
        self._owned = as_backend(redis) if isinstance(redis, str) else None
        self.backend: Backend = self._owned or as_backend(redis)
        self.ratelimit_prefixes = _prefixes(ratelimit_prefixes, "ratelimit_prefixes")
        self.session_prefixes = _prefixes(session_prefixes, "session_prefixes")
        self.cache_namespaces = _prefixes(cache_namespaces, "cache_namespaces")
        if not (isinstance(hours, int) and 1 <= hours <= 24 * 90):
            raise InvalidArgumentError(f"hours must be an int from 1 to 2160, got {hours!r}")
        if not (isinstance(top, int) and 1 <= top <= 1000):
            raise InvalidArgumentError(f"top must be an int from 1 to 1000, got {top!r}")
        if duration_ms(stats_since, name="stats_since") > DAY_MS:
            raise InvalidArgumentError(
                f"stats_since reaches back at most a day (minutes are kept a day), "
                f"got {stats_since!r}"
            )
        if not (isinstance(scan_count, int) and 1 <= scan_count <= 100_000):
            raise InvalidArgumentError(
                f"scan_count must be an int from 1 to 100000, got {scan_count!r}"
            )
        self.hours, self.top = hours, top
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InvalidArgumentError(
                f"timeout must be a positive number of seconds, got {timeout!r}"
            )
        self.timeout = float(timeout)
        self.stats_since = stats_since
        self.allowed_origins = _origins(allowed_origins)
        self.actions = Actions(self.backend, timeout)
        self.scans = KeyspaceScans(self.backend, scan_count)
        self.caches = CacheReports(self.backend, timeout, scan_count, max_age_s=60.0)
        self._render = Renderer()
        self._css = resources.files(__package__).joinpath("static/dashboard.css").read_bytes()
        routes = [Route("/", self._html("overview"), name="overview")]
        for page in PAGES[1:]:
            routes.append(Route(f"/{page}", self._html(page), name=page))
        routes += [Route(f"/api/{page}", self._json(page), name=f"api_{page}") for page in PAGES]
        routes += [
            Route("/login", self._login, methods=["GET", "POST"], name="login"),
            Route("/logout", self._logout, methods=["POST"], name="logout"),
            Route("/keyspace/scan", self._scan, methods=["POST"], name="scan"),
            Route("/api/keyspace/scan", self._scan, methods=["POST"], name="api_scan"),
            Route("/actions/{action}", self._act, methods=["POST"], name="action"),
            Route("/api/actions/{action}", self._act, methods=["POST"], name="api_action"),
            Route("/static/dashboard.css", self._stylesheet, name="css"),
        ]
        self._starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self._app = SecurityHeaders(self._starlette)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        await self._app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        yield
        await self.aclose()

    async def aclose(self) -> None:
        """Stop a running scan; close the connection when the dashboard made it (a URL)."""
        await self.scans.stop()
        if self._owned is not None:
            aclose = getattr(self._owned, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- data -----------------------------------------------------------------------------

    async def _run(self, flow: Any) -> Any:
        return await run_async(flow, self.backend.async_driver(timeout=self.timeout))

    async def data(self, page: str) -> dict[str, Any]:
        """The figures of ``page`` (one of ``overview``, ``ratelimits``, ...), as JSON."""
        if page == "keyspace":
            return {"scan": self.scans.state.to_dict()}
        fleet = await read_fleet(self.backend, self.stats_since)
        if page == "overview":
            return {"servers": await self._run(server_rows()), "fleet": _fleet_overview(fleet)}
        if page == "ratelimits":
            now = int(server_time_ms(await self._run(_time())))
            prefixes = _merged(self.ratelimit_prefixes, fleet, "ratelimit")
            return {
                "prefixes": [
                    await self._run(prefix_report(p, now, self.hours, self.top)) for p in prefixes
                ]
            }
        if page == "caches":
            namespaces = _merged(self.cache_namespaces, fleet, "cache")
            return {"namespaces": [await self.caches.report(fleet, n) for n in namespaces]}
        prefixes = _merged(self.session_prefixes, fleet, "sessions")
        reports = [await self._run(session_report(p, self.top)) for p in prefixes]
        for report in reports:  # created, rotated, revoked... over stats_since, fleet-wide
            report["fleet"] = fleet.totals("sessions", report["prefix"])
        return {"prefixes": reports}

    # -- requests ------------------------------------------------------------------------

    def _html(self, page: str) -> Handler:
        async def handler(request: Request) -> Response:
            return await self._page(request, page)

        return handler

    def _json(self, page: str) -> Handler:
        async def handler(request: Request) -> Response:
            try:
                self._caller(request)
                return JSONResponse(await self.data(page))
            except Refused as refused:
                return _json_refusal(refused)
            except RedkitError as exc:  # Redis out of reach: said so, never a traceback
                return _json_refusal(Refused(503, f"{type(exc).__name__}: {exc}"))

        return handler

    def _url(self, request: Request) -> Url:
        """URLs of this app's routes, under the path it is mounted at (``root_path``)."""

        def url(name: str, **params: Any) -> str:
            path = self._starlette.router.url_path_for(name, **params)
            root = request.scope.get("root_path", "")  # where a Mount put the app
            return str(request.url.replace(path=root + path, query="", fragment=""))

        return url

    def _caller(self, request: Request) -> tuple[Identity, str | None]:
        identity, cookie = identify(self.auth, request)
        if identity is None:
            raise Refused(401, "log in, or send Authorization: Bearer <token>")
        return identity, cookie

    async def _page(self, request: Request, page: str) -> Response:
        try:
            identity, cookie = self._caller(request)
        except Refused as refused:
            if refused.status == 401:
                return RedirectResponse(self._url(request)("login"), status_code=303)
            return HTMLResponse(
                self._render.error(self._url(request), refused), status_code=refused.status
            )
        try:
            data = await self.data(page)
        except RedkitError as exc:  # Redis out of reach: the page says so, never a traceback
            return self._refusal_page(request, Refused(503, f"{type(exc).__name__}: {exc}"))
        # What the last action did, carried over its redirect (signed: no page forges it).
        done = self.auth.unsigned(request.cookies.get(FLASH))
        html = self._render.page(
            self._url(request), page, data, identity=identity, csrf=self.auth.csrf_token(identity),
            actions=identity.role == "admin", done=done, stats_since=self.stats_since,
        )  # fmt: skip
        response = HTMLResponse(html)
        if cookie is not None:
            self._set_cookie(request, response, COOKIE, cookie, LOGIN_S)
        if FLASH in request.cookies:
            response.delete_cookie(FLASH, path=request.scope.get("root_path") or "/")
        return response

    def _set_cookie(
        self, request: Request, response: Response, name: str, value: str, max_age: int
    ) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path=request.scope.get("root_path") or "/",
            httponly=True, samesite="strict", secure=request.url.scheme == "https",
        )  # fmt: skip

    async def _login(self, request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(self._render.login(self._url(request), None))
        try:
            form = await _form(request)
        except Refused as refused:
            return self._refusal_page(request, refused)
        if not same_origin(request, self.allowed_origins):
            return HTMLResponse(
                self._render.login(self._url(request), "refused: foreign origin"), 403
            )
        role = self.auth.role_of_token(str(form.get("token", "")))
        if role is None or self.auth.no_auth:
            return HTMLResponse(
                self._render.login(self._url(request), "wrong token"), status_code=401
            )
        cookie, _identity = self.auth.new_cookie(role)
        response = RedirectResponse(self._url(request)("overview"), status_code=303)
        self._set_cookie(request, response, COOKIE, cookie, LOGIN_S)
        return response

    async def _logout(self, request: Request) -> Response:
        response = RedirectResponse(self._url(request)("login"), status_code=303)
        response.delete_cookie(COOKIE, path=request.scope.get("root_path") or "/")
        return response

    def _checked_post(self, request: Request, form: Any, *, admin: bool) -> Identity:
        """The caller of a POST, after every check; raises :class:`Refused`."""
        identity, _cookie = self._caller(request)
        if not same_origin(request, self.allowed_origins):
            raise Refused(403, "refused: the request comes from another origin")
        if identity.via != "bearer":  # a browser: its cookie goes along by itself
            presented = str(form.get("csrf", "")) or request.headers.get("x-csrf-token", "")
            if not self.auth.csrf_ok(identity, presented):
                raise Refused(403, "refused: missing or wrong CSRF token (reload the page)")
        if admin and identity.role != "admin":
            raise Refused(403, "refused: this action needs the admin token")
        return identity

    async def _scan(self, request: Request) -> Response:
        api = request.url.path.endswith("/api/keyspace/scan")
        try:
            self._checked_post(request, await _form(request), admin=False)
        except Refused as refused:
            return _json_refusal(refused) if api else self._refusal_page(request, refused)
        started = self.scans.start()
        if api:
            return JSONResponse({"started": started, "scan": self.scans.state.to_dict()})
        return RedirectResponse(self._url(request)("keyspace"), status_code=303)

    async def _act(self, request: Request) -> Response:
        action = request.path_params["action"]
        api = "/api/actions/" in request.url.path
        try:
            form = await _form(request)
            identity = self._checked_post(request, form, admin=True)
            client = request.client.host if request.client else "?"
            done, page = await self._perform(identity, client, action, form)
        except Refused as refused:
            return _json_refusal(refused) if api else self._refusal_page(request, refused)
        if api:
            return JSONResponse(done.__dict__)
        # Redirect after the POST: reloading the page shows it again, it does not act again.
        response = RedirectResponse(self._url(request)(page), status_code=303)
        self._set_cookie(request, response, FLASH, self.auth.sign(done.message), FLASH_S)
        return response

    async def _perform(
        self, identity: Identity, client: str, action: str, form: Any
    ) -> tuple[Done, str]:
        def field(name: str, *, required: bool = True) -> str:
            value = str(form.get(name, ""))
            if required and not value:
                raise Refused(400, f"the form needs a value for {name!r}")
            return value

        try:
            if action == "reset":
                prefix, identifier = field("prefix"), field("identifier")
                done = await self.actions.reset_identifier(identity, client, prefix, identifier)
                return done, "ratelimits"
            if action in ("bump", "tag"):
                namespace, version = field("namespace"), field("version", required=False)
                if action == "bump":
                    done = await self.actions.bump_namespace(
                        identity, client, namespace, version or None
                    )
                else:
                    done = await self.actions.invalidate_tag(
                        identity, client, namespace, version or None, field("tag")
                    )
                self.caches.forget(namespace)
                return done, "caches"
            if action == "revoke":
                done = await self.actions.revoke_user(
                    identity, client, field("prefix"), user_id_from_text(field("user"))
                )
                return done, "sessions"
        except (InvalidArgumentError, InvalidKeyError) as exc:  # a prefix, a key, a tag
            raise Refused(400, str(exc)) from exc
        raise Refused(404, f"no action {action!r}")

    def _refusal_page(self, request: Request, refused: Refused) -> Response:
        return HTMLResponse(
            self._render.error(self._url(request), refused), status_code=refused.status
        )

    async def _stylesheet(self, _request: Request) -> Response:
        return Response(self._css, media_type="text/css")


#: The largest form body read: the forms hold a token, a CSRF token and a few names.
MAX_FORM_BYTES = 64 * 1024


async def _form(request: Request) -> dict[str, str]:
    """A POST's URL-encoded form (what the pages' forms send), read up to a bound.

    Parsed here rather than by Starlette, which needs ``python-multipart`` for any form.
    """
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, f"a form of more than {MAX_FORM_BYTES} bytes")
    kind = request.headers.get("content-type", "").partition(";")[0].strip()
    if body and kind != "application/x-www-form-urlencoded":
        raise Refused(415, "send the form as application/x-www-form-urlencoded")
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _time() -> Any:
    return (yield command("TIME"))


def _json_refusal(refused: Refused) -> Response:
    headers = {"www-authenticate": "Bearer"} if refused.status == 401 else None
    return JSONResponse({"error": refused.reason}, status_code=refused.status, headers=headers)


def _merged(configured: tuple[str, ...], fleet: FleetStats, feature: str) -> list[str]:
    """The configured names, then those the fleet statistics know, each once."""
    seen = dict.fromkeys(configured)
    seen.update(dict.fromkeys(fleet.names(feature)))
    return list(seen)


def _fleet_overview(fleet: FleetStats) -> dict[str, Any]:
    """The fleet's cache hits and misses and its decisions, summed over names, per minute."""

    def summed(feature: str, counters: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for counter in counters:
            total: dict[int, float] = {}
            for name in fleet.names(feature):
                for t, v in fleet.series(feature, name, counter):
                    total[t] = total.get(t, 0) + v
            out[counter] = sorted(total.items())
        return out

    cache = summed("cache", ("hits", "misses"))
    hits = sum(v for _, v in cache["hits"])
    misses = sum(v for _, v in cache["misses"])
    return {
        "cache": cache,
        "hit_ratio": hits / (hits + misses) if hits + misses else None,
        # Upstash's analytics count a cached refusal as blocked; the fleet tells them apart.
        "decisions": summed(
            "ratelimit", ("allowed", "blocked", "cache_block", "denied", "timeout")
        ),
        "generated_at": time.time(),
    }
