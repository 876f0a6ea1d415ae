"""A Django request as redkit's key functions see it (:class:`~redkit.web.request.RequestInfo`)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest

from redkit.core.errors import RedkitError
from redkit.web.request import UNMATCHED

__all__ = ["DjangoRequest", "user_pk"]


def user_pk(request: HttpRequest) -> str | None:
    """The signed-in user's primary key (as text), or ``None`` for an anonymous request.

    Raises:
        ImproperlyConfigured: the request has no ``user``: a limit by user needs
            ``django.contrib.auth``'s ``AuthenticationMiddleware`` before it.

    """
    user: Any = getattr(request, "user", None)
    if user is None:
        raise ImproperlyConfigured(
            "a rate limit keyed by user got a request without request.user: add "
            "'django.contrib.auth.middleware.AuthenticationMiddleware' to MIDDLEWARE (before "
            "redkit's RatelimitMiddleware), or key the limit by 'ip'"
        )
    try:
        if not user.is_authenticated:  # loads the session, if nothing did yet
            return None
    except RedkitError:
        # The session's Redis did not answer: the limit counts the request as anonymous,
        # and the session fails the request where it is used, as it would without a limit.
        return None
    return str(user.pk)


class DjangoRequest:
    """``request`` seen as a :class:`~redkit.web.request.RequestInfo`.

    Args:
        request: Django's request.
        route: the name counters of this request go under (the view's), if any.

    """

    def __init__(self, request: HttpRequest, route: str | None = None) -> None:
        self._request = request
        self._route = route

    @property
    def peer(self) -> str | None:
        """``REMOTE_ADDR``: the socket peer, as the WSGI or ASGI server gives it."""
        peer = self._request.META.get("REMOTE_ADDR")
        return peer if isinstance(peer, str) and peer else None

    def headers(self, name: str) -> list[str]:
        """The header's value (Django joins repeated headers into one), or ``[]``."""
        value = self._request.headers.get(name)
        return [] if value is None else [value]

    def user_id(self) -> object | None:
        """The signed-in user's primary key, or ``None``."""
        return user_pk(self._request)

    @property
    def native(self) -> HttpRequest:
        """Django's request."""
        return self._request

    def route(self) -> str | None:
        """The counter's name given at construction, else the URL pattern matched."""
        if self._route is not None:
            return self._route
        match = self._request.resolver_match
        return match.route if match is not None else UNMATCHED

    def session_pending(self) -> None:
        """``None``: Django's session loads on first use."""
        return
