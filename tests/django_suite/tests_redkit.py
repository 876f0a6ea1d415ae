"""Django's own ``BaseCacheTests`` run against ``redkit.web.django.RedisCache``.

Not a redkit test module: ``run_cache_tests.py`` copies it into Django's test suite (as
``cache/tests_redkit.py``) and runs it with Django's ``runtests.py``, so every assertion is
Django's; only the choice of backend is ours. The three culling tests skip themselves
("Culling isn't implemented"): the settings leave out the MAX_ENTRIES caches, as for Django's
own RedisCache, since Redis evicts by its maxmemory-policy.
"""

from __future__ import annotations

import os

from cache import tests as django_tests
from cache.tests import BaseCacheTests, caches_setting_for_tests
from django.test import TestCase, override_settings

PARAMS = {
    "BACKEND": "redkit.web.django.RedisCache",
    "LOCATION": os.environ["REDKIT_DJANGO_LOCATION"],
    # Upstash's REST protocol (redkit's gateway, for --topology rest): its token.
    "OPTIONS": {"TOKEN": os.environ["REDKIT_DJANGO_TOKEN"]}
    if "REDKIT_DJANGO_TOKEN" in os.environ
    else {},
}


@override_settings(CACHES=caches_setting_for_tests(base=PARAMS, exclude={"cull", "zero_cull"}))
class RedkitCacheTests(BaseCacheTests, TestCase):
    """Every BaseCacheTests test, on redkit's backend."""

    # The one RedisCacheTests test about the backend's contract rather than redis-py's
    # client classes and pools (which this backend does not use).
    test_get_backend_timeout_method = django_tests.RedisCacheTests.test_get_backend_timeout_method
