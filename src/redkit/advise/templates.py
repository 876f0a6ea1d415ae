"""Keys and namespaces of HTTP requests: route templates, normalised queries, invalidation.

A log line names a request target (``/api/users/17?b=2&a=1``). The strategist needs two names
for it:

- the **key**, the cached resource: the path *with* its ids, and the query normalised so that
  parameter order does not matter: ``/api/users/17?a=1&b=2``. The query is normalised as
  redkit's response cache does (:meth:`redkit.web.response_cache.ResponseCachePolicy.key`:
  ``sorted(parse_qsl(query, keep_blank_values=True))``), then written back readably with
  ``urlencode``; two targets get the same key exactly when the response cache gives them the
  same key, and :func:`response_cache_key` turns a key into the very string redkit would
  store (the response cache *hashes* the query, which would make a report unreadable);
- the **namespace**, the group it belongs to: the *route template*, the path with its ids
  collapsed into ``{id}`` (:func:`route_template`): ``/api/users/17`` and ``/api/users/42``
  are both ``/api/users/{id}``. ``--key-pattern REGEX=NAME`` overrides it
  (:class:`Templates`): the first pattern found (``re.search``) in the path names the
  namespace.

**Writes and invalidation.** A read's key is ``path`` or ``path?normalised-query``; a write's
key (``POST``/``PUT``/``PATCH``/``DELETE``) is the bare ``path``, because a write changes the
resource, whatever query its readers asked it with. :func:`resource_of` strips the query of a
key: a write with key ``K`` invalidates *every* key ``k`` with ``resource_of(k) == K``
(``/api/search?q=a`` and ``/api/search?q=b`` by a write to ``/api/search``), which is how the
cache analysis applies writes. Keys of cache traces (CSV, Twitter) hold no ``?`` in practice,
so there ``resource_of`` is the key itself.

What counts as an id, segment by segment (between slashes; a segment ``17.json`` is an id with
an extension and becomes ``{id}.json``):

- a decimal number: ``17``, ``2024``;
- a UUID (8-4-4-4-12 hex digits, any case);
- long hex: 16 or more hex digits (digests, object ids), or 8 or more that mix digits and the
  letters ``a-f`` (``5f3a9c01``; a hex-only *word* such as ``deadbeef`` or ``facade`` stays);
- a token: 20 or more of ``A-Z a-z 0-9 - _ . ~ + =`` (base64, base64url, JWTs) with at least
  one digit and one letter, and either both upper and lower case letters or no separator
  (``- _ . ~``) at all. So ``dGhpcyBpcyBhIHRva2Vu9x`` and ``k3j4h5g6f7d8s9a0q1w2e3`` collapse,
  while a slug like ``top-10-tips-for-2024-summer`` stays.

Words (``users``, ``v1``, ``api``, ``2fa``), percent-encoded text and shorter mixes stay as they
are; use ``--key-pattern`` for ids this cannot see (user names, slugs). Inference is idempotent:
a template is its own template.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from redkit.core.errors import InvalidArgumentError

__all__ = [
    "ID",
    "Templates",
    "is_id",
    "key_of",
    "normalise_query",
    "parse_key_pattern",
    "resource_of",
    "response_cache_key",
    "route_template",
    "split_target",
]

#: What an id segment becomes in a route template.
ID = "{id}"

_NUMBER = re.compile(r"[0-9]+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_TOKEN = re.compile(r"[A-Za-z0-9\-_.~+=]{20,}")
_HAS_DIGIT = re.compile(r"[0-9]")
_HAS_HEX_LETTER = re.compile(r"[a-fA-F]")
_HAS_UPPER = re.compile(r"[A-Z]")
_HAS_LOWER = re.compile(r"[a-z]")
_SEPARATOR = re.compile(r"[\-_.~]")
# An extension after an id: "17.json", "5f3a9c01d2e4b6a8.png".
_EXTENSION = re.compile(r"(.+)(\.[A-Za-z][A-Za-z0-9]{0,7})")
# A quick "surely a word" test, so most literal segments skip the rules below: without digits,
# only 16 or more hex letters (``deadbeefdeadbeef``) make an id.
_WORD = re.compile(r"[A-Za-z_\-]{0,15}|[A-Za-z_\-]*[g-zG-Z_\-][A-Za-z_\-]*")


def _whole_id(segment: str) -> bool:
    if _NUMBER.fullmatch(segment) or _UUID.fullmatch(segment):
        return True
    if _HEX.fullmatch(segment):
        if len(segment) >= 16:
            return True
        return (
            len(segment) >= 8
            and _HAS_DIGIT.search(segment) is not None
            and _HAS_HEX_LETTER.search(segment) is not None
        )
    if _TOKEN.fullmatch(segment):
        if _HAS_DIGIT.search(segment) is None:
            return False
        upper = _HAS_UPPER.search(segment) is not None
        lower = _HAS_LOWER.search(segment) is not None
        if not (upper or lower):
            return False  # digits and punctuation only: not base64 (and not a number either)
        return (upper and lower) or _SEPARATOR.search(segment) is None
    return False


def is_id(segment: str) -> bool:
    """Whether one path segment (no slashes) is an id that a route template collapses.

    A segment with an extension (``17.json``) is not an id itself: :func:`route_template`
    keeps the extension and collapses what is before it.
    """
    if _WORD.fullmatch(segment):
        return False  # the common case: a word of letters (digits are what ids have)
    return _whole_id(segment)


def _segment_template(segment: str) -> str:
    if _WORD.fullmatch(segment):
        return segment
    if _whole_id(segment):
        return ID
    split = _EXTENSION.fullmatch(segment)
    if split is not None and _whole_id(split.group(1)):
        return ID + split.group(2)
    return segment


def route_template(path: str) -> str:
    """``path`` with its ids collapsed into ``{id}``: ``/api/users/17`` -> ``/api/users/{id}``.

    Pure and idempotent (``route_template(route_template(p)) == route_template(p)``). See the
    module docstring for what an id is. ``path`` is a path without query.
    """
    return "/".join([_segment_template(segment) for segment in path.split("/")])


def split_target(target: str) -> tuple[str, str]:
    """``(path, query)`` of an HTTP request target, as a log writes it.

    An absolute target (``http://host/path?q``, as proxies receive) gives its path; a fragment
    is dropped; an empty path is ``/``. The path is kept as logged (percent-encoding included),
    the query is raw (see :func:`normalise_query`).
    """
    if "#" in target:
        target = target.split("#", 1)[0]
    if not target.startswith("/") and "://" in target:
        rest = target.split("://", 1)[1]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        target = rest[cut:]
    path, _, query = target.partition("?")
    return (path or "/"), query


def normalise_query(query: str) -> str:
    """A query string with its parameters sorted, as redkit's response cache compares them.

    ``b=2&a=1`` and ``a=1&b=2`` give ``a=1&b=2``; a parameter without value is kept (``a`` gives
    ``a=``); an empty query gives ``""``. Two queries give the same text exactly when
    ``sorted(parse_qsl(q, keep_blank_values=True))`` (what the response cache hashes) is equal.
    """
    if not query:
        return ""
    return urlencode(sorted(parse_qsl(query, keep_blank_values=True)))


def key_of(path: str, normalised_query: str) -> str:
    """The key of a read: ``path``, with ``?query`` when there is one."""
    return f"{path}?{normalised_query}" if normalised_query else path


def resource_of(key: str) -> str:
    """The resource a key belongs to: the key without its query; what a write invalidates.

    A write's key is its bare path; it invalidates every read key ``k`` with
    ``resource_of(k) == write_key``.
    """
    cut = key.find("?")
    return key if cut < 0 else key[:cut]


def response_cache_key(key: str, *, prefix: str = "response") -> str:
    """The key redkit's response cache would store a read's response under.

    ``key`` is a read's key from a log (``/api/search?q=a&page=2``); the result is exactly what
    :meth:`redkit.web.response_cache.ResponseCachePolicy.key` gives for that request (no
    ``vary`` headers), so a log's keys can be matched with a live cache.
    """
    from redkit.web.response_cache import ResponseCachePolicy

    path, _, query = key.partition("?")
    # Web frameworks hand the response cache the decoded path.
    return ResponseCachePolicy(1, prefix=prefix).key(unquote(path), query, {})


def parse_key_pattern(spec: str | tuple[str, str]) -> tuple[re.Pattern[str], str]:
    """``"REGEX=NAME"`` (or ``(REGEX, NAME)``) as a compiled pattern and its namespace name.

    The last ``=`` separates the two, so the regex may hold ``=``. Raises
    :class:`~redkit.errors.InvalidArgumentError` naming ``--key-pattern`` for a malformed
    spec or an invalid regular expression.
    """
    if isinstance(spec, tuple):
        if len(spec) != 2 or not all(isinstance(part, str) for part in spec):
            raise InvalidArgumentError(
                f"--key-pattern: a pattern is a (REGEX, NAME) pair of strings, got {spec!r:.80}"
            )
        regex, name = spec
    elif isinstance(spec, str):
        regex, sep, name = spec.rpartition("=")
        if not sep:
            raise InvalidArgumentError(
                f"--key-pattern {spec!r}: write REGEX=NAME, "
                "e.g. --key-pattern '^/api/users/[^/]+$=users'"
            )
    else:
        raise InvalidArgumentError(
            f"--key-pattern: give REGEX=NAME strings, got {type(spec).__name__}"
        )
    if not regex or not name:
        raise InvalidArgumentError(
            f"--key-pattern {spec!r}: both the regex and the name must be non-empty "
            "(REGEX=NAME, e.g. '^/api/users/=users')"
        )
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        raise InvalidArgumentError(
            f"--key-pattern {regex!r}={name!r}: invalid regular expression: {exc}"
        ) from None
    return compiled, name


#: How many paths a :class:`Templates` remembers before starting afresh (memory stays bounded).
_CACHE_LIMIT = 1 << 18


class Templates:
    """Namespaces of paths and keys: ``--key-pattern`` overrides first, then inference.

    ``key_patterns`` are ``"REGEX=NAME"`` strings (or ``(REGEX, NAME)`` pairs); the first
    whose regex is found (``re.search``) in a path names its namespace. Results are
    remembered per path, so a log's millions of lines cost one inference per distinct path.
    """

    def __init__(self, key_patterns: Iterable[str | tuple[str, str]] = ()) -> None:
        if isinstance(key_patterns, str):
            key_patterns = [key_patterns]  # one pattern given bare, not as a list
        self.patterns: tuple[tuple[re.Pattern[str], str], ...] = tuple(
            parse_key_pattern(spec) for spec in key_patterns
        )
        self._paths: dict[str, str] = {}
        self._keys: dict[str, str] = {}

    def _override(self, text: str) -> str | None:
        for pattern, name in self.patterns:
            if pattern.search(text):
                return name
        return None

    def namespace(self, path: str) -> str:
        """The namespace of an HTTP path (no query): an override's name or the route template."""
        found = self._paths.get(path)
        if found is None:
            if len(self._paths) >= _CACHE_LIMIT:
                self._paths.clear()
            found = self._override(path)
            if found is None:
                found = route_template(path)
            self._paths[path] = found
        return found

    def key_namespace(self, key: str) -> str:
        """The namespace of a cache trace's key (CSV, Twitter, a recorder's trace).

        An override's name if one matches; else, for a key that looks like a path (starts with
        ``/``), its route template (without query); else the part before the first ``:``
        (``user:42`` is in ``user``); else ``"default"``.
        """
        found = self._keys.get(key)
        if found is None:
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            found = self._override(key)
            if found is None:
                if key.startswith("/"):
                    found = route_template(resource_of(key))
                else:
                    prefix, sep, _ = key.partition(":")
                    found = prefix if sep and prefix else "default"
            self._keys[key] = found
        return found

    def __repr__(self) -> str:
        shown: list[Any] = [f"{p.pattern}={name}" for p, name in self.patterns]
        return f"Templates({shown!r})"
