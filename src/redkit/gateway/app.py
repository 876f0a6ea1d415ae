"""The gateway as a pure ASGI application: HTTP in, Redis commands out.

Routes (any other method than those named answers 405):

- ``POST /`` (or ``PUT``): one command as a JSON array;
- ``POST /pipeline``: a JSON array of commands, run in order (not atomically); the answer is
  one ``{"result"}`` or ``{"error"}`` per command;
- ``POST /multi-exec``: the same, atomically (``MULTI``/``EXEC`` on one connection);
- ``GET|HEAD|POST|PUT /COMMAND/arg/...``: one command in the path (see
  :func:`redkit.gateway.protocol.parse_path`);
- ``POST /subscribe/<channel>/...`` and ``POST /psubscribe/<pattern>/...`` (or ``GET``, or
  ``PUT``), with ``Accept: text/event-stream``: a subscription, streamed as server-sent events
  (see :mod:`redkit.gateway.pubsub`).

Two limits protect the Redis and the gateway: a script that runs past ``script_timeout`` is
killed (:mod:`redkit.gateway.watchdog`), and a reply larger than ``max_response`` is not sent;
in ``/pipeline`` and ``/multi-exec`` the replies are sent in order while their total fits, and
each one that does not is answered with an error instead.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from redis import exceptions as rx

from redkit.core.errors import InvalidArgumentError, UpstreamError
from redkit.drivers.connect import Connection
from redkit.gateway import pubsub
from redkit.gateway.auth import TokenRule, TokenTable, fingerprint, presented_token
from redkit.gateway.policy import CommandPolicy
from redkit.gateway.protocol import (
    MAX_BODY,
    MAX_RESPONSE,
    ProtocolError,
    RawCommand,
    command_name,
    encode_reply,
    error_message,
    item,
    json_body,
    parse_batch,
    parse_command,
    parse_path,
    reply_size,
)
from redkit.gateway.scripts import ScriptMap, Translated
from redkit.gateway.upstream import CrossSlotError, Upstream, open_upstream
from redkit.gateway.watchdog import DEFAULT_SCRIPT_TIMEOUT

__all__ = ["Gateway"]

log = logging.getLogger("redkit.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT"})
_BATCH_ROUTES = {b"/pipeline": "pipeline", b"/multi-exec": "multi-exec"}


class _Answer(Exception):
    """An HTTP answer decided early: a status and a JSON body."""

    def __init__(self, status: int, data: object) -> None:
        super().__init__(status)
        self.status = status
        self.data = data


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class Gateway:
    """An Upstash-compatible REST server in front of Redis, as an ASGI app.

    Args:
        tokens: each accepted token and what it gives access to: a :class:`TokenRule`, or
            just the Redis (a URL or a :class:`redkit.Connection`) for a read-write token.
            Tokens that name the same Redis share its connection pool.
        allow: commands of the deny list (:data:`redkit.gateway.policy.DENIED`) to run anyway,
            such as ``["FLUSHALL", "FLUSHDB"]``.
        max_body: the largest request body, in bytes; larger ones are refused with 400.
        max_response: the largest response, in bytes of JSON (about); a reply that does not
            fit is answered with a 400 error (in a batch, an error item) instead. The command
            has run all the same: only its reply is withheld.
        script_timeout: seconds a script may run (in ``/pipeline`` and ``/multi-exec``: the
            batch on its connection) before the gateway kills it; ``None`` for no limit. Redis
            takes the kill only after its own ``lua-time-limit``, so the effective limit is the
            larger of the two. A script that has written cannot be killed: its caller gets an
            ``UNKILLABLE`` error and the gateway logs it.
        max_streams: the most subscriptions (``/subscribe``, ``/psubscribe``) open at once,
            each holding a Redis connection of its own; one more is refused with 503.
        stream_keepalive: seconds of quiet after which a subscription is sent a keep-alive
            comment (so that proxies keep it open) and its Redis connection a ``PING``.
        **redis_options: for every Redis client: ``socket_timeout``, ``max_connections``...

    Serve it with any ASGI server (``uvicorn.run(gateway)``). Its Redis pools are opened on
    the first request and closed at the ASGI lifespan's shutdown, or by :meth:`aclose`.

    """

    def __init__(
        self,
        tokens: Mapping[str, TokenRule | str | Connection],
        *,
        allow: Iterable[str] = (),
        max_body: int = MAX_BODY,
        max_response: int = MAX_RESPONSE,
        script_timeout: float | None = DEFAULT_SCRIPT_TIMEOUT,
        max_streams: int = pubsub.DEFAULT_MAX_STREAMS,
        stream_keepalive: float = pubsub.KEEPALIVE,
        **redis_options: Any,
    ) -> None:
        rules = {
            token: rule if isinstance(rule, TokenRule) else TokenRule(rule)
            for token, rule in tokens.items()
        }
        self._tokens = TokenTable(rules)
        for rule in rules.values():
            # Validate every URL now, not on the first request.
            if isinstance(rule.redis, str):
                Connection(rule.redis)
        self.policy = CommandPolicy(allow)
        self.max_body = max_body
        if max_response <= 0:
            raise InvalidArgumentError("the maximum response size must be positive")
        self.max_response = max_response
        if script_timeout is not None and not script_timeout > 0:
            raise InvalidArgumentError("the script time limit must be positive seconds, or None")
        self.script_timeout = script_timeout
        self.streams = pubsub.Streams(max_streams, stream_keepalive)
        self._redis_options = redis_options
        self._scripts = ScriptMap()
        self._upstreams: dict[object, Upstream] = {}
        self._sync_tokens = itertools.count(1)

    @classmethod
    def for_redis(
        cls,
        redis: str | Connection,
        token: str,
        *,
        read_only_token: str | None = None,
        **options: Any,
    ) -> Gateway:
        """A gateway to one Redis: ``token`` reads and writes, ``read_only_token`` reads."""
        tokens: dict[str, TokenRule | str | Connection] = {token: TokenRule(redis)}
        if read_only_token is not None:
            if read_only_token == token:
                raise InvalidArgumentError("the read-only token must differ from the token")
            tokens[read_only_token] = TokenRule(redis, read_only=True)
        return cls(tokens, **options)

    def __repr__(self) -> str:
        return f"<redkit.gateway.Gateway allow={sorted(self.policy.allow)}>"

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: ``http`` requests and the ``lifespan`` protocol."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: refuse
            await send({"type": "websocket.close", "code": 1003})
            return
        status, data = await self._respond(scope, receive)
        sync = (b"upstash-sync-token", str(next(self._sync_tokens)).encode())
        if isinstance(data, pubsub.Stream):
            await data.serve(receive, send, [sync])
            return
        body = json_body(data)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            sync,
        ]
        if status == 405:
            path = scope.get("raw_path") or scope["path"].encode("utf-8")
            allow = b"GET, POST, PUT" if pubsub.is_route(path) else b"GET, HEAD, POST, PUT"
            headers.append((b"allow", allow))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def aclose(self) -> None:
        """End the subscriptions, close the Redis pools (they reopen if another request comes)."""
        await self.streams.aclose()
        upstreams, self._upstreams = self._upstreams, {}
        for upstream in upstreams.values():
            try:
                await upstream.aclose()
            except Exception:  # closing must go on for the others
                log.warning("closing a Redis pool failed", exc_info=True)

    # -- requests --------------------------------------------------------------------------

    async def _respond(self, scope: Scope, receive: Receive) -> tuple[int, object]:
        method: str = scope["method"]
        path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        label = "?"
        who = "-"
        try:
            if method not in _METHODS:
                raise _Answer(405, {"error": f"ERR method {method} is not allowed"})
            headers: list[tuple[bytes, bytes]] = scope["headers"]
            query: bytes = scope.get("query_string", b"")
            presented = presented_token(headers, query)
            if presented is None:
                raise _Answer(401, {"error": "Unauthorized"})
            who = fingerprint(presented)
            rule = self._tokens.lookup(presented)
            if rule is None:
                raise _Answer(401, {"error": "WRONGPASS invalid password"})
            fmt = _header(headers, b"upstash-response-format")
            if fmt is not None and fmt.strip().lower() != b"json":
                raise _Answer(
                    400, {"error": "ERR only the JSON response format is supported by redkit"}
                )
            b64 = (_header(headers, b"upstash-encoding") or b"").strip().lower() == b"base64"
            upstream = self._upstream(rule)
            subscription = pubsub.route(path)
            if subscription is not None:
                label = command_name(subscription)
                return 200, await self._subscribe(scope, receive, upstream, subscription)
            route = _BATCH_ROUTES.get(path.rstrip(b"/") or b"/")
            if route is not None:
                label = route
                if method not in ("POST", "PUT"):
                    raise _Answer(405, {"error": f"ERR {route} takes POST, not {method}"})
                commands = parse_batch(await self._body(scope, receive))
                if route == "pipeline":
                    return 200, await self._pipeline(upstream, rule, commands, b64)
                return await self._transaction(upstream, rule, commands, b64)
            if path.strip(b"/") == b"":
                if method not in ("POST", "PUT"):
                    raise _Answer(
                        400, {"error": "ERR no command: POST a JSON array, or use /COMMAND/args"}
                    )
                command = parse_command(await self._body(scope, receive))
            else:
                body = await self._body(scope, receive) if method in ("POST", "PUT") else None
                command = parse_path(path, query, body)
            label = command_name(command)
            return await self._single(upstream, rule, command, b64)
        except _Answer as answer:
            status, data = answer.status, answer.data
        except ProtocolError as exc:
            status, data = exc.status, {"error": exc.message}
        except UpstreamError as exc:
            # The details (addresses, ports) go to the log, not to the client.
            log.warning("%s %s (%s): %s", method, label, who, exc)
            status, data = 503, {"error": "ERR the database is not reachable from the gateway"}
        except Exception:
            log.exception("%s %s (%s) failed", method, label, who)
            status, data = 500, {"error": "ERR internal error in the gateway"}
        log.debug("%s %s (%s) -> %s", method, label, who, status)
        return status, data

    async def _subscribe(
        self, scope: Scope, receive: Receive, upstream: Upstream, command: RawCommand
    ) -> pubsub.Stream:
        method = scope["method"]
        if method == "HEAD":
            raise _Answer(405, {"error": "ERR HEAD cannot open a subscription: use POST"})
        pubsub.require_event_stream(scope["headers"])
        if method in ("POST", "PUT"):
            # Read to its end, so that the next receive() is the client's disconnect.
            pubsub.check_body(await self._body(scope, receive))
        return await self.streams.open(upstream, command)

    def _upstream(self, rule: TokenRule) -> Upstream:
        target = rule.redis
        key: object = target if isinstance(target, str) else id(target)
        upstream = self._upstreams.get(key)
        if upstream is None:
            upstream = self._upstreams[key] = open_upstream(
                target, script_timeout=self.script_timeout, **self._redis_options
            )
        return upstream

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope["headers"], b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_body:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Answer(400, {"error": "ERR the client went away"})
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> _Answer:
        return _Answer(
            400, {"error": f"ERR max request size exceeded: the limit is {self.max_body} bytes"}
        )

    async def _single(
        self, upstream: Upstream, rule: TokenRule, command: RawCommand, b64: bool
    ) -> tuple[int, object]:
        refusal = self.policy.refusal(command, read_only=rule.read_only)
        if refusal is not None:
            return 400, {"error": refusal}
        translated = self._scripts.translate(command)
        reply = (await upstream.run([translated.command]))[0]
        if isinstance(reply, rx.NoScriptError) and translated.fallback is not None:
            reply = (await upstream.run([translated.fallback]))[0]
        reply = self._capped([_restore(translated, reply)], b64)[0]
        if isinstance(reply, BaseException):
            return 400, {"error": error_message(reply)}
        return 200, {"result": encode_reply(reply, b64=b64)}

    async def _pipeline(
        self, upstream: Upstream, rule: TokenRule, commands: list[RawCommand], b64: bool
    ) -> list[dict[str, Any]]:
        replies: list[Any] = [None] * len(commands)
        runnable: list[tuple[int, Translated]] = []
        for index, command in enumerate(commands):
            refusal = self.policy.refusal(command, read_only=rule.read_only)
            if refusal is not None:
                replies[index] = rx.ResponseError(refusal)
            else:
                runnable.append((index, self._scripts.translate(command, inline=True)))
        if runnable:
            results = await upstream.run([translated.command for _, translated in runnable])
            for (index, translated), reply in zip(runnable, results, strict=True):
                replies[index] = _restore(translated, reply)
        return [item(reply, b64=b64) for reply in self._capped(replies, b64)]

    async def _transaction(
        self, upstream: Upstream, rule: TokenRule, commands: list[RawCommand], b64: bool
    ) -> tuple[int, object]:
        translated: list[Translated] = []
        for command in commands:
            refusal = self.policy.refusal(command, read_only=rule.read_only)
            if refusal is not None:
                return 400, {"error": refusal}
            translated.append(self._scripts.translate(command, inline=True))
        try:
            replies = await upstream.transaction([t.command for t in translated])
        except CrossSlotError as exc:
            return 400, {"error": str(exc)}
        except rx.ResponseError as exc:
            return 400, {"error": error_message(exc)}
        restored = [_restore(t, reply) for t, reply in zip(translated, replies, strict=True)]
        return 200, [item(reply, b64=b64) for reply in self._capped(restored, b64)]

    def _capped(self, replies: list[Any], b64: bool) -> list[Any]:
        """``replies`` in order while they fit in ``max_response``; an error for each too large.

        The errors put in place of replies are not counted: they are short, one per command.
        """
        used = 0
        capped: list[Any] = []
        for reply in replies:
            size = reply_size(reply, b64=b64)
            if used + size > self.max_response:
                before = f", after {used} bytes of the replies before it," if used else ""
                reply = rx.ResponseError(
                    f"ERR max response size exceeded: the reply is about {size} bytes{before} "
                    f"and the limit is {self.max_response} (read it in parts with SCAN or a "
                    "range, or raise --max-response)"
                )
            else:
                used += size
            capped.append(reply)
        return capped


def _restore(translated: Translated, reply: Any) -> Any:
    """The reply in the client's terms: ``SCRIPT LOAD`` answers the SHA of the client's text."""
    if translated.reply_sha is not None and isinstance(reply, bytes):
        return translated.reply_sha
    return reply
