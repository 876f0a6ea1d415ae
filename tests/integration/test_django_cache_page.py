"""``redkit.web.django.cache_page`` on real servers (standalone, cluster, REST through the
gateway): sync views through Django's test client, async views through its async client."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from redkit.core.errors import InvalidArgumentError
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from support import django_setup
from support.backends import REST_TOKEN
from support.loop import LoopThread

django_setup.configure()

from django.core.cache import caches  # noqa: E402  (Django configured above)
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.test import AsyncClient, Client, override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from redkit.web.django import cache_page  # noqa: E402
from redkit.web.django.cache import aclose_connections  # noqa: E402

calls = itertools.count()


@cache_page(ttl=60, tags=["pages"])
def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"page {next(calls)}", content_type="text/plain")


@cache_page(ttl=60, vary=["Accept-Language"])
async def async_page(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"async {next(calls)} {request.headers.get('Accept-Language')}")


@cache_page(ttl=60)
def cookie_page(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(f"cookie {next(calls)}")
    response.set_cookie("seen", "1")
    return response


urlpatterns = [
    path("page", page),
    path("async", async_page),
    path("cookie", cookie_page),
]


@pytest.fixture(params=["standalone", "cluster", "rest"])
def location(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[dict[str, Any]]:
    if request.param == "cluster":
        cluster: EmbeddedCluster = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        params: dict[str, Any] = {"LOCATION": cluster.url}
    else:
        server: EmbeddedRedis = request.getfixturevalue("redis_server")
        with server.client() as admin:
            admin.flushall()
        params = {"LOCATION": server.url}
        if request.param == "rest":
            params = {"LOCATION": request.getfixturevalue("rest_gateway")}
            params["OPTIONS"] = {"TOKEN": REST_TOKEN}
    caches_setting = {"default": {"BACKEND": "redkit.web.django.RedisCache", **params}}
    with override_settings(CACHES=caches_setting, ROOT_URLCONF=__name__):
        yield params
    loop_thread.run(aclose_connections())


def test_a_sync_view_is_served_from_the_cache_with_an_etag(location: dict[str, Any]) -> None:
    client = Client()
    first = client.get("/page?a=1&b=2")
    assert first.status_code == 200
    assert first["X-Cache"] == "MISS"
    again = client.get("/page?b=2&a=1")  # the same query, in another order
    assert again["X-Cache"] == "HIT"
    assert again.content == first.content
    assert again["ETag"] == first["ETag"]
    assert again["Content-Type"] == "text/plain"
    not_modified = client.get("/page?a=1&b=2", headers={"If-None-Match": first["ETag"]})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    other = client.get("/page?a=2")
    assert other["X-Cache"] == "MISS"
    assert other.content != first.content


def test_what_must_not_be_shared_is_not_cached(location: dict[str, Any]) -> None:
    client = Client()
    posted = [client.post("/page").content for _ in range(2)]
    assert posted[0] != posted[1]  # POST: the view every time
    personal = [client.get("/page", headers={"Authorization": "Bearer x"}) for _ in range(2)]
    assert personal[0].content != personal[1].content
    cookies = [client.get("/cookie").content for _ in range(2)]
    assert cookies[0] != cookies[1]  # a Set-Cookie response is never stored
    assert client.get("/page", headers={"Cache-Control": "no-cache"})["X-Cache"] == "MISS"


def test_invalidate_and_tags(location: dict[str, Any]) -> None:
    client = Client()
    first = client.get("/page").content
    assert client.get("/page").content == first
    assert page.invalidate("/page") == 1  # type: ignore[attr-defined]
    second = client.get("/page").content
    assert second != first
    caches["default"].invalidate_tags("pages")  # type: ignore[attr-defined]
    assert client.get("/page").content != second


def test_an_async_view(location: dict[str, Any], loop_thread: LoopThread) -> None:
    async def visit() -> list[Any]:
        client = AsyncClient()
        english = await client.get("/async", headers={"Accept-Language": "en"})
        again = await client.get("/async", headers={"Accept-Language": "en"})
        french = await client.get("/async", headers={"Accept-Language": "fr"})
        return [english, again, french]

    english, again, french = loop_thread.run(visit())
    assert english["X-Cache"] == "MISS"
    assert again["X-Cache"] == "HIT"
    assert again.content == english.content
    assert french["X-Cache"] == "MISS"  # Accept-Language is part of the key
    assert b"fr" in french.content


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="needs ttl="):
        cache_page()
    with pytest.raises(InvalidArgumentError, match="ttl="):
        cache_page(timeout=60)


def test_a_cache_of_another_backend_is_refused(loop_thread: LoopThread) -> None:
    @cache_page(ttl=60, cache="default")
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("x")

    locmem = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with (
        override_settings(CACHES=locmem),
        pytest.raises(InvalidArgumentError, match=r"redkit\.web\.django\.RedisCache"),
    ):
        view(HttpRequest())
