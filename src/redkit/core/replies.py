"""Readers for Redis replies, whichever driver produced them.

redis-py shapes some replies (``SET`` gives ``True``, ``TIME`` a tuple of ints) and leaves the
rest as RESP gave them (``bytes``, ``int``, lists); a text protocol gives ``str``. These small
readers accept every such shape, so flows stay driver-agnostic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["as_float", "as_int", "as_optional_int", "as_text", "is_ok", "server_time_ms"]


def as_text(reply: Any) -> str:
    """A bulk or simple string reply as ``str``."""
    if isinstance(reply, bytes):
        return reply.decode("utf-8")
    return str(reply)


def as_int(reply: Any) -> int:
    """An integer reply, or a bulk string holding an integer, as ``int``."""
    if isinstance(reply, int):
        return reply
    return int(as_text(reply))


def as_optional_int(reply: Any) -> int | None:
    """Like :func:`as_int`, but a nil reply stays ``None``."""
    return None if reply is None else as_int(reply)


def as_float(reply: Any) -> float:
    """A numeric reply (integer, or a bulk string such as ``b"1.5"``) as ``float``."""
    if isinstance(reply, (int, float)):
        return float(reply)
    return float(as_text(reply))


def is_ok(reply: Any) -> bool:
    """Whether a status reply says OK (``b"OK"``, ``"OK"``, or redis-py's ``True``)."""
    if reply is True:
        return True
    return isinstance(reply, (bytes, str)) and as_text(reply) == "OK"


def server_time_ms(reply: Any) -> float:
    """The reply of ``TIME`` (seconds and microseconds) as epoch milliseconds."""
    seconds, micros = reply
    return as_int(seconds) * 1000 + as_int(micros) / 1000
