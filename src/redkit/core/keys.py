"""Key building: namespaced, escaped, cluster-friendly.

Keys read ``prefix:part:part``. A part that came from a user is *escaped*, so it can never

- add a separator (``user:1`` as one part cannot pose as two parts),
- widen a ``SCAN MATCH`` pattern (``* ? [ ]`` and the backslash never appear raw),
- open or close a cluster hash tag (``{ }`` never appear raw).

Escaping is percent-encoding of exactly those characters (and of ``%`` and ``#``), so it is
injective and ordinary ids stay readable: ``42``, ``alice@example.com``, ``1.2.3.4``. A part
longer than :data:`MAX_PART_BYTES` after escaping is replaced by ``#`` and a SHA-256 digest,
which no escaped part can look like, because ``#`` is always escaped. A part kept verbatim (a
layout shared with another library) that starts with ``#`` is stored as ``#`` and its escaped
form (:func:`encoded`), so no input reaches a digest's key either.

:func:`hash_tag` wraps a part in braces so that every key of one identity (a rate-limit
identifier, a session, a cache entry) hashes to one cluster slot, while different identities
spread over the cluster.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from redkit.core.errors import InvalidKeyError

__all__ = [
    "MAX_PART_BYTES",
    "SEP",
    "canonical_json",
    "check_prefix",
    "digest",
    "encoded",
    "escape",
    "glob_escape",
    "hash_tag",
    "join",
    "stable_hash",
    "unescape",
    "verbatim",
]

SEP = ":"
#: Escaped parts longer than this many bytes are stored as a digest instead.
MAX_PART_BYTES = 200

_ESCAPED = "%#:*?[]\\{}"
_ENCODE = str.maketrans({ch: f"%{ord(ch):02X}" for ch in _ESCAPED})
_DECODE = {f"%{ord(ch):02X}": ch for ch in _ESCAPED}
# Characters a prefix may not hold: they would widen patterns or hijack the cluster hash tag.
_PREFIX_FORBIDDEN = frozenset("*?[]\\{}")


def _text(part: object, what: str) -> str:
    """``part`` as text, or a clear error: it must be a non-empty str (valid Unicode) or int."""
    if isinstance(part, bool) or not isinstance(part, (str, int)):
        raise InvalidKeyError(f"{what} must be str or int, got {type(part).__name__}: {part!r:.80}")
    if isinstance(part, int):
        return str(part)
    if not part:
        raise InvalidKeyError(f"{what} must not be empty")
    try:
        part.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates cannot be sent to Redis
        raise InvalidKeyError(f"{what} must be valid Unicode text: {part!r:.80}") from exc
    return part


def escape(part: str | int) -> str:
    """Make one user-supplied key part safe to embed in a key.

    Raises:
        InvalidKeyError: for an empty string or a value that is neither ``str`` nor ``int``.

    """
    text = _text(part, "a key part")
    escaped = text.translate(_ENCODE)
    if len(escaped.encode("utf-8")) > MAX_PART_BYTES:
        return "#" + digest(text)
    return escaped


def verbatim(part: str | int, *, max_bytes: int, what: str = "a key part") -> str:
    """A user-supplied part kept as it is, for a key layout shared with another library.

    Only where nothing widens a pattern with it (the keys are used whole, never matched). A
    part longer than ``max_bytes`` is replaced by ``#`` and a digest, as :func:`escape` does.

    Raises:
        InvalidKeyError: for an empty string or a value that is neither ``str`` nor ``int``.

    """
    text = _text(part, what)
    if text.startswith("#"):
        return encoded(text, max_bytes=max_bytes)  # "#<digest>" must stay unreachable
    if len(text.encode("utf-8")) > max_bytes:
        return "#" + digest(text)
    return text


def encoded(part: str, *, max_bytes: int) -> str:
    """``#`` and the escaped ``part``: a verbatim part that must not be kept as it is.

    For a part starting with ``#`` (so no part can pose as a digest) or one a layout reserves.
    The result holds no separator, and its ``%`` escapes or non-hex letters tell it from a
    digest (``#`` and hex digits only).
    """
    text = "#" + part.translate(_ENCODE)
    if len(text.encode("utf-8")) > max_bytes:
        return "#" + digest(part)
    return text


_GLOB_ESCAPE = str.maketrans({ch: "\\" + ch for ch in "*?[]\\"})


def glob_escape(text: str) -> str:
    """``text`` as a ``SCAN MATCH`` pattern that matches exactly it (wildcards backslashed)."""
    return text.translate(_GLOB_ESCAPE)


def unescape(part: str) -> str:
    """Reverse :func:`escape` for display. A digested part (``#...``) stays as it is."""
    if "%" not in part:
        return part
    out: list[str] = []
    i = 0
    while i < len(part):
        token = part[i : i + 3]
        if token in _DECODE:
            out.append(_DECODE[token])
            i += 3
        else:
            out.append(part[i])
            i += 1
    return "".join(out)


def hash_tag(part: str | int) -> str:
    """``{escaped part}``: the cluster hash tag of one identity."""
    return "{" + escape(part) + "}"


def check_prefix(prefix: str) -> str:
    """Validate an application-chosen prefix and return it.

    Prefixes are trusted (they come from code, not from users) and kept verbatim — which is how
    ``@upstash/ratelimit`` stays key-compatible — but glob characters and braces are refused:
    they would widen pattern deletes or pin every key to one cluster slot.
    """
    if not isinstance(prefix, str):
        raise InvalidKeyError(f"a prefix must be a str, got {type(prefix).__name__}")
    if not prefix:
        raise InvalidKeyError("a prefix must not be empty")
    bad = sorted(set(prefix) & _PREFIX_FORBIDDEN)
    if bad:
        raise InvalidKeyError(f"a prefix must not contain {' '.join(bad)}: {prefix!r}")
    return prefix


def join(*parts: str) -> str:
    """Join already-safe parts (a checked prefix, escaped parts, literals) with ``:``."""
    return SEP.join(parts)


def digest(data: str | bytes, *, length: int = 32) -> str:
    """Hex SHA-256 of ``data``, cut to ``length`` hex digits (128 bits by default)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()[:length]


def canonical_json(obj: Any) -> str:
    """A canonical JSON text of ``obj``, the same for equal values everywhere.

    Equal values give the same text in every process, on every machine and Python version.
    Mappings are sorted by key (keys must be ``str``), tuples become lists, sets become sorted
    lists, text is ASCII-escaped. NaN and infinities are refused, as are types that JSON cannot
    carry.

    Raises:
        TypeError: for values with no canonical JSON form.

    """
    return json.dumps(
        _canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def stable_hash(obj: Any, *, length: int = 32) -> str:
    """A stable digest of a structured value (a query, a filter): see :func:`canonical_json`."""
    return digest(canonical_json(obj), length=length)


def _canonical(obj: Any) -> Any:
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise TypeError(f"cannot hash a non-finite float: {obj!r}")
        return obj
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"mapping keys must be str to hash stably, got {key!r}")
            out[key] = _canonical(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [_canonical(item) for item in obj]
    if isinstance(obj, (set, frozenset)):
        items = [_canonical(item) for item in obj]
        return sorted(items, key=canonical_json)
    raise TypeError(f"cannot hash a value of type {type(obj).__name__} stably: {obj!r:.80}")
