"""Settings of a small Django project on redkit: its cache, its sessions, its rate limits.

Redis comes from ``REDIS_URL`` (``redis://127.0.0.1:6379/0`` by default; a cluster is
``redis+cluster://host:port``). Everything redkit-specific is the four settings marked below.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-" + "x" * 50)  # set it in production
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "redkit.web.django.RatelimitMiddleware",  # redkit: REDKIT_RATELIMIT["DEFAULT"] on every view
]
ROOT_URLCONF = "exampleproject.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True

# redkit (1): the cache backend (EXAMPLE_CACHE_BACKEND names another, to compare).
CACHE_BACKEND = os.environ.get("EXAMPLE_CACHE_BACKEND", "redkit.web.django.RedisCache")
CACHES = {"default": {"BACKEND": CACHE_BACKEND, "LOCATION": REDIS_URL}}
# redkit (2): sessions, on the Redis of the "default" cache.
SESSION_ENGINE = "redkit.web.django.sessions"
REDKIT_SESSIONS = {"USING": "default", "IDLE_TIMEOUT": 3600, "ABSOLUTE_TIMEOUT": 7 * 24 * 3600}
SESSION_COOKIE_SECURE = not DEBUG
# redkit (3): rate limits; DEFAULT applies to every view, each view on its own counters.
REDKIT_RATELIMIT = {"DEFAULT": "100/m", "USING": "default", "TRUSTED_PROXIES": []}
