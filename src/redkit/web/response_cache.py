"""Response caching without a framework: keys, what may be stored, ETags and 304s.

The Starlette/FastAPI and Flask adapters ask this module three things: the cache key of a
request, whether a response may be stored, and the status, headers and body to answer with
(from the cache or not). Entries go through a :class:`redkit.Cache` / :class:`redkit.AsyncCache`
and its ``get_or_set``, so concurrent misses of one URL are one call of the endpoint (single
flight, and the lease across processes).

Rules:

- Only ``GET`` and ``HEAD`` are cached (a ``HEAD`` is answered from the ``GET`` entry, and the
  server leaves the body out).
- The key is the path and a stable hash of the query parameters (order does not matter:
  ``?a=1&b=2`` is ``?b=2&a=1``), plus the values of the request headers named in ``vary``.
- Only a ``200`` without ``Set-Cookie``, without ``Cache-Control: private``, ``no-store`` or
  ``no-cache``, and without a ``Vary`` on a header the key does not hold, is stored; and only
  when the request carried no ``Authorization`` and did not use its session: a response meant
  for one visitor is never served to another.
- A request's ``Cache-Control: no-cache`` skips the cached copy (the fresh response replaces
  it); ``no-store`` neither reads nor writes the cache.
- Every answer carries a strong ``ETag`` (a digest of the body), ``Cache-Control: max-age`` (the
  time the entry has left) and ``X-Cache: HIT`` or ``MISS``; a matching ``If-None-Match`` gets
  ``304 Not Modified`` without a body.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qsl

from redkit.cache.facade import AsyncCache, Cache
from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import InvalidArgumentError
from redkit.core.flow import Flow
from redkit.core.keys import stable_hash as hash_query
from redkit.core.ops import Call

__all__ = [
    "Answer",
    "CachedResponse",
    "EntryLoader",
    "ResponseCachePolicy",
    "Uncacheable",
    "wanted_ttl",
]

#: What other libraries call a response's time to live (fastapi-cache2, Flask-Caching...).
_OTHER_TTL_NAMES = ("expire", "expires", "timeout", "max_age", "ttl_seconds")


def wanted_ttl(ttl: Duration | None, others: Mapping[str, object], where: str) -> Duration:
    """The ``ttl`` a response-caching decorator was given; an error naming ``ttl=`` otherwise.

    ``others`` are the keywords the decorator did not know: users bring ``expire=`` from
    fastapi-cache2 and ``timeout=`` from Flask-Caching, and deserve the name redkit uses.
    """
    for name in others:
        hint = ' (redkit\'s name for it is ttl=, e.g. ttl="5 m" or ttl=300)'
        raise InvalidArgumentError(
            f"{where}() got an unexpected keyword {name}="
            + (hint if name in _OTHER_TTL_NAMES else "")
        )
    if ttl is None:
        raise InvalidArgumentError(f'{where}() needs ttl=, how long to keep a response ("5 m")')
    return ttl


#: Response headers kept with a cached body; others (Date, Set-Cookie, ...) are not replayed.
_KEPT_HEADERS = frozenset({"content-type", "content-language", "content-encoding", "vary"})


@dataclass(frozen=True)
class CachedResponse:
    """A stored response: what is replayed on a hit."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    etag: str
    stored_at: float

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON values (the cache stores JSON)."""
        return {
            "status": self.status,
            "headers": [list(pair) for pair in self.headers],
            "body": base64.b64encode(self.body).decode("ascii"),
            "etag": self.etag,
            "stored_at": self.stored_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> CachedResponse | None:
        """The entry from :meth:`to_json`; ``None`` for anything else (a foreign value)."""
        try:
            return cls(
                status=int(data["status"]),
                headers=tuple((str(k), str(v)) for k, v in data["headers"]),
                body=base64.b64decode(data["body"], validate=True),
                etag=str(data["etag"]),
                stored_at=float(data["stored_at"]),
            )
        except (KeyError, TypeError, ValueError):
            return None


class Uncacheable(Exception):
    """Raised inside the cache's loader to hand back a response that must not be stored."""

    # Any: the framework's response object, which this framework-free module cannot name.
    def __init__(self, response: Any) -> None:
        super().__init__("response not cacheable")
        self.response = response


#: Calls the view and returns its captured entry (:meth:`CachedResponse.to_json`), or raises
#: :class:`Uncacheable`: a plain function for Flask's :class:`~redkit.Cache`, a coroutine
#: function for the :class:`~redkit.AsyncCache` of Starlette and FastAPI.
EntryLoader: TypeAlias = Callable[[], dict[str, Any]] | Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Answer:
    """The status, headers and body to send (the body is empty for a 304)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _directives(value: str | None) -> set[str]:
    if not value:
        return set()
    return {part.strip().split("=", 1)[0].lower() for part in value.split(",") if part.strip()}


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    # Weak comparison, as RFC 9110 asks for If-None-Match: W/"x" matches "x".
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


class ResponseCachePolicy:
    """How one cached endpoint keys, stores and answers.

    Args:
        ttl: how long a response is served from the cache.
        vary: request headers whose values are part of the key (``"Accept-Language"``).
        tags: tags stamped on every entry (invalidate them all with
            ``cache.invalidate_tags(...)``).
        prefix: the start of every key (the cache's namespace comes before it).

    """

    def __init__(
        self,
        ttl: Duration,
        *,
        vary: Sequence[str] = (),
        tags: Iterable[str] = (),
        prefix: str = "response",
    ) -> None:
        self.ttl_ms = duration_ms(ttl, name="ttl")
        if isinstance(vary, str):
            raise InvalidArgumentError("vary must be a list of header names, not one string")
        self.vary = tuple(name.lower() for name in vary)
        self.tags = list(tags)
        self.prefix = prefix

    def key(self, path: str, query_string: str, headers: Mapping[str, str]) -> str:
        """The cache key of a request: path, hashed query, and the ``vary`` headers."""
        params = sorted(parse_qsl(query_string, keep_blank_values=True))
        parts: dict[str, Any] = {"q": params}
        if self.vary:
            parts["h"] = [headers.get(name, "") for name in self.vary]
        return f"{self.prefix}:{path}?{hash_query(parts)}"

    @staticmethod
    def applies(method: str) -> bool:
        """Whether requests of ``method`` are cached at all."""
        return method.upper() in ("GET", "HEAD")

    @staticmethod
    def request_directives(cache_control: str | None) -> tuple[bool, bool]:
        """``(read, write)``: may this request be served from, and stored into, the cache."""
        directives = _directives(cache_control)
        if "no-store" in directives:
            return False, False
        return "no-cache" not in directives, True

    def lookup(
        self, cache: Cache | AsyncCache, key: str, cache_control: str | None, load: EntryLoader
    ) -> Flow[CachedResponse | Uncacheable | None]:
        """Read or bypass ``cache`` as the request asks.

        ``load`` calls the view and returns its captured entry, or raises
        :class:`Uncacheable`. The flow's value is the entry to answer with, the
        :class:`Uncacheable` whose response goes out as it is, or ``None`` when the key holds
        a value this policy did not write (answer without the cache). Run it with
        :func:`~redkit.core.flow.run_sync` for a :class:`~redkit.Cache`, with
        :func:`~redkit.core.flow.run_async` for an :class:`~redkit.AsyncCache`.

        The cache is called through its facade's methods, not its flows: ``get_or_set`` needs
        what only the facade holds (its single flight, its background refresh, its breaker in
        front of Redis), so the flow asks for that call as it asks for the view's.
        """
        read, write = self.request_directives(cache_control)
        ttl = self.ttl_ms / 1000
        try:
            if read:
                stored = yield Call(cache.get_or_set, (key, load, ttl), {"tags": self.tags})
            else:
                stored = yield Call(load)
                if write:
                    yield Call(cache.set, (key, stored, ttl), {"tags": self.tags})
        except Uncacheable as passed:
            return passed
        return CachedResponse.from_json(stored)

    @staticmethod
    def personal(authorization: str | None, session: object) -> bool:
        """Whether a request's answer may be meant for its sender alone.

        It is when the request carries credentials (RFC 9111 keeps shared caches from storing
        answers to ``Authorization``), or when it used its session (a redkit session, or any
        with an ``accessed`` flag, such as Flask's): the answer may hold what only this
        visitor should see.
        """
        return bool(authorization) or bool(getattr(session, "accessed", False))

    def capture(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes
    ) -> CachedResponse | None:
        """The entry to store for this response, or ``None`` when it must not be stored."""
        pairs = [(name.lower(), value) for name, value in headers]
        if status != 200 or any(name == "set-cookie" for name, _ in pairs):
            return None
        control = _directives(", ".join(v for name, v in pairs if name == "cache-control"))
        if control & {"private", "no-store", "no-cache"}:
            return None
        varies = _directives(", ".join(v for name, v in pairs if name == "vary"))
        if varies - set(self.vary):  # "*", or a header the key does not tell apart
            return None
        kept = tuple((name, value) for name, value in pairs if name in _KEPT_HEADERS)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return CachedResponse(status, kept, body, etag, time.time())

    def answer(self, entry: CachedResponse, *, hit: bool, if_none_match: str | None) -> Answer:
        """What to send for ``entry``: a 304 when the client's ETag matches.

        A ``HEAD`` gets the ``GET`` answer: the server leaves the body out.
        """
        left_s = max(0, math.ceil(self.ttl_ms / 1000 - (time.time() - entry.stored_at)))
        headers = [
            *entry.headers,
            ("etag", entry.etag),
            ("cache-control", f"max-age={left_s}"),
            ("x-cache", "HIT" if hit else "MISS"),
        ]
        if _etag_matches(if_none_match, entry.etag):
            kept = [(k, v) for k, v in headers if k not in ("content-type", "content-encoding")]
            return Answer(304, kept, b"")
        return Answer(entry.status, headers, entry.body)
