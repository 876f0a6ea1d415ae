"""Django's session tests (``SessionTestsMixin``, ``SessionMiddlewareTests``) on redkit's engine.

Copy this file into the ``sessions_tests`` directory of Django's test suite (the ``tests``
directory of the installed version's source: ``pip download django==<version> --no-binary
:all: --no-deps``, unpacked), then, from that ``tests`` directory::

    PYTHONPATH=<redkit>/src python runtests.py --settings=test_sqlite --parallel=1 \\
        sessions_tests.tests_redkit_sessions

``REDKIT_DJANGO_LOCATION`` names the Redis (``embedded://`` by default: a real
``redis-server`` for the run; ``embedded+cluster://`` for a cluster). The assertions are all
Django's; this module only picks the engine and names the two tests that do not apply.
"""

from __future__ import annotations

import os
import unittest

from django.test import SimpleTestCase, override_settings

from redkit.web.django.sessions import SessionStore

from .tests import SessionMiddlewareTests, SessionTestsMixin

ENGINE = {
    "SESSION_ENGINE": "redkit.web.django.sessions",
    "REDKIT_SESSIONS": {"LOCATION": os.environ.get("REDKIT_DJANGO_LOCATION", "embedded://")},
}


@override_settings(**ENGINE)
class RedkitSessionTests(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore

    @unittest.skip("by design: only ids of redkit's shape are looked up, never '12345678'")
    def test_session_key_valid_string_saved(self) -> None:
        """Skipped: redkit issues its own ids (a handle and a 256-bit secret)."""


@override_settings(**ENGINE)
class RedkitSessionMiddlewareTests(SessionMiddlewareTests):
    @unittest.skip("reads django.contrib.sessions' database model, which this engine never uses")
    def test_empty_session_saved(self) -> None:
        """Skipped: the test looks the session up in the database engine's table."""
