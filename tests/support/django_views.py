"""Views and URLs of the Django session and rate-limit tests (``ROOT_URLCONF``), sync and async.

Import it after :func:`support.django_setup.configure`: the decorators read the settings.
Every session view comes twice, ``/s/...`` (a sync view) and ``/a/...`` (an async one).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from django.contrib import auth
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from redkit.web.django.limits import ratelimit
from redkit.web.django.sessions import arevoke_user_sessions, revoke_user_sessions


def _body(request: HttpRequest) -> dict[str, Any]:
    return json.loads(request.body or b"{}")


# -- sessions, sync ---------------------------------------------------------------------------
def s_login(request: HttpRequest) -> JsonResponse:
    args = _body(request)
    user = auth.authenticate(request, username=args["username"], password=args["password"])
    if user is None:
        return JsonResponse({"ok": False}, status=403)
    auth.login(request, user)
    return JsonResponse({"ok": True})


def s_logout(request: HttpRequest) -> JsonResponse:
    auth.logout(request)
    return JsonResponse({"ok": True})


def s_whoami(request: HttpRequest) -> JsonResponse:
    user = request.user
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


def s_set(request: HttpRequest) -> JsonResponse:
    args = _body(request)
    dict(request.session.items())  # read first: a concurrent request's change comes after
    time.sleep(float(args.get("delay", 0)))
    request.session[args["key"]] = args["value"]
    return JsonResponse({"ok": True})


def s_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"data": dict(request.session.items())})


def s_revoke(request: HttpRequest) -> JsonResponse:
    keep = request.session if _body(request).get("keep") else None
    return JsonResponse({"ended": revoke_user_sessions(request.user, keep=keep)})


# -- sessions, async --------------------------------------------------------------------------
async def a_login(request: HttpRequest) -> JsonResponse:
    args = _body(request)
    user = await auth.aauthenticate(request, username=args["username"], password=args["password"])
    if user is None:
        return JsonResponse({"ok": False}, status=403)
    await auth.alogin(request, user)
    return JsonResponse({"ok": True})


async def a_logout(request: HttpRequest) -> JsonResponse:
    await auth.alogout(request)
    return JsonResponse({"ok": True})


async def a_whoami(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    return JsonResponse({"user": user.get_username() if user.is_authenticated else None})


async def a_set(request: HttpRequest) -> JsonResponse:
    args = _body(request)
    await request.session.aitems()
    await asyncio.sleep(float(args.get("delay", 0)))
    await request.session.aset(args["key"], args["value"])
    return JsonResponse({"ok": True})


async def a_data(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"data": dict(await request.session.aitems())})


async def a_revoke(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    keep = request.session if _body(request).get("keep") else None
    return JsonResponse({"ended": await arevoke_user_sessions(user, keep=keep)})


# -- rate limits --------------------------------------------------------------------------------
def _view(name: str, *, is_async: bool = False) -> Any:
    """A view of its own (a counter of its own: each view's module and name name it)."""

    def view(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"limited": getattr(request, "limited", False)})

    async def aview(request: HttpRequest) -> HttpResponse:
        return view(request)

    chosen: Any = aview if is_async else view
    chosen.__name__ = chosen.__qualname__ = f"view_{name}"
    return chosen


def _plan(request: HttpRequest) -> str:
    return "pro" if request.headers.get("x-plan") == "pro" else "free"


def _by_who(request: HttpRequest) -> str | None:
    return request.GET.get("who")


def _limited(name: str, rate: Any, *, is_async: bool = False, **options: Any) -> Any:
    return ratelimit(rate, **options)(_view(name, is_async=is_async))


RATE_VIEWS: dict[str, Any] = {
    "ip": _limited("ip", "3/h", key="ip"),
    "ip2": _limited("ip2", "3/h", key="ip"),
    "user": _limited("user", "3/h", key="user"),
    "user_or_ip": _limited("user_or_ip", "3/h", key="user_or_ip"),
    "header": _limited("header", "3/h", key="header:x-api-key"),
    "get": _limited("get", "3/h", key="get:q"),
    "post": _limited("post", "3/h", key="post:username"),
    "callable": _limited("callable", "3/h", key=_by_who),
    "post_only": _limited("post_only", "3/h", key="ip", method="POST"),
    "noblock": _limited("noblock", "3/h", key="ip", block=False),
    "multi": _limited("multi", "3/h;2/d", key="ip"),
    "tiers": _limited("tiers", {"free": "2/h", "pro": "4/h"}, key="ip", tier=_plan),
    "shared_a": _limited("shared_a", "3/h", key="ip", scope="shared"),
    "shared_b": _limited("shared_b", "3/h", key="ip", scope="shared"),
    "async_ip": _limited("async_ip", "3/h", key="ip", is_async=True),
    "async_user": _limited("async_user", "3/h", key="user_or_ip", is_async=True),
    "async_noblock": _limited("async_noblock", "3/h", key="ip", block=False, is_async=True),
    "plain": _view("plain"),
    "aplain": _view("aplain", is_async=True),
}

_SESSION_VIEWS = {
    "login": (s_login, a_login),
    "logout": (s_logout, a_logout),
    "whoami": (s_whoami, a_whoami),
    "set": (s_set, a_set),
    "data": (s_data, a_data),
    "revoke": (s_revoke, a_revoke),
}

urlpatterns = [
    *(path(f"s/{name}", views[0]) for name, views in _SESSION_VIEWS.items()),
    *(path(f"a/{name}", views[1]) for name, views in _SESSION_VIEWS.items()),
    *(path(f"r/{name}", view) for name, view in RATE_VIEWS.items()),
]
