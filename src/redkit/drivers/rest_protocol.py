"""Upstash's REST protocol without I/O: request bodies, reply decoding, errors.

The REST driver (:mod:`redkit.drivers.rest`) runs each operation as a small plan, a generator
that yields :class:`Request` values and receives the :class:`HttpReply` of each, the same
sans-I/O shape as redkit's flows. The sync and the asyncio driver only differ in how they
send a request; everything here is plain data and is unit-tested without a server.

For auto-pipelining (the asyncio driver), :func:`merge` joins the requests of several plans
into one ``/pipeline`` request and :func:`split` cuts its reply into a :class:`BatchedReply`
per plan; a plan reads either kind of reply alike.

Replies are decoded to what redis-py returns for the same command on a RESP2 connection with
``decode_responses=False``: every string is ``bytes`` (the server base64-encodes them, as asked
by the ``Upstash-Encoding: base64`` header), integers stay ``int``, nil is ``None``, arrays are
lists. Then redis-py's own response callbacks shape them (``SET`` to ``True``, ``HGETALL`` to a
dict, ``TIME`` to a tuple ...), so flows get identical replies from either driver.

Arguments travel as JSON strings. JSON cannot carry raw bytes and the protocol has no
request-side base64, so a ``bytes`` argument must be valid UTF-8; anything else raises
:class:`~redkit.core.errors.InvalidArgumentError` before a request is sent.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable, Generator, Sequence
from typing import Any, NamedTuple, TypeAlias

import redis.utils
from redis._parsers import helpers as _redis_helpers

from redkit.core.errors import (
    BackendError,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
    InvalidArgumentError,
)
from redkit.core.ops import Arg, Command, Masters, OnNode, Pipeline, RedisOp, ScriptCall
from redkit.core.scripts import Script

__all__ = [
    "KEY_LOCKING_LINE",
    "BatchedReply",
    "HttpReply",
    "Plan",
    "Reply",
    "Request",
    "decode_value",
    "encode_args",
    "error_for_status",
    "merge",
    "mergeable",
    "plan",
    "shape",
    "split",
    "with_key_locking",
]

#: The first line Upstash wants on a script that touches only the keys it declares.
KEY_LOCKING_LINE = "#!lua flags=allow-key-locking"

#: redis-py's RESP2 response callbacks, the ones ``redis.Redis(protocol=2)`` applies (redis-py
#: keeps them in a private module, unchanged since 5.0; read through ``vars`` for the typing).
_CALLBACKS: dict[str, Callable[..., Any]] = {
    name.upper(): callback
    for name, callback in {
        **vars(_redis_helpers)["_RedisCallbacks"],
        **vars(_redis_helpers)["_RedisCallbacksRESP2"],
    }.items()
    if callback is not None
}


#: Whether redis-py talks RESP3 by default (its scored ranges then come back as pairs).
_SCORE_PAIRS = getattr(redis.utils, "DEFAULT_RESP_VERSION", 2) == 3
_RANGES_WITH_SCORES = frozenset({"ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE"})


class Request(NamedTuple):
    """One HTTP request: ``POST <url><path>`` with a JSON body.

    ``path`` is ``""`` for one command, ``"/pipeline"`` or ``"/multi-exec"`` for several;
    ``command_count`` is how many commands the body holds.
    """

    path: str
    body: bytes
    command_count: int = 1


class HttpReply(NamedTuple):
    """What the server answered: the status code and the body, not yet parsed."""

    status: int
    content: bytes


class BatchedReply(NamedTuple):
    """A request's share of a ``/pipeline`` reply that answered it together with others.

    ``entries`` are its commands' ``{"result"}`` / ``{"error"}`` entries, parsed, in order.
    """

    entries: list[Any]


#: What a plan receives for a request: the server's own reply, or its share of a batch's.
Reply: TypeAlias = HttpReply | BatchedReply

#: A plan runs one operation: it yields requests, receives replies and returns the result.
Plan: TypeAlias = Generator[Request, Reply, Any]


# -- requests --------------------------------------------------------------------------------


def _encode_arg(arg: object) -> str:
    if isinstance(arg, str):
        return arg
    if isinstance(arg, bytes):
        try:
            return arg.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(
                f"{arg[:20]!r}... is not UTF-8: Upstash's REST API carries arguments as JSON "
                "text, which cannot hold arbitrary bytes; encode binary values (base64, say) "
                "before storing them over REST"
            ) from None
    if isinstance(arg, bool):  # an int, but which of "1", "True", "true" would it mean?
        raise InvalidArgumentError(f"a Redis argument cannot be a bool ({arg!r}): pass 1 or 0")
    if isinstance(arg, int):
        return str(arg)  # as a string: no JSON reader can round it
    if isinstance(arg, float):
        return repr(arg)  # what redis-py sends
    raise InvalidArgumentError(
        f"a Redis argument is str, bytes, int or float, got {type(arg).__name__}"
    )


def encode_args(args: Sequence[Arg]) -> list[str]:
    """A command as the JSON array the protocol takes.

    A first argument with spaces (``"CONFIG GET"``) is split in words, as redis-py does.

    Raises:
        InvalidArgumentError: for bytes that are not UTF-8, a bool, or an unsupported type.

    """
    if not args:
        raise InvalidArgumentError("a command needs at least its name")
    encoded = [_encode_arg(arg) for arg in args]
    if " " in encoded[0]:
        encoded[0:1] = encoded[0].split()
    return encoded


def _body(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- replies ---------------------------------------------------------------------------------


def decode_value(value: Any, *, nested: bool = False) -> Any:
    """A base64-encoded result as redis-py gives it: strings to bytes, recursively.

    The server encodes every string but the literal status ``OK`` (a base64 text is never two
    characters long, so ``OK`` is never ambiguous) and errors. An error inside an array (a
    script's ``redis.error_reply``) arrives as plain text: it becomes a
    :class:`~redkit.core.errors.CommandError` in its place, as redis-py puts its own there.

    Raises:
        BackendError: for a top-level string that is not base64 (the server ignored the
            encoding).

    """
    if isinstance(value, str):
        if value == "OK":
            return b"OK"
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            if nested:
                return CommandError(value)
            raise BackendError(
                f"the REST server sent {value[:40]!r}, which is not base64: it does not honour "
                "the Upstash-Encoding: base64 header"
            ) from None
    if isinstance(value, list):
        return [decode_value(item, nested=True) for item in value]
    return value  # an integer, nil, or a number the server chose to send as one


def _text(arg: Arg) -> str:
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def shape(args: Sequence[Arg], value: Any) -> Any:
    """The reply ``value`` of the command ``args`` as the redis-py driver would return it.

    redis-py's response callback for the command applies (``SET`` -> ``True`` ...). As in
    redis-py's ``execute_command``, it is the one registered under the first argument as
    given, so ``"CONFIG GET"`` is shaped and ``"CONFIG", "GET"`` is not. Where redis-py
    speaks RESP3 by default (redis-py 8), a sorted-set range read ``WITHSCORES`` comes back
    as ``[member, score]`` pairs, as it does there.
    """
    name = _text(args[0]).upper()
    if (
        _SCORE_PAIRS
        and name in _RANGES_WITH_SCORES
        and isinstance(value, list)
        and any(_text(arg).upper() == "WITHSCORES" for arg in args[1:])
    ):
        return [[value[i], float(value[i + 1])] for i in range(0, len(value) - 1, 2)]
    callback = _CALLBACKS.get(name)
    return value if callback is None else callback(value)


def _parse_json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        raise BackendError(
            f"the REST server sent a body that is not JSON: {content[:80]!r}"
        ) from None


def _error_text(content: bytes) -> str:
    """The ``error`` of an error body, or the body itself."""
    try:
        parsed = json.loads(content)
    except ValueError:
        return content[:200].decode("utf-8", "replace")
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return str(parsed["error"])
    return content[:200].decode("utf-8", "replace")


def error_for_status(status: int, content: bytes, *, url: str, token_name: str) -> Exception | None:
    """The error an HTTP status means, or ``None`` for 200.

    401 is a :class:`ConfigurationError` naming the token (retrying cannot help); 400 is the
    server refusing the command (:class:`CommandError`, with Upstash's message); 5xx and 429
    mean the service cannot serve now (:class:`BackendUnavailable`).
    """
    if status == 200:
        return None
    text = _error_text(content)
    if status == 401:
        return ConfigurationError(
            f"the REST server at {url} refused the token ({token_name}): {text}",
            variable=token_name,
        )
    if status in (400, 413):
        return CommandError(text)
    if status in (404, 405):
        return ConfigurationError(
            f"{url} answered HTTP {status} ({text}): is it the REST URL of an Upstash "
            "database (or of a compatible gateway)?"
        )
    if status == 429 or status >= 500:
        return BackendUnavailable(f"the REST server answered HTTP {status}: {text}")
    return BackendError(f"the REST server answered HTTP {status}: {text}")


def _item(entry: Any) -> Any:
    """One ``{"result"}`` / ``{"error"}`` entry as a value or a :class:`CommandError`."""
    if isinstance(entry, dict):
        if "error" in entry:
            return CommandError(str(entry["error"]))
        if "result" in entry:
            return decode_value(entry["result"])
    raise BackendError(f"the REST server sent an unexpected entry: {str(entry)[:80]}")


def _check(reply: HttpReply, url: str, token_name: str) -> Any:
    error = error_for_status(reply.status, reply.content, url=url, token_name=token_name)
    if error is not None:
        raise error
    return _parse_json(reply.content)


def _single(reply: Reply, url: str, token_name: str) -> Any:
    """The result of one command; raises its error."""
    if isinstance(reply, BatchedReply):
        value = _item(reply.entries[0])
    else:
        value = _item(_check(reply, url, token_name))
    if isinstance(value, CommandError):
        raise value
    return value


def _many(reply: Reply, count: int, url: str, token_name: str) -> list[Any]:
    """The per-item results of a pipeline or a transaction; a discarded one raises."""
    if isinstance(reply, BatchedReply):
        return [_item(entry) for entry in reply.entries]
    parsed = _check(reply, url, token_name)
    if isinstance(parsed, dict) and "error" in parsed:
        # A transaction discarded as a whole (a syntax error, an unknown command ...).
        raise CommandError(str(parsed["error"]))
    if not isinstance(parsed, list) or len(parsed) != count:
        raise BackendError(f"the REST server answered {count} commands with {str(parsed)[:80]}")
    return [_item(entry) for entry in parsed]


# -- plans -----------------------------------------------------------------------------------


@functools.cache
def with_key_locking(script: Script) -> Script:
    """``script`` with Upstash's key-locking line first (its SHA is that of the new text)."""
    return Script(script.name, f"{KEY_LOCKING_LINE}\n{script.source}")


def _is_noscript(error: object) -> bool:
    return isinstance(error, CommandError) and str(error).startswith("NOSCRIPT")


def _script_command(verb: str, call: ScriptCall, script: Script) -> list[str]:
    body = script.sha if verb == "EVALSHA" else script.source
    return encode_args((verb, body, len(call.keys), *call.keys, *call.args))


def plan(
    op: RedisOp,
    *,
    url: str,
    token_name: str,
    key_locking: bool,
) -> Plan:
    """The requests that run ``op``, and its result as the redis-py driver returns it.

    Scripts run with ``EVALSHA`` and are re-sent with ``EVAL`` on ``NOSCRIPT``; in a
    transaction they are sent with ``EVAL`` at once (a ``NOSCRIPT`` inside it would leave the
    other commands applied and the script not). With ``key_locking`` each script carries
    :data:`KEY_LOCKING_LINE`.
    """

    def locked(script: Script) -> Script:
        return with_key_locking(script) if key_locking else script

    if isinstance(op, Command):
        reply = yield Request("", _body(encode_args(op.args)))
        return shape(op.args, _single(reply, url, token_name))
    if isinstance(op, ScriptCall):
        script = locked(op.script)
        sha_body = _body(_script_command("EVALSHA", op, script))
        try:
            return _single((yield Request("", sha_body)), url, token_name)
        except CommandError as exc:
            if not _is_noscript(exc):
                raise
        eval_body = _body(_script_command("EVAL", op, script))
        return _single((yield Request("", eval_body)), url, token_name)
    if isinstance(op, Pipeline):
        return (yield from _pipeline(op, url, token_name, locked))
    if isinstance(op, Masters):
        return [None]
    if isinstance(op, OnNode):
        # One server behind the REST API: every node name means it.
        reply = yield Request("", _body(encode_args(op.command.args)))
        return shape(op.command.args, _single(reply, url, token_name))
    raise InvalidArgumentError(f"not an operation a driver runs: {type(op).__name__}")


def _pipeline(
    op: Pipeline, url: str, token_name: str, locked: Callable[[Script], Script]
) -> Generator[Request, Reply, list[Any]]:
    commands: list[list[str]] = []
    for item in op.ops:
        if isinstance(item, Command):
            commands.append(encode_args(item.args))
        else:
            verb = "EVAL" if op.transaction else "EVALSHA"
            commands.append(_script_command(verb, item, locked(item.script)))
    if not commands:
        return []
    path = "/multi-exec" if op.transaction else "/pipeline"
    reply = yield Request(path, _body(commands), len(commands))
    results = _many(reply, len(commands), url, token_name)
    for index, item in enumerate(op.ops):
        result = results[index]
        if isinstance(item, Command):
            if not isinstance(result, CommandError):
                results[index] = shape(item.args, result)
        elif _is_noscript(result):
            body = _body(_script_command("EVAL", item, locked(item.script)))
            try:
                results[index] = _single((yield Request("", body)), url, token_name)
            except CommandError as exc:
                results[index] = exc
    return results


# -- batches (auto-pipelining) ---------------------------------------------------------------


def mergeable(request: Request) -> bool:
    """Whether ``request`` may share a ``/pipeline`` request with others' commands.

    A transaction (``/multi-exec``) never does: it is atomic and goes alone.
    """
    return request.path in ("", "/pipeline")


def merge(requests: Sequence[Request]) -> Request:
    """One ``/pipeline`` request that carries every command of ``requests``, in order.

    The bodies are joined as they are (a single command's array is one item, a pipeline's
    items are spliced in), so nothing is encoded twice.

    Raises:
        ValueError: for a request that is not :func:`mergeable`.

    """
    parts: list[bytes] = []
    for request in requests:
        if request.path == "":
            parts.append(request.body)
        elif request.path == "/pipeline":
            parts.append(request.body[1:-1])  # [[...],[...]] -> [...],[...]
        else:
            raise ValueError(f"a {request.path} request is always sent alone")
    return Request(
        "/pipeline", b"[" + b",".join(parts) + b"]", sum(r.command_count for r in requests)
    )


def split(reply: HttpReply, requests: Sequence[Request]) -> list[Reply] | None:
    """The reply of a :func:`merge` of ``requests``, cut back into one reply per request.

    ``None`` when the server refused the batch as a whole (HTTP 400 or 413: too large, or not
    readable), which it does before running any of its commands: each request may then be
    sent alone. Any other error status is every request's own reply, so each plan raises it.

    Raises:
        BackendError: for a body that is not one entry per command.

    """
    if reply.status in (400, 413):
        return None
    if reply.status != 200:
        return [reply] * len(requests)
    parsed = _parse_json(reply.content)
    total = sum(request.command_count for request in requests)
    if not isinstance(parsed, list) or len(parsed) != total:
        raise BackendError(f"the REST server answered {total} commands with {str(parsed)[:80]}")
    replies: list[Reply] = []
    offset = 0
    for request in requests:
        replies.append(BatchedReply(parsed[offset : offset + request.command_count]))
        offset += request.command_count
    return replies
