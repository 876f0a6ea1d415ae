"""Django configured once for the test process: the apps the tests use, an in-memory database.

Django's settings are process-wide; each test changes what it needs with
``django.test.override_settings`` (its ``CACHES``, ``SESSION_ENGINE``, ``ROOT_URLCONF``...).
"""

from __future__ import annotations

import django
from django.conf import settings

__all__ = ["configure"]


def configure() -> None:
    """Configure Django for the tests (once; later calls do nothing)."""
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="redkit-tests-" + "k" * 40,
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        ROOT_URLCONF=__name__,
    )
    django.setup()


urlpatterns: list[object] = []
