"""How cached values become bytes: JSON by default, msgpack on request, pickle only by opt-in.

Each serializer has a one-byte id written in every entry's header, so an entry written with
one serializer is never read with another (it counts as a miss instead). Pickle can run code
while loading, so it is refused unless the cache has a secret: every pickled entry is then
signed, and an entry whose signature does not match is never unpickled.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from redkit.core.errors import InvalidArgumentError

__all__ = ["JsonSerializer", "MsgpackSerializer", "PickleSerializer", "Serializer"]


class Serializer(Protocol):
    """Turns values into bytes and back."""

    #: Written in each entry's header: readers refuse entries of another serializer.
    id: int
    #: Whether entries must be signed (and signatures checked) before :meth:`loads` may run.
    needs_signature: bool

    def dumps(self, value: Any) -> bytes:
        """``value`` as bytes; raises :class:`InvalidArgumentError` when it cannot be stored."""
        ...

    def loads(self, data: bytes) -> Any:
        """The value ``data`` holds; raises ``ValueError`` (or a subclass) when malformed."""
        ...


class JsonSerializer:
    """JSON (orjson when installed, else the standard library): safe, portable, readable."""

    id = 1
    needs_signature = False

    def __init__(self) -> None:
        try:
            import orjson
        except ImportError:
            self._orjson = None
        else:
            self._orjson = orjson

    def dumps(self, value: Any) -> bytes:
        """``value`` as UTF-8 JSON."""
        try:
            if self._orjson is not None:
                data: bytes = self._orjson.dumps(value)
                return data
            return json.dumps(
                value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(
                f"cannot cache a value of type {type(value).__name__} as JSON: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """The value of JSON ``data``."""
        if self._orjson is not None:
            return self._orjson.loads(data)
        return json.loads(data)


class MsgpackSerializer:
    """MessagePack: compact and fast; needs ``pip install msgpack``."""

    id = 2
    needs_signature = False

    def __init__(self) -> None:
        try:
            import msgpack
        except ImportError as exc:
            raise InvalidArgumentError(
                'serializer="msgpack" needs the msgpack package: pip install msgpack'
            ) from exc
        self._msgpack = msgpack

    def dumps(self, value: Any) -> bytes:
        """``value`` as MessagePack."""
        try:
            data: bytes = self._msgpack.packb(value, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidArgumentError(
                f"cannot cache a value of type {type(value).__name__} as msgpack: {exc}"
            ) from exc
        return data

    def loads(self, data: bytes) -> Any:
        """The value of MessagePack ``data``."""
        try:
            return self._msgpack.unpackb(data, raw=False)
        except Exception as exc:  # msgpack raises several unrelated types for bad input
            raise ValueError(f"malformed msgpack: {exc}") from exc


class PickleSerializer:
    """Pickle, for any Python object: only with a secret, and every entry signed."""

    id = 3
    needs_signature = True

    def dumps(self, value: Any) -> bytes:
        """``value`` pickled."""
        import pickle

        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidArgumentError(
                f"cannot pickle a value of type {type(value).__name__}: {exc}"
            ) from exc

    def loads(self, data: bytes) -> Any:
        """The unpickled value (called only once the entry's signature has matched)."""
        import pickle

        try:
            return pickle.loads(data)  # safe: the entry's signature has matched
        except Exception as exc:  # unpickling raises whatever the stream provokes
            raise ValueError(f"malformed pickle: {exc}") from exc
