"""Response caching for Flask views: ``@cache_response(cache, ttl=...)``.

Put it under ``@app.get(...)`` (or ``@app.route``). What the view returns goes through Flask's
``make_response`` and its bytes become the cached body (streamed responses are not cached).
See :mod:`redkit.web.response_cache` for the rules (keys, what is stored, ETags, 304s).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from flask import Response, make_response, request
from flask.globals import request_ctx

from redkit.cache import AsyncCache, Cache
from redkit.core.durations import Duration
from redkit.core.errors import InvalidArgumentError
from redkit.core.flow import run_sync
from redkit.web.response_cache import ResponseCachePolicy, Uncacheable, wanted_ttl

__all__ = ["cache_response"]

F = TypeVar("F", bound=Callable[..., Any])


def _session() -> object:
    """This request's session object, read without marking it accessed.

    Flask 3.1 marks the session accessed whenever ``flask.session`` is resolved, so the flag
    is read from the request context's own attribute (``session`` before Flask 3.1).
    """
    try:
        context = vars(request_ctx._get_current_object())  # type: ignore[attr-defined]
    except RuntimeError:  # no request context
        return None
    return context.get("_session", context.get("session"))


def cache_response(
    cache: Cache | Callable[[], Cache],
    ttl: Duration | None = None,
    *,
    vary: Sequence[str] = (),
    tags: Iterable[str] = (),
    prefix: str = "response",
    **others: object,
) -> Callable[[F], F]:
    """Cache a GET/HEAD view's responses in ``cache`` for ``ttl``.

    The arguments of :func:`redkit.web.asgi.cache_response`, with a blocking
    :class:`~redkit.Cache` (or a function returning it, called per request: the Flask
    extension finds the app's). The wrapper has ``.invalidate(path, query="")``.

    Raises:
        InvalidArgumentError: at decoration, for an :class:`~redkit.AsyncCache` (Flask views
            are blocking), or a time to live spelled as another library does.

    """
    if isinstance(cache, AsyncCache):
        raise InvalidArgumentError(
            "cache_response for Flask needs a blocking Cache, got AsyncCache: make it with "
            "Cache(redis, ...) (the cache_response of redkit.web.fastapi takes an AsyncCache)"
        )
    policy = ResponseCachePolicy(
        wanted_ttl(ttl, others, "cache_response"), vary=vary, tags=tags, prefix=prefix
    )
    resolve: Callable[[], Cache] = (lambda: cache) if isinstance(cache, Cache) else cache

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not policy.applies(request.method):
                return view(*args, **kwargs)
            cache = resolve()
            query = request.query_string.decode("latin-1")
            headers = {name.lower(): value for name, value in request.headers.items()}
            key = policy.key(request.path, query, headers)
            called = False

            def load() -> dict[str, Any]:
                nonlocal called
                called = True
                response = make_response(view(*args, **kwargs))
                personal = policy.personal(request.headers.get("Authorization"), _session())
                if response.is_streamed or personal:
                    raise Uncacheable(response)
                entry = policy.capture(
                    response.status_code, response.headers.items(), response.get_data()
                )
                if entry is None:
                    raise Uncacheable(response)
                return entry.to_json()

            entry = run_sync(policy.lookup(cache, key, request.headers.get("Cache-Control"), load))
            if isinstance(entry, Uncacheable):
                return entry.response
            if entry is None:  # a foreign value under the key: answer without the cache
                return view(*args, **kwargs)
            answer = policy.answer(
                entry, hit=not called, if_none_match=request.headers.get("If-None-Match")
            )
            return Response(answer.body, status=answer.status, headers=answer.headers)

        def invalidate(path: str, query: str = "", headers: dict[str, str] | None = None) -> int:
            """Drop the cached response of ``path`` with ``query`` (and the ``vary`` headers)."""
            return resolve().delete(policy.key(path, query, headers or {}))

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        return cast(F, wrapper)

    return decorate
