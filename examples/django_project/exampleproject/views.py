"""The example's views: JSON only (nothing is rendered as HTML)."""

from __future__ import annotations

from django.contrib import auth
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_POST

from redkit.web.django import ratelimit, revoke_user_sessions


@ratelimit("30/m", key="user_or_ip")
def home(request: HttpRequest) -> JsonResponse:
    """Counts this session's visits; says who is signed in."""
    request.session["visits"] = request.session.get("visits", 0) + 1
    user = request.user
    return JsonResponse(
        {
            "user": user.get_username() if user.is_authenticated else None,
            "visits": request.session["visits"],
        }
    )


@require_POST
@ratelimit("5/h;20/d", key="post:username")  # per account name: slows password guessing
def login(request: HttpRequest) -> JsonResponse:
    """Sign in with the form fields ``username`` and ``password``."""
    user = auth.authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return JsonResponse({"ok": False}, status=403)
    auth.login(request, user)  # a new session id: redkit rotates it
    return JsonResponse({"ok": True})


@require_POST
def logout(request: HttpRequest) -> JsonResponse:
    """Sign out of this session."""
    auth.logout(request)
    return JsonResponse({"ok": True})


@require_POST
def logout_everywhere(request: HttpRequest) -> JsonResponse:
    """End every other session of the signed-in user."""
    if not request.user.is_authenticated:
        return JsonResponse({"ok": False}, status=403)
    ended = revoke_user_sessions(request.user, keep=request.session)
    return JsonResponse({"ended": ended})


@ratelimit("10/h", key="ip", block=False)
async def search(request: HttpRequest) -> JsonResponse:
    """An async view that degrades instead of refusing: past 10 an hour, no results."""
    if request.limited:
        return JsonResponse({"results": [], "note": "slow down"})
    query = request.GET.get("q", "")
    return JsonResponse({"results": [query] if query else []})


def cached(request: HttpRequest) -> JsonResponse:
    """A value from the cache backend, computed once per minute."""
    value = cache.get_or_set("example:answer", lambda: {"answer": 42}, timeout=60)
    return JsonResponse(value)
