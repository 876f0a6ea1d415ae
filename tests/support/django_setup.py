"""Django configured once for the test process: the apps the tests use, an in-memory database.

Django's settings are process-wide; each test changes what it needs with
``django.test.override_settings`` (its ``CACHES``, ``SESSION_ENGINE``, ``ROOT_URLCONF``...).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading

import django
from django.conf import settings

__all__ = ["configure", "migrate"]

_migrated = threading.Lock()
_done: list[bool] = []


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
        # A file, not ":memory:": a server's threads (WSGI, ASGI) each open their own
        # connection, and an in-memory database is one connection's alone.
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": _db_file()}},
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        ROOT_URLCONF=__name__,
    )
    django.setup()


def _db_file() -> str:
    directory = tempfile.mkdtemp(prefix="redkit-django-")
    atexit.register(shutil.rmtree, directory, True)
    return os.path.join(directory, "db.sqlite3")


def migrate() -> None:
    """Create the tables of the installed apps (once per process): tests that sign users in."""
    configure()
    with _migrated:
        if not _done:
            from django.core.management import call_command

            call_command("migrate", verbosity=0, interactive=False)
            _done.append(True)


urlpatterns: list[object] = []
