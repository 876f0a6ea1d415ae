"""Django served three ways for the tests: its test client, uvicorn (ASGI), werkzeug (WSGI)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from support.django_setup import migrate
from support.web import serve_asgi, serve_wsgi

__all__ = ["HOW", "app_base", "ensure_users", "redkit_settings"]

#: How a test reaches Django: its test client, or real HTTP to an ASGI or a WSGI server.
HOW = ["client", "asgi", "wsgi"]


@contextmanager
def app_base(how: str) -> Iterator[str | None]:
    """The base URL of Django served as ``how`` says (``None``: use Django's test client).

    The app is made inside the block, so it loads the middleware the settings name now.
    """
    if how == "client":
        yield None
    elif how == "asgi":
        from django.core.asgi import get_asgi_application

        with serve_asgi(get_asgi_application()) as base:
            yield base
    else:
        from django.core.wsgi import get_wsgi_application

        with serve_wsgi(get_wsgi_application()) as base:
            yield base


@contextmanager
def redkit_settings(
    location: str, *, sessions: dict[str, Any] | None = None, **overrides: Any
) -> Iterator[None]:
    """redkit's session engine on ``location``, the tests' views, fast password hashing, and
    any other ``overrides``; the connections made from the settings are closed after."""
    from django.test import override_settings

    from redkit.web.django.connection import close_connections

    with override_settings(
        SESSION_ENGINE="redkit.web.django.sessions",
        REDKIT_SESSIONS={"LOCATION": location, "PREFIX": "dj-test", **(sessions or {})},
        ROOT_URLCONF="support.django_views",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        **overrides,
    ):
        try:
            yield
        finally:
            close_connections()


def ensure_users(location: str, *names: str) -> None:
    """The database's tables, and users ``names`` (password ``"pw-<name>"``)."""
    from django.contrib.auth.models import User

    migrate()
    with redkit_settings(location):
        for name in names:
            if not User.objects.filter(username=name).exists():
                User.objects.create_user(name, password="pw-" + name)
