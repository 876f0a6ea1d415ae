"""Response caching for FastAPI and Starlette endpoints: ``@cache_response(cache, ttl=...)``.

Put it under the route decorator. The endpoint needs no ``request`` parameter under FastAPI
(one is injected, as :func:`redkit.web.fastapi.rate_limit` does); a Starlette endpoint gets its
request as usual. What the endpoint returns becomes the cached body: a ``Response`` as it is
(its ``body``: streaming responses are not cached), anything else as FastAPI's JSON encoding of
it. See :mod:`redkit.web.response_cache` for the rules (keys, what is stored, ETags, 304s).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from redkit.cache import AsyncCache
from redkit.core.durations import Duration
from redkit.core.errors import InvalidArgumentError
from redkit.core.flow import run_async
from redkit.web.asgi._inject import inject
from redkit.web.response_cache import ResponseCachePolicy, Uncacheable, wanted_ttl

__all__ = ["cache_response", "invalidate_response"]

F = TypeVar("F", bound=Callable[..., Any])


def _as_response(result: Any) -> Response:
    if isinstance(result, Response):
        return result
    try:
        from fastapi.encoders import jsonable_encoder
    except ImportError:  # plain Starlette: the value must be JSON already
        return JSONResponse(result)
    return JSONResponse(jsonable_encoder(result))


def _decoded(sub: Response | None) -> list[tuple[str, str]]:
    if sub is None:
        return []
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in sub.raw_headers]


def _with_sub_headers(response: Response, sub: Response | None) -> Response:
    """``response`` with the headers dependencies set on the injected one (rate limits).

    FastAPI copies those only into responses it builds itself, never into one the endpoint
    returns, and this decorator always returns one.
    """
    if sub is not None and sub is not response:
        skip = {b"content-length", b"content-type"}
        response.raw_headers.extend((k, v) for k, v in sub.raw_headers if k.lower() not in skip)
    return response


def cache_response(
    cache: AsyncCache,
    ttl: Duration | None = None,
    *,
    vary: Sequence[str] = (),
    tags: Iterable[str] = (),
    prefix: str = "response",
    **others: object,
) -> Callable[[F], F]:
    """Cache a GET/HEAD endpoint's responses in ``cache`` for ``ttl``.

    Args:
        cache: the :class:`~redkit.AsyncCache` that stores the responses; its stampede
            protection applies (one endpoint call per key at a time, the lease across
            processes).
        ttl: how long a response is served from the cache (also its ``max-age``).
        vary: request headers whose values are part of the key.
        tags: tags on every entry: ``await cache.invalidate_tags(*tags)`` drops them all.
        prefix: the start of the keys (after the cache's namespace).
        **others: nothing is accepted: present only so that ``expire=`` or ``timeout=``
            (other libraries' names) get an error that names ``ttl=``.

    The wrapper has ``.invalidate(path, query="")``: drop the cached response of one URL.

    Raises:
        InvalidArgumentError: at decoration, for a blocking :class:`~redkit.Cache` (the
            wrapper runs in asyncio), or a time to live spelled as another library does.

    """
    if not isinstance(cache, AsyncCache):
        raise InvalidArgumentError(
            f"cache_response for FastAPI and Starlette needs an AsyncCache, got "
            f"{type(cache).__name__}: its endpoints run in asyncio, so make the cache with "
            "AsyncCache(redis, ...) (Flask's cache_response, in redkit.web.flask, takes a Cache)"
        )
    ttl = wanted_ttl(ttl, others, "cache_response")
    policy = ResponseCachePolicy(ttl, vary=vary, tags=tags, prefix=prefix)

    def decorate(func: F) -> F:
        injection = inject(func)
        is_async = inspect.iscoroutinefunction(func)

        async def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if is_async:
                return await func(*args, **kwargs)
            return await run_in_threadpool(func, *args, **kwargs)

        @functools.wraps(func)
        async def endpoint(*args: Any, **kwargs: Any) -> Any:
            request, sub = injection.take(args, kwargs)
            if not policy.applies(request.method):
                return await call(args, kwargs)
            key = policy.key(request.url.path, request.url.query, request.headers)
            called = False

            async def load() -> dict[str, Any]:
                nonlocal called
                called = True
                response = _as_response(await call(args, kwargs))
                if policy.personal(
                    request.headers.get("authorization"), request.scope.get("session")
                ):
                    raise Uncacheable(response)
                # What the endpoint set on the injected Response counts too (a cookie).
                headers = [*response.headers.items(), *_decoded(sub)]
                entry = policy.capture(response.status_code, headers, bytes(response.body))
                if entry is None:
                    raise Uncacheable(response)
                return entry.to_json()

            entry = await run_async(
                policy.lookup(cache, key, request.headers.get("cache-control"), load)
            )
            if isinstance(entry, Uncacheable):
                return _with_sub_headers(entry.response, sub)
            if entry is None:  # a foreign value under the key: answer without the cache
                return _with_sub_headers(_as_response(await call(args, kwargs)), sub)
            answer = policy.answer(
                entry, hit=not called, if_none_match=request.headers.get("if-none-match")
            )
            out = Response(answer.body, status_code=answer.status, headers=dict(answer.headers))
            return _with_sub_headers(out, sub)

        async def invalidate(
            path: str, query: str = "", headers: dict[str, str] | None = None
        ) -> int:
            """Drop the cached response of ``path`` with ``query`` (and the ``vary`` headers)."""
            return await cache.delete(policy.key(path, query, headers or {}))

        endpoint.invalidate = invalidate  # type: ignore[attr-defined]
        # FastAPI reads __signature__; __wrapped__ would lead it back to the original.
        del endpoint.__wrapped__
        endpoint.__signature__ = injection.signature  # type: ignore[attr-defined]
        return typing.cast(F, endpoint)

    return decorate


async def invalidate_response(
    cache: AsyncCache, path: str, query: str = "", *, prefix: str = "response"
) -> int:
    """Drop the cached response of one URL (for endpoints cached without ``vary``)."""
    return await cache.delete(ResponseCachePolicy(1, prefix=prefix).key(path, query, {}))
