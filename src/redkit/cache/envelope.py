"""The bytes of a cache entry: a small header, its tag stamps, a signature, then the value.

Layout (big-endian): ``0xFF "rk"``, format version (1 byte), serializer id (1 byte), flags
(1 byte, reserved), created at (epoch ms, 8 bytes), fresh until (epoch ms, 8 bytes; 0 when the
entry never goes stale before it expires), load time (ms, 4 bytes), expires at (epoch ms, 8
bytes; 0 for no expiry), length of the tag stamps (4 bytes); the tag stamps (JSON: each tag's
token when the entry was written); then, for signed serializers, an HMAC-SHA256 over the cache
key and everything before and after it (32 bytes); then the payload.

``0xFF`` never starts UTF-8 text, so no plain string written by another client can pass for an
entry. What does not parse — foreign bytes, a truncated value, another serializer's entry, a bad
signature — is reported as :class:`CorruptEntry`, which the cache treats as a miss.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import struct
from typing import Any, NamedTuple

from redkit.cache.serializers import Serializer

__all__ = ["CorruptEntry", "Entry", "entry_from_text", "entry_to_text", "pack", "unpack"]

_MAGIC = b"\xffrk"
_VERSION = 1
_HEADER = struct.Struct(">3sBBBQQIQI")
_MAC_SIZE = 32


class CorruptEntry(ValueError):
    """Bytes that are not a readable entry of this cache."""


class Entry(NamedTuple):
    """A decoded cache entry."""

    value: Any
    #: Epoch ms when the value was stored.
    created_ms: int
    #: Epoch ms after which the value is stale (0: fresh until it expires).
    fresh_until_ms: int
    #: How long the loader took to produce it, in ms (XFetch's delta).
    load_ms: int
    #: Epoch ms when the key expires (0: never).
    expires_ms: int
    #: The token of each of the entry's tags when it was written (see ``invalidate_tags``).
    tags: dict[str, str] = {}  # noqa: RUF012 - a NamedTuple default, never mutated
    #: Bytes of the stored entry (what a trace records as its size; 0 when not read).
    size: int = 0


def _mac(secret: bytes, key: str, body: bytes) -> bytes:
    # The key is part of the signed text: an entry copied under another key does not verify.
    # hmac.digest: the one-shot C path, a few µs less per entry than an HMAC object.
    return hmac.digest(secret, key.encode() + b"\x00" + body, "sha256")


def pack(
    serializer: Serializer,
    key: str,
    value: Any,
    *,
    created_ms: int,
    fresh_until_ms: int = 0,
    load_ms: int = 0,
    expires_ms: int = 0,
    tags: dict[str, str] | None = None,
    secret: bytes | None = None,
) -> bytes:
    """The bytes to store for ``value`` under ``key``."""
    payload = serializer.dumps(value)
    stamps = json.dumps(tags, separators=(",", ":"), sort_keys=True).encode() if tags else b""
    header = _HEADER.pack(
        _MAGIC, _VERSION, serializer.id, 0, created_ms, fresh_until_ms,
        min(max(load_ms, 0), 0xFFFFFFFF), expires_ms, len(stamps),
    ) + stamps  # fmt: skip
    if serializer.needs_signature:
        if secret is None:
            raise ValueError("a signing serializer needs a secret")
        return header + _mac(secret, key, header + payload) + payload
    return header + payload


def unpack(serializer: Serializer, key: str, data: bytes, *, secret: bytes | None = None) -> Entry:
    """Decode the bytes stored under ``key``.

    Raises:
        CorruptEntry: when ``data`` is not an entry this cache wrote with ``serializer``.

    """
    if len(data) < _HEADER.size or not data.startswith(_MAGIC):
        raise CorruptEntry("not a redkit cache entry")
    _magic, version, serializer_id, _flags, created, fresh_until, load_ms, expires, stamps_size = (
        _HEADER.unpack_from(data)
    )
    if version != _VERSION:
        raise CorruptEntry(f"entry format {version} is not understood here")
    if serializer_id != serializer.id:
        raise CorruptEntry(f"entry written by serializer {serializer_id}, not {serializer.id}")
    body_start = _HEADER.size + stamps_size
    if len(data) < body_start:
        raise CorruptEntry("the entry is cut short")
    if serializer.needs_signature:
        if secret is None:
            raise CorruptEntry("a signed entry, and no secret to check it")
        mac = data[body_start : body_start + _MAC_SIZE]
        payload = data[body_start + _MAC_SIZE :]
        expected = _mac(secret, key, data[:body_start] + payload)
        if len(mac) != _MAC_SIZE or not hmac.compare_digest(mac, expected):
            raise CorruptEntry("the entry's signature does not match: not unpickled")
    else:
        payload = data[body_start:]
    try:
        tags = json.loads(data[_HEADER.size : body_start]) if stamps_size else {}
        if not isinstance(tags, dict):
            raise ValueError("tag stamps must be an object")
        value = serializer.loads(payload)
    except ValueError as exc:  # json, orjson and the others raise ValueError subclasses
        raise CorruptEntry(f"the entry does not decode: {exc}") from exc
    return Entry(value, created, fresh_until, load_ms, expires, tags, len(data))


#: The start of an entry's text form: where values must be text (Upstash's REST API).
_TEXT_MAGIC = b"rk64:"


def entry_to_text(data: bytes) -> bytes:
    """An entry from :func:`pack` as ASCII text, for a server that takes only text values."""
    return _TEXT_MAGIC + base64.b64encode(data)


def entry_from_text(data: bytes) -> bytes:
    """The entry under its text form (what :func:`entry_to_text` made); other bytes as they are.

    Raises:
        CorruptEntry: when the text form does not decode.

    """
    if not data.startswith(_TEXT_MAGIC):
        return data
    try:
        return base64.b64decode(data[len(_TEXT_MAGIC) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CorruptEntry(f"the entry's text form does not decode: {exc}") from exc
