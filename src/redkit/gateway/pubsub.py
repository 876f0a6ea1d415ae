"""Pub/sub over server-sent events: ``/subscribe/<channel>`` and ``/psubscribe/<pattern>``.

Upstash serves ``SUBSCRIBE`` and ``PSUBSCRIBE`` as a streamed response, and its SDKs
(``redis.subscribe()`` in ``@upstash/redis``) read it so. A request names its channels in the
path, each segment one channel, percent-decoded (``/subscribe/orders/chat%2Fgeneral``), sends
``Accept: text/event-stream`` and a body that is empty or ``[]``; it is authorized as any other
request, and read-only tokens may subscribe. The answer is ``200`` with
``content-type: text/event-stream``, then one event per Redis message, its fields joined by
commas::

    data: subscribe,<channel>,<count>
    data: message,<channel>,<payload>
    data: psubscribe,<pattern>,<count>
    data: pmessage,<pattern>,<channel>,<payload>

Fields are text: bytes that are not UTF-8 become U+FFFD. ``Upstash-Encoding: base64`` does not
apply to streams: the official SDK sends that header with every request, subscriptions
included, and reads the events as plain text.

**Line breaks.** SSE ends a ``data:`` line at CR, LF or CRLF, so an event whose text holds one
goes out as several ``data:`` lines, one per line of its text; a client that follows the SSE
standard (a browser's ``EventSource``, ``httpx-sse``...) joins them with LF. A payload's LF thus
arrives intact, and a CR or CRLF arrives as LF. (``@upstash/redis`` reads each ``data:`` line
as an event of its own: it publishes JSON, whose strings escape their line breaks.)

**Keep-alive.** A stream quiet for :data:`KEEPALIVE` seconds gets an SSE comment line
(``: keepalive``), which clients ignore and which keeps proxies from closing an idle stream,
and its Redis connection gets a ``PING``: a dead peer on either side ends the stream.

**Resources.** Each stream holds a Redis connection of its own (a subscribed connection serves
nothing else), opened for it and closed when it ends: when the client goes away, when Redis
drops the connection, or at the gateway's :meth:`~redkit.gateway.Gateway.aclose`. At most
``max_streams`` are open at once; one more is refused with 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from redis import exceptions as rx
from redis.asyncio.connection import AbstractConnection

from redkit.core.errors import InvalidArgumentError
from redkit.gateway.protocol import (
    ProtocolError,
    RawCommand,
    Reply,
    command_name,
    error_message,
)
from redkit.gateway.upstream import Upstream

__all__ = [
    "DEFAULT_MAX_STREAMS",
    "KEEPALIVE",
    "Stream",
    "Streams",
    "TooManyStreams",
    "check_body",
    "event",
    "is_route",
    "require_event_stream",
    "route",
]

log = logging.getLogger("redkit.gateway")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Streams open at once at most, by default.
DEFAULT_MAX_STREAMS = 100
#: Seconds of quiet after which a stream is sent a keep-alive comment (and Redis a PING).
KEEPALIVE = 15.0
#: How long :meth:`Streams.aclose` lets the streams end by themselves before closing them.
_CLOSE_GRACE = 5.0

_ROUTES = {b"subscribe": b"SUBSCRIBE", b"psubscribe": b"PSUBSCRIBE"}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_KEEPALIVE_COMMENT = b": keepalive\n\n"


class TooManyStreams(ProtocolError):
    """The gateway serves ``max_streams`` already: HTTP 503."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"ERR too many subscriptions: this gateway serves at most {limit} streams at once "
            "(raise it with --max-streams or REDKIT_GATEWAY_MAX_STREAMS)",
            status=503,
        )


def is_route(raw_path: bytes) -> bool:
    """Whether ``raw_path`` is a stream route (``/subscribe/...``, ``/psubscribe/...``)."""
    return raw_path.strip(b"/").split(b"/")[0].lower() in _ROUTES


def route(raw_path: bytes) -> RawCommand | None:
    """The ``SUBSCRIBE``/``PSUBSCRIBE`` command of a stream route, ``None`` for another path.

    Raises:
        ProtocolError: for a stream route that names no channel.

    """
    segments = raw_path.strip(b"/").split(b"/")
    name = _ROUTES.get(segments[0].lower())
    if name is None:
        return None
    channels = [unquote_to_bytes(segment) for segment in segments[1:] if segment]
    if not channels:
        what = "pattern" if name == b"PSUBSCRIBE" else "channel"
        raise ProtocolError(
            f"ERR no {what} to subscribe to: use /{segments[0].lower().decode()}/<{what}> "
            f"(several: /{segments[0].lower().decode()}/<{what}>/<{what}>)"
        )
    return [name, *channels]


def require_event_stream(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse (400) a subscription whose ``Accept`` header does not name ``text/event-stream``."""
    for key, value in headers:
        if key.lower() == b"accept":
            kinds = {kind.split(b";")[0].strip().lower() for kind in value.split(b",")}
            if b"text/event-stream" in kinds:
                return
    raise ProtocolError(
        "ERR a subscription answers with server-sent events: "
        "send the header Accept: text/event-stream"
    )


def check_body(body: bytes) -> None:
    """Refuse (400) a subscription's body other than nothing or ``[]`` (the SDK's)."""
    if not body.strip():
        return
    try:
        if json.loads(body) == []:
            return
    except (ValueError, RecursionError):
        pass
    raise ProtocolError(
        "ERR a subscription's channels go in the path (/subscribe/<channel>): "
        "send an empty body or []"
    )


def _field(value: Reply) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def event(reply: Sequence[Reply]) -> bytes:
    """One Redis push message as an SSE event: ``data: message,<channel>,<payload>``.

    Its text is split at line breaks, each line a ``data:`` line of its own (see the module's
    notes): a raw line break would end the field, or the event.
    """
    lines = _LINE_BREAK.split(",".join(_field(value) for value in reply))
    return "".join(f"data: {line}\n" for line in lines).encode("utf-8", "surrogatepass") + b"\n"


class Stream:
    """One subscription: its own Redis connection, subscribed; :meth:`serve` streams it."""

    def __init__(self, streams: Streams, command: RawCommand) -> None:
        self.label = f"{command_name(command)} x{len(command) - 1}"
        self._streams = streams
        self._command = command
        self._conn: AbstractConnection | None = None
        self._confirmations: list[Reply] = []
        self._stop = asyncio.Event()
        self._closed = asyncio.Event()

    async def _open(self, upstream: Upstream) -> None:
        try:
            self._conn, self._confirmations = await upstream.subscribe(self._command)
        except rx.ResponseError as exc:  # an ACL refusing a channel, say: the client's to fix
            raise ProtocolError(error_message(exc)) from None

    def stop(self) -> None:
        """Ask the stream to end (it closes its connection and ends the response)."""
        self._stop.set()

    async def close(self) -> None:
        """Close the Redis connection and give back the stream's place; idempotent."""
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                await conn.disconnect()
        finally:
            self._streams._release(self)
            self._closed.set()

    async def serve(
        self, receive: Receive, send: Send, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """Send the response: the confirmations, then each message, until one side ends it."""
        tasks: list[asyncio.Future[Any]] = []
        ended_by = "the gateway"
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                        # Proxies (nginx) buffer a response unless told not to; a stream must flow.
                        (b"x-accel-buffering", b"no"),
                        *headers,
                    ],
                }
            )
            first = b"".join(event(reply) for reply in self._confirmations)
            await send({"type": "http.response.body", "body": first, "more_body": True})
            pump = asyncio.ensure_future(self._pump(send))
            gone = asyncio.ensure_future(_disconnected(receive))
            halt = asyncio.ensure_future(self._stop.wait())
            tasks = [pump, gone, halt]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if gone in done:
                ended_by = "the client"
            elif pump in done:
                error = pump.exception()
                if isinstance(error, (rx.ConnectionError, rx.TimeoutError)):
                    ended_by = "Redis"
                    log.warning("%s: the Redis connection ended: %s", self.label, error)
                elif isinstance(error, OSError):  # the ASGI server's send: the client is gone
                    ended_by = "the client"
                elif error is not None:
                    ended_by = "an error"
                    log.error("%s failed", self.label, exc_info=error)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()
        log.debug("%s ended by %s", self.label, ended_by)
        if ended_by != "the client":
            # The end of the body: the client sees the stream end, not hang.
            with contextlib.suppress(OSError):  # the client went away meanwhile
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        conn = self._conn
        if conn is None:
            return  # closed (by aclose) before it was served
        while True:
            # A read with a timeout returns None when nothing came, the connection intact.
            reply = await conn.read_response(timeout=self._streams.keepalive)
            if reply is None:
                await conn.send_command("PING")
                await send(
                    {"type": "http.response.body", "body": _KEEPALIVE_COMMENT, "more_body": True}
                )
                continue
            if isinstance(reply, list) and reply and reply[0] == b"pong":
                continue  # the answer to our keep-alive PING
            await send({"type": "http.response.body", "body": event(reply), "more_body": True})


async def _disconnected(receive: Receive) -> None:
    """Return when the client has gone away (the request's body was read before)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class Streams:
    """The gateway's open streams, at most ``limit`` at once."""

    def __init__(self, limit: int = DEFAULT_MAX_STREAMS, keepalive: float = KEEPALIVE) -> None:
        if limit < 1:
            raise InvalidArgumentError("max_streams must be at least 1")
        if keepalive <= 0:
            raise InvalidArgumentError("the stream keep-alive interval must be positive")
        self.limit = limit
        self.keepalive = keepalive
        self._open: set[Stream] = set()

    def __len__(self) -> int:
        return len(self._open)

    async def open(self, upstream: Upstream, command: RawCommand) -> Stream:
        """A subscribed stream, holding one of the ``limit`` places until it is closed.

        Raises:
            TooManyStreams: when ``limit`` streams are open already.
            UpstreamError: when Redis cannot be reached.
            ProtocolError: when Redis refuses the subscription.

        """
        if len(self._open) >= self.limit:
            raise TooManyStreams(self.limit)
        stream = Stream(self, command)
        # Counted before the first await: concurrent requests cannot overshoot the limit.
        self._open.add(stream)
        try:
            await stream._open(upstream)
        except BaseException:
            await stream.close()
            raise
        return stream

    def _release(self, stream: Stream) -> None:
        self._open.discard(stream)

    async def aclose(self) -> None:
        """End every stream: each closes its Redis connection and ends its response."""
        streams = list(self._open)
        for stream in streams:
            stream.stop()
        waits = [asyncio.ensure_future(stream._closed.wait()) for stream in streams]
        if waits:
            _, late = await asyncio.wait(waits, timeout=_CLOSE_GRACE)
            for task in late:
                task.cancel()
        for stream in streams:
            # A stream that did not end in time (or was never served): closed here.
            await stream.close()
