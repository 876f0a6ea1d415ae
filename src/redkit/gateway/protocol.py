"""The Upstash REST protocol, sans I/O: requests to commands, Redis replies to JSON.

Nothing here touches a socket. A command is a :data:`RawCommand`, a list of ``bytes`` (the name
first); a reply is a :data:`Reply`, what a RESP2 parser gives (``bytes``, ``int``, ``None``,
lists of those, and error objects inside arrays). The functions raise :class:`ProtocolError`
for a request that cannot be a command, carrying the HTTP status and the message for the
``{"error"}`` body.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from redkit.core.errors import RedkitError

__all__ = [
    "MAX_BODY",
    "MAX_RESPONSE",
    "ProtocolError",
    "RawCommand",
    "Reply",
    "command_name",
    "encode_reply",
    "error_message",
    "item",
    "json_body",
    "parse_batch",
    "parse_command",
    "parse_path",
    "reply_size",
]

#: The largest request body accepted, in bytes (Upstash's limit: 10 MB).
MAX_BODY = 10 * 1024 * 1024

#: The largest reply sent, in bytes of JSON (about: see :func:`reply_size`). Upstash documents no
#: such limit; 16 MiB lets the largest value a request can write (10 MB) be read back, even
#: base64-encoded (13.4 MB), and keeps a stray ``KEYS *`` from building a body of any size.
MAX_RESPONSE = 16 * 1024 * 1024

#: One Redis command as it goes on the wire: its name and arguments, binary-safe. (Not the
#: core's :class:`redkit.core.ops.Command`, an operation a flow yields to a driver.)
RawCommand = list[bytes]
#: One reply as the RESP2 parser gives it: ``bytes``, ``int``, ``None``, a list of those, or a
#: ``ResponseError`` (raised for a top-level error, an item inside an array).
Reply = Any

_OK = b"OK"


class ProtocolError(RedkitError):
    """A request that is not a valid command: answered with ``status`` and ``{"error"}``.

    The gateway turns it into its HTTP answer; it never reaches the application serving it.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _argument(value: object, where: str) -> bytes:
    """One JSON argument as bytes: strings as UTF-8, numbers as Redis reads them."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    # Upstash stores JSON booleans as the words (the JS SDK sends them as they are); checked
    # before int, which bool is in Python.
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ProtocolError(f"ERR {where}: a number must be finite")
        return repr(value).encode()
    kind = "null" if value is None else type(value).__name__
    kind = {"bool": "boolean", "list": "array", "dict": "object"}.get(kind, kind)
    raise ProtocolError(f"ERR {where}: each argument must be a string or a number, got {kind}")


def _load(body: bytes) -> Any:
    if not body.strip():
        raise ProtocolError("ERR empty request body: expected a JSON array")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ProtocolError(f"ERR malformed JSON in the request body: {exc}") from None


def _command(value: object, where: str) -> RawCommand:
    if not isinstance(value, list):
        raise ProtocolError(f"ERR {where} must be a JSON array of strings and numbers")
    if not value:
        raise ProtocolError(f"ERR {where} is empty: expected a command name")
    return [_argument(item, where) for item in value]


def parse_command(body: bytes) -> RawCommand:
    """The command in a ``POST /`` body: ``["SET", "k", "v", "EX", 100]``."""
    return _command(_load(body), "the command")


def parse_batch(body: bytes) -> list[RawCommand]:
    """The commands in a ``/pipeline`` or ``/multi-exec`` body: a non-empty 2-D array."""
    data = _load(body)
    if not isinstance(data, list) or not data:
        raise ProtocolError(
            "ERR the body must be a non-empty JSON array of commands, "
            'each a JSON array: [["SET", "k", "v"], ["GET", "k"]]'
        )
    return [_command(item, f"command {index + 1}") for index, item in enumerate(data)]


def parse_path(raw_path: bytes, query: bytes, body: bytes | None) -> RawCommand:
    """A path-style command: ``/set/foo/bar?EX=100``; a POST body is appended first.

    Each path segment is one argument, percent-decoded (so ``%2F`` is a slash inside an
    argument). ``body`` (a POST or PUT body; ``None`` for GET and HEAD, and an empty body is
    no argument) comes after the path's arguments, then each query parameter as its name and,
    when it has one, its value: ``?EX=100`` adds ``EX 100``, ``?NX`` adds ``NX``. The
    ``_token`` parameter is the credential, never an argument.
    """
    segments = raw_path.strip(b"/").split(b"/")
    command = [unquote_to_bytes(segment) for segment in segments if segment]
    if not command:
        raise ProtocolError("ERR no command in the path: use /COMMAND/arg1/arg2 or POST /")
    if body:
        command.append(body)
    for name, value in parse_qsl(
        query.decode("latin-1"), keep_blank_values=True, encoding="latin-1"
    ):
        if name == "_token":
            continue
        command.append(name.encode("latin-1"))
        if value:
            command.append(value.encode("latin-1"))
    return command


def _text(data: bytes) -> str:
    # Invalid UTF-8 becomes U+FFFD, as on Upstash; base64 is how to get the bytes.
    return data.decode("utf-8", "replace")


def _b64(data: bytes) -> str:
    return "OK" if data == _OK else base64.b64encode(data).decode("ascii")


def error_message(error: BaseException) -> str:
    """A Redis error as its wire text, prefix included: ``ERR wrong number of arguments``.

    redis-py strips the prefix (``ERR``, ``NOSCRIPT``, ``WRONGTYPE`` stays) and keeps it in
    ``status_code``; put it back.
    """
    message = str(error)
    code = getattr(error, "status_code", None)
    if code and not message.startswith(f"{code} "):
        return f"{code} {message}"
    first = message.split(" ", 1)[0]
    if first.isupper() and first.isalpha():
        return message
    return f"ERR {message}"


def encode_reply(reply: Any, *, b64: bool) -> Any:
    """A Redis reply as JSON data: strings decoded (or base64-encoded), ints and nulls as is.

    With ``b64`` every string is base64-encoded, recursively, except the literal ``OK``.
    An error inside an array (from a script or a transaction) becomes its message, never
    encoded.
    """
    if isinstance(reply, bytes):
        return _b64(reply) if b64 else _text(reply)
    if reply is None or isinstance(reply, (bool, int)):
        return int(reply) if isinstance(reply, bool) else reply
    if isinstance(reply, (list, tuple)):
        return [encode_reply(item, b64=b64) for item in reply]
    if isinstance(reply, BaseException):
        return error_message(reply)
    if isinstance(reply, str):  # a reply built by the gateway itself
        return _b64(reply.encode()) if b64 else reply
    if isinstance(reply, float):
        return _b64(repr(reply).encode()) if b64 else repr(reply)
    raise TypeError(f"cannot encode a reply of type {type(reply).__name__}")


def reply_size(reply: Any, *, b64: bool) -> int:
    """About how many bytes ``reply`` takes as JSON, counted before any JSON is built.

    A string counts its bytes (base64: four for three), its quotes and a comma; an integer or
    a null its text and a comma; an array its brackets and its items. Escapes are not counted (text
    needs few: non-ASCII characters go out as they are).
    """
    size = 0
    pending = [reply]
    while pending:
        value = pending.pop()
        if isinstance(value, bytes):
            size += ((len(value) + 2) // 3 * 4 if b64 else len(value)) + 3
        elif isinstance(value, (list, tuple)):
            size += 2
            pending.extend(value)
        elif value is None or isinstance(value, int):
            size += len(str(value)) + 1  # None counts as "null"
        else:  # an error, or a string or float the gateway made: as a quoted text
            text = error_message(value) if isinstance(value, BaseException) else str(value)
            size += len(text.encode("utf-8", "surrogatepass")) + 3
    return size


def item(reply: Any, *, b64: bool) -> dict[str, Any]:
    """One ``/pipeline`` or ``/multi-exec`` item: ``{"result": ...}`` or ``{"error": ...}``."""
    if isinstance(reply, BaseException):
        return {"error": error_message(reply)}
    return {"result": encode_reply(reply, b64=b64)}


def json_body(data: object) -> bytes:
    """``data`` as a compact UTF-8 JSON body."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "surrogatepass"
    )


def command_name(command: Sequence[bytes]) -> str:
    """The command's name, upper case, for policies and messages."""
    return command[0].decode("utf-8", "replace").upper() if command else ""
