"""Response caching for Django views: ``@cache_page(ttl="5 m")``, with ETags and 304s.

Like Django's ``django.views.decorators.cache.cache_page``, on a cache alias whose backend is
:class:`redkit.web.django.RedisCache`; unlike it, concurrent misses of one URL are one call of
the view (single flight, and the lease across processes), entries can be tagged, and every
answer carries a strong ``ETag`` that a matching ``If-None-Match`` turns into a ``304``. The
rules (keys, what is stored, the headers) are :mod:`redkit.web.response_cache`'s, shared with
the Flask and Starlette adapters. Plain and ``async def`` views both work.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from django.core.cache import caches
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.template.response import SimpleTemplateResponse

from redkit.core.durations import Duration
from redkit.core.errors import InvalidArgumentError
from redkit.core.flow import run_async, run_sync
from redkit.web.django.cache import RedisCache
from redkit.web.response_cache import Answer, ResponseCachePolicy, Uncacheable, wanted_ttl

__all__ = ["cache_page"]

F = TypeVar("F", bound=Callable[..., Any])


def _backend(alias: str) -> RedisCache:
    backend = caches[alias]
    if not isinstance(backend, RedisCache):
        raise InvalidArgumentError(
            f"cache_page(cache={alias!r}) needs a cache whose BACKEND is "
            f"redkit.web.django.RedisCache, not {type(backend).__module__}."
            f"{type(backend).__qualname__}"
        )
    return backend


def _headers(request: HttpRequest) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _respond(answer: Answer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response


class _Page:
    """One decorated view's policy and its three questions: key, capture, answer."""

    def __init__(self, policy: ResponseCachePolicy, alias: str) -> None:
        self.policy = policy
        self.alias = alias

    def key(self, request: HttpRequest) -> str:
        query = request.META.get("QUERY_STRING", "")
        return self.policy.key(request.path, query, _headers(request))

    def capture(self, request: HttpRequest, response: HttpResponseBase) -> dict[str, Any]:
        """The entry to store, or :class:`Uncacheable` raised with the response as it is."""
        personal = self.policy.personal(
            request.headers.get("Authorization"), getattr(request, "session", None)
        )
        # Django keeps cookies apart from the headers (response.cookies): a response that
        # sets one is meant for its visitor, whatever its headers say.
        if personal or isinstance(response, StreamingHttpResponse) or response.cookies:
            raise Uncacheable(response)
        if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
            response.render()  # what the middleware would do later: the body is needed now
        if not isinstance(response, HttpResponse):
            raise Uncacheable(response)
        entry = self.policy.capture(response.status_code, response.items(), response.content)
        if entry is None:
            raise Uncacheable(response)
        return entry.to_json()

    def answer(self, request: HttpRequest, found: object, called: bool) -> HttpResponseBase | None:
        if isinstance(found, Uncacheable):
            return cast(HttpResponseBase, found.response)
        if found is None:  # a value this policy did not write: answer without the cache
            return None
        answer = self.policy.answer(
            found,  # type: ignore[arg-type]  # a CachedResponse: the other cases are above
            hit=not called,
            if_none_match=request.headers.get("If-None-Match"),
        )
        return _respond(answer)


def cache_page(
    ttl: Duration | None = None,
    *,
    cache: str = "default",
    vary: Sequence[str] = (),
    tags: Iterable[str] = (),
    prefix: str = "response",
    **others: object,
) -> Callable[[F], F]:
    """Cache a GET/HEAD view's ``200`` responses for ``ttl`` in the cache alias ``cache``.

    Args:
        ttl: how long a response is served from the cache (``"5 m"``, seconds).
        cache: the ``CACHES`` alias; its backend must be :class:`~redkit.web.django.RedisCache`.
        vary: request headers whose values are part of the key (``"Accept-Language"``).
        tags: stamped on every entry: ``caches[alias].invalidate_tags(...)`` drops them all.
        prefix: the start of every key, after the cache's namespace.
        others: refused, naming ``ttl=`` when it is another library's word for it.

    The wrapper has ``.invalidate(path, query="", headers=None)``.

    Raises:
        InvalidArgumentError: at decoration, without ``ttl`` or with an unknown keyword.

    """
    policy = ResponseCachePolicy(
        wanted_ttl(ttl, others, "cache_page"), vary=vary, tags=tags, prefix=prefix
    )
    page = _Page(policy, cache)

    def decorate(view: F) -> F:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if not policy.applies(request.method or "GET"):
                    return await view(request, *args, **kwargs)
                called = False

                async def load() -> dict[str, Any]:
                    nonlocal called
                    called = True
                    return page.capture(request, await view(request, *args, **kwargs))

                found = await run_async(
                    policy.lookup(
                        _backend(cache).redkit_async,
                        page.key(request),
                        request.headers.get("Cache-Control"),
                        load,
                    )
                )
                answered = page.answer(request, found, called)
                return answered if answered is not None else await view(request, *args, **kwargs)

            async_wrapper.invalidate = _invalidator(page)  # type: ignore[attr-defined]
            return cast(F, async_wrapper)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not policy.applies(request.method or "GET"):
                return view(request, *args, **kwargs)
            called = False

            def load() -> dict[str, Any]:
                nonlocal called
                called = True
                return page.capture(request, view(request, *args, **kwargs))

            found = run_sync(
                policy.lookup(
                    _backend(cache).redkit,
                    page.key(request),
                    request.headers.get("Cache-Control"),
                    load,
                )
            )
            answered = page.answer(request, found, called)
            return answered if answered is not None else view(request, *args, **kwargs)

        wrapper.invalidate = _invalidator(page)  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate


def _invalidator(page: _Page) -> Callable[..., int]:
    def invalidate(path: str, query: str = "", headers: dict[str, str] | None = None) -> int:
        """Drop the cached response of ``path`` with ``query`` (and the ``vary`` headers)."""
        lowered = {name.lower(): value for name, value in (headers or {}).items()}
        return _backend(page.alias).redkit.delete(page.policy.key(path, query, lowered))

    return invalidate
