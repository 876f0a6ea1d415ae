"""Drivers for Upstash's REST API: sync and asyncio, on httpx.

Every operation becomes one or two ``POST`` requests: ``/`` for one command (a JSON array),
``/pipeline`` for several, ``/multi-exec`` for a transaction (see
:mod:`redkit.drivers.rest_protocol`, which builds the requests and reads the replies). Replies
come back shaped exactly as the redis-py driver shapes them, so every flow runs unchanged.

Failures map onto :mod:`redkit.errors` as with redis-py:

- a request that cannot connect (refused, DNS, TLS) is retried with exponential backoff, a
  few times; it surely never reached the server. Nothing else is retried: after a timeout or
  a dropped connection a write may have been applied, and sending it again could apply it
  twice. Out of retries: :class:`BackendUnavailable`;
- every wait is bounded: connecting, sending, each read of the reply, and the wait for a
  pooled connection. Past it: :class:`BackendTimeout`;
- HTTP 400 is the command's own error (:class:`CommandError`, with the server's message);
  401 a token the server refuses (:class:`ConfigurationError` naming the token); 5xx and
  a closed connection :class:`BackendUnavailable`.

Upstash replicas serve reads; the ``upstash-sync-token`` each reply carries is sent with the
next request of the same :class:`RestConnection`, so a read sees the writes made before it
(read-your-writes), whichever driver of the connection made them.

Auto-pipelining (asyncio, on by default; ``RestConnection(autopipeline=False)`` turns it
off), as ``@upstash/redis`` does it: the commands, script calls and non-transactional
pipelines that concurrent tasks issue in one event-loop pass go as one ``POST /pipeline``
(bounded: :data:`BATCH_OPS` commands, :data:`BATCH_BYTES` of JSON; more go as further
batches at once), and each caller reads its own entries of the reply, so errors stay per
command and a ``NOSCRIPT`` is answered with an ``EVAL`` for that call only. A transaction,
an oversized request and a lone request go as they would without it. Each batch carries the
latest sync token and records its reply's; a batch that times out or finds the server down
fails each of its callers with the typed error above. See :class:`AsyncRestDriver`. The
blocking driver sends one request per operation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import httpx

from redkit.core.durations import positive_seconds
from redkit.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
)
from redkit.core.ops import RedisOp
from redkit.drivers.observed import DriverTelemetry
from redkit.drivers.pool import DriverPool
from redkit.drivers.rest_protocol import (
    HttpReply,
    Plan,
    Reply,
    Request,
    merge,
    mergeable,
    plan,
    split,
)

__all__ = [
    "BATCH_BYTES",
    "BATCH_OPS",
    "DEFAULT_REST_CONNECT_TIMEOUT",
    "DEFAULT_REST_RETRIES",
    "DEFAULT_REST_TIMEOUT",
    "AsyncRestDriver",
    "RestConnection",
    "RestDriver",
]

#: Seconds to wait for a TCP (and TLS) connection to the REST server.
DEFAULT_REST_CONNECT_TIMEOUT = 2.0
#: Seconds to wait for each read of a reply (and for a free pooled connection).
DEFAULT_REST_TIMEOUT = 5.0
#: How many times a request that could not connect is tried again.
DEFAULT_REST_RETRIES = 2
#: The first retry waits this many seconds; each next one twice as long (at most 1 s).
DEFAULT_RETRY_BACKOFF = 0.05
#: HTTP connections one driver keeps at most; more requests wait for one.
DEFAULT_REST_CONNECTIONS = 100

#: Commands in one auto-pipelined ``/pipeline`` request at most; more go in further batches.
BATCH_OPS = 256
#: Bytes of JSON in one auto-pipelined request at most: far below what Upstash and the gateway
#: accept in one request (the gateway's ``max_body``: 10 MiB), and a batch's JSON is read
#: and parsed whole on both sides before any of it runs.
BATCH_BYTES = 1024 * 1024

_SYNC_TOKEN = "upstash-sync-token"
#: Idle connections are dropped before common servers close them (uvicorn after 5 s): a
#: request never goes out on a connection the server is about to close.
_KEEPALIVE_EXPIRY = 4.0


class _Settings:
    """What every driver of one :class:`RestConnection` shares."""

    def __init__(
        self,
        *,
        url: str,
        token: str,
        token_name: str,
        socket_timeout: float,
        connect_timeout: float,
        retries: int,
        retry_backoff: float,
        key_locking: bool,
        read_your_writes: bool,
        max_connections: int,
        cluster: bool,
        autopipeline: bool = True,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url
        self.autopipeline = autopipeline
        self.cluster = cluster
        self.transport = transport
        self.token_name = token_name
        self.socket_timeout = socket_timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.key_locking = key_locking
        self.read_your_writes = read_your_writes
        self.max_connections = max_connections
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Upstash-Encoding": "base64",
        }
        #: The last ``upstash-sync-token`` seen: shared by the connection's drivers.
        self.sync_token: str | None = None

    def timeout(self, budget: float | None) -> httpx.Timeout:
        read = self.socket_timeout if budget is None else min(budget, self.socket_timeout)
        connect = self.connect_timeout if budget is None else min(budget, self.connect_timeout)
        return httpx.Timeout(read, connect=connect, pool=read)

    def limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
        )

    def request_headers(self) -> dict[str, str]:
        token = self.sync_token
        if token is None or not self.read_your_writes:
            return self.headers
        return {**self.headers, _SYNC_TOKEN: token}

    def seen(self, response: httpx.Response) -> None:
        token = response.headers.get(_SYNC_TOKEN)
        if token:
            self.sync_token = token

    def plan(self, op: RedisOp) -> Plan:
        return plan(op, url=self.url, token_name=self.token_name, key_locking=self.key_locking)

    def explained(self, result: Any) -> Any:
        """``result`` with each ``CROSSSLOT`` error naming the fix, when it is redkit's own.

        Without ``cluster=True`` redkit gives the keys of one operation no common hash tag, so
        a server that fronts a Redis Cluster (``redkit gateway`` on one) refuses scripts of
        several keys; the server cannot tell the client, so the error says what to do.
        """
        if self.cluster:
            return result
        if isinstance(result, list):
            return [
                self.explained(item) if isinstance(item, CommandError) else item for item in result
            ]
        if isinstance(result, CommandError) and str(result).startswith("CROSSSLOT"):
            return CommandError(
                f"{result} -- the REST server at {self.url} fronts a Redis Cluster: connect "
                "with cluster=True (redkit.connect(url, token=..., cluster=True)) so that "
                "redkit keeps the keys of each operation in one slot"
            )
        return result

    def retry_wait(
        self, exc: httpx.TransportError, attempt: int, started: float, budget: float | None
    ) -> float:
        """Seconds to wait before sending a failed request again; raises when it must not be.

        Only a failed connect is tried again (at most ``retries`` times, within the caller's
        budget): that request never reached the server. After a timeout or a dropped
        connection the server may have run the command, so nothing is re-sent.
        """
        if isinstance(exc, httpx.TimeoutException):
            raise BackendTimeout(
                f"the REST server at {self.url} did not answer in time: {type(exc).__name__}"
            ) from exc
        if isinstance(exc, httpx.ConnectError) and attempt < self.retries:
            delay: float = min(self.retry_backoff * 2.0**attempt, 1.0)
            if budget is None or time.monotonic() + delay - started < budget:
                return delay
        tries = f" (tried {attempt + 1} times)" if attempt else ""
        raise BackendUnavailable(
            f"the REST server at {self.url} is unavailable{tries}: {type(exc).__name__}: {exc}"
        ) from exc


class RestDriver:
    """Blocking driver on an ``httpx.Client``: executes :mod:`redkit.core.ops` over REST."""

    def __init__(self, settings: _Settings, *, timeout: float | None = None) -> None:
        self._settings = settings
        #: Whether the server behind the API is a Redis Cluster (``RestConnection(cluster=)``).
        self.is_cluster = settings.cluster
        self._budget = timeout
        #: What this driver reports (:mod:`redkit.drivers.observed`): one round trip an HTTP
        #: request (a batch of callers is one).
        self.telemetry = DriverTelemetry("rest")
        transport = settings.transport
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ConfigurationError("this transport serves asyncio only (the async driver)")
        self._client = httpx.Client(
            timeout=settings.timeout(timeout), limits=settings.limits(), transport=transport
        )

    def execute(self, op: RedisOp) -> Any:
        """Run one operation (a command, script call, pipeline, node query) and reply."""
        steps = self._settings.plan(op)
        try:
            request = next(steps)
            while True:
                request = steps.send(self._send(request))
        except StopIteration as stop:
            return self._settings.explained(stop.value)
        except CommandError as exc:
            raise self._settings.explained(exc) from None
        except BackendError as exc:
            self.telemetry.failed(exc)
            raise
        finally:
            steps.close()

    def _send(self, request: Request) -> HttpReply:
        settings = self._settings
        started = time.monotonic()
        attempt = 0
        while True:
            self.telemetry.sent(request.command_count)
            try:
                response = self._client.post(
                    settings.url + request.path,
                    content=request.body,
                    headers=settings.request_headers(),
                )
            except httpx.TransportError as exc:
                time.sleep(settings.retry_wait(exc, attempt, started, self._budget))
                attempt += 1
                continue
            settings.seen(response)
            return HttpReply(response.status_code, response.content)

    def close(self) -> None:
        """Close the driver's HTTP connections."""
        self._client.close()


class AsyncRestDriver:
    """Asyncio driver on an ``httpx.AsyncClient``; it belongs to the loop that created it.

    With auto-pipelining (``RestConnection(autopipeline=True)``, the default) the requests
    that concurrent tasks make in one event-loop pass are gathered: the first one schedules a
    flush (``loop.call_soon``, which runs after every task already ready in that pass), and
    the flush sends them as one ``POST /pipeline``, at most :data:`BATCH_OPS` commands and
    :data:`BATCH_BYTES` of JSON a batch (more go as further batches at once). Each caller gets
    its own commands' entries back and reads them as it reads its own reply, so:

    - errors stay per command: a ``WRONGTYPE`` fails its caller only, and a script's
      ``NOSCRIPT`` is answered by that caller's plan with an ``EVAL``, which joins the next
      batch; an argument that cannot be encoded fails in its caller before it is queued;
    - a transaction (``/multi-exec``) and a request too large for a batch are sent alone, and
      so is a lone request (exactly the request it would be without auto-pipelining);
    - each batch sends the latest ``upstash-sync-token`` and records its reply's;
    - a batch that fails as a whole gives each of its callers the typed error it would have
      had alone (:class:`BackendTimeout`, :class:`BackendUnavailable`); one the server refuses
      as a whole before running it (HTTP 400/413) is sent again as separate requests; a
      connect failure is retried as always, nothing after the request went out;
    - a caller that is cancelled before its batch leaves is not sent; after, only its reply
      is dropped (the HTTP request finishes for the others).

    The replies of a batch share the server's response size limit (the gateway's
    ``max_response``, Upstash's own): a reply that would fit alone can be refused, as an error
    for its caller, when a batch's replies add up past it.
    """

    def __init__(self, settings: _Settings, *, timeout: float | None = None) -> None:
        self._settings = settings
        #: Whether the server behind the API is a Redis Cluster (``RestConnection(cluster=)``).
        self.is_cluster = settings.cluster
        self._budget = timeout
        #: What this driver reports (:mod:`redkit.drivers.observed`): one round trip an HTTP
        #: request (a batch of callers is one).
        self.telemetry = DriverTelemetry("rest")
        transport = settings.transport
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError("this transport is blocking only (the sync driver)")
        self._client = httpx.AsyncClient(
            timeout=settings.timeout(timeout), limits=settings.limits(), transport=transport
        )
        self._submit: Callable[[Request], Awaitable[Reply]] = (
            self._batched if settings.autopipeline else self._send
        )
        # The requests waiting for the next batch, and whether its flush is scheduled.
        self._queue: list[_Waiter] = []
        self._flush_scheduled = False
        # Batches in flight: a task needs a strong reference until it ends.
        self._batches: set[asyncio.Task[None]] = set()

    async def execute(self, op: RedisOp) -> Any:
        """Run one operation (a command, script call, pipeline, node query) and reply."""
        steps = self._settings.plan(op)
        submit = self._submit
        try:
            request = next(steps)
            while True:
                request = steps.send(await submit(request))
        except StopIteration as stop:
            return self._settings.explained(stop.value)
        except CommandError as exc:
            raise self._settings.explained(exc) from None
        except BackendError as exc:
            self.telemetry.failed(exc)
            raise
        finally:
            steps.close()

    async def _send(self, request: Request) -> HttpReply:
        settings = self._settings
        started = time.monotonic()
        attempt = 0
        while True:
            self.telemetry.sent(request.command_count)
            try:
                response = await self._client.post(
                    settings.url + request.path,
                    content=request.body,
                    headers=settings.request_headers(),
                )
            except httpx.TransportError as exc:
                await asyncio.sleep(settings.retry_wait(exc, attempt, started, self._budget))
                attempt += 1
                continue
            settings.seen(response)
            return HttpReply(response.status_code, response.content)

    async def _batched(self, request: Request) -> Reply:
        if (
            not mergeable(request)
            or request.command_count > BATCH_OPS
            or len(request.body) > BATCH_BYTES
        ):
            return await self._send(request)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiter(request, future))
        if not self._flush_scheduled:
            # call_soon runs after every task that is ready in this pass: they all join.
            self._flush_scheduled = True
            future.get_loop().call_soon(self._flush)
        # Cancelling the caller cancels only its future: the batch goes on without it.
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        queue, self._queue = self._queue, []
        batch: list[_Waiter] = []
        # The merged body's size: its brackets, then each request's body and a comma (one
        # fewer than counted: the bound holds with a byte to spare).
        ops, size = 0, 2
        for waiter in queue:
            if waiter.future.done():
                continue  # cancelled before it was sent: not sent at all
            request = waiter.request
            if batch and (
                ops + request.command_count > BATCH_OPS
                or size + len(request.body) + 1 > BATCH_BYTES
            ):
                self._launch(batch)
                batch, ops, size = [], 0, 2
            batch.append(waiter)
            ops += request.command_count
            size += len(request.body) + 1
        if batch:
            self._launch(batch)

    def _launch(self, batch: list[_Waiter]) -> None:
        task = asyncio.get_running_loop().create_task(self._run_batch(batch))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, batch: list[_Waiter]) -> None:
        try:
            batch = [waiter for waiter in batch if not waiter.future.done()]
            if len(batch) == 1:
                # Alone after all: the request as it is, as without auto-pipelining.
                await self._answer(batch[0])
                return
            if not batch:
                return
            requests = [waiter.request for waiter in batch]
            replies = split(await self._send(merge(requests)), requests)
        except BackendError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:
            # Not a transport failure (httpx could not decode the body, say): each caller
            # still gets a typed error, with httpx's as its cause.
            error = BackendError(f"the REST request failed: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            _fail(batch, error)
            return
        except BaseException:
            # The task itself was cancelled (the loop is closing): nobody may wait forever.
            _fail(batch, BackendUnavailable("the driver was closed"))
            raise
        if replies is None:
            # Refused as a whole before any of it ran (too large, unreadable): each alone,
            # so that only a request that is at fault fails, and only its own caller.
            await asyncio.gather(*(self._answer(waiter) for waiter in batch))
            return
        for waiter, reply in zip(batch, replies, strict=True):
            _set(waiter.future, result=reply)

    async def _answer(self, waiter: _Waiter) -> None:
        """Send ``waiter``'s request alone and hand its caller the reply (or the error)."""
        try:
            reply = await self._send(waiter.request)
        except Exception as exc:  # what this caller would have had without batching
            _set(waiter.future, exception=exc)
        except BaseException:
            _set(waiter.future, exception=BackendUnavailable("the driver was closed"))
            raise
        else:
            _set(waiter.future, result=reply)

    async def aclose(self) -> None:
        """Close the driver's HTTP connections."""
        await self._client.aclose()


class _Waiter(NamedTuple):
    """One caller's request waiting for its batch, and the future its reply goes to."""

    request: Request
    future: asyncio.Future[Reply]


def _set(
    future: asyncio.Future[Reply],
    *,
    result: Reply | None = None,
    exception: BaseException | None = None,
) -> None:
    if future.done():
        return  # its caller gave up: the reply is dropped
    if exception is not None:
        future.set_exception(exception)
    else:
        assert result is not None
        future.set_result(result)


def _fail(batch: list[_Waiter], exc: BackendError) -> None:
    """Fail every caller of ``batch`` still waiting with a copy of ``exc``.

    A copy each: one instance raised in many tasks would share (and grow) one traceback.
    """
    for waiter in batch:
        copy = type(exc)(*exc.args)
        copy.__cause__ = exc.__cause__
        _set(waiter.future, exception=copy)


def _check_url(url: object, variable: str | None) -> str:
    """``url`` without a trailing slash; raises when it is no usable REST URL."""
    name = variable or "the URL"

    def fail(why: str) -> ConfigurationError:
        return ConfigurationError(f"{name} is not a usable REST URL: {why}", variable=variable)

    if not isinstance(url, str):
        raise fail(f"expected a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise fail(str(exc)) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise fail(f"expected https:// (or http://), got {parts.scheme + '://'!r}")
    if not parts.hostname:
        raise fail("it has no host")
    if port == 0:
        raise fail("port 0 is not a port a server listens on")
    if parts.username is not None or parts.password is not None:
        raise fail("put the token in the token argument, not in the URL")
    if parts.query or parts.fragment:
        raise fail("it must not have a query or a fragment")
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


class RestConnection:
    """An Upstash database (or a compatible gateway) over its REST API, sync and async.

    Create it with :func:`redkit.connect` (``connect("https://...", token=...)``) or
    :func:`redkit.from_env` (``UPSTASH_REDIS_REST_URL`` and ``UPSTASH_REDIS_REST_TOKEN``), and
    share it: every facade built on it uses the same HTTP connections. Nothing is opened
    until first used; the asyncio driver is created once per event loop.

    Args:
        url: the database's REST URL, ``https://...`` (``http://`` for a local gateway).
        token: the REST token (the read-only token serves reads only).
        socket_timeout: seconds to wait for each read of a reply, and for a free connection.
        connect_timeout: seconds to wait for a connection to open.
        retries: how many times a request that could not connect is tried again, waiting
            ``retry_backoff`` seconds, then twice as long each time (at most 1 s a wait).
        retry_backoff: the first wait between two tries.
        key_locking: send each script with ``#!lua flags=allow-key-locking`` first, so that
            Upstash locks only the keys the script declares. Default: on for ``https://``
            URLs (Upstash), off for ``http://`` (a local gateway or SRH may not strip it).
        read_your_writes: send the last ``upstash-sync-token`` with each request.
        max_connections: HTTP connections a driver keeps at most.
        variable: the environment variable ``url`` came from, named in errors.
        token_variable: the environment variable ``token`` came from, named in errors.
        transport: an httpx transport to send requests through instead of the network
            (``httpx.MockTransport`` in tests, or a transport of your own).
        cluster: the server behind the API is a Redis Cluster (``redkit gateway`` in front of
            one): keys get hash tags, as on a :class:`redkit.Connection` to the cluster.
            Upstash is never one. Without it, a script of several keys is refused with a
            ``CROSSSLOT`` error that says to set it.
        autopipeline: the asyncio driver sends the commands that concurrent tasks issue in
            one event-loop pass as one ``/pipeline`` request, each reply matched back to its
            caller (see :class:`AsyncRestDriver`); ``False`` sends one request per
            operation. The blocking driver always sends one request per operation.

    """

    #: Upstash runs a script only on the keys it declares (see :mod:`redkit.core.driver`).
    scripts_declare_keys = True
    #: Arguments travel as JSON strings: bytes that are not UTF-8 cannot be sent.
    values_are_text = True

    def __init__(
        self,
        url: str,
        *,
        token: str,
        socket_timeout: float = DEFAULT_REST_TIMEOUT,
        connect_timeout: float = DEFAULT_REST_CONNECT_TIMEOUT,
        retries: int = DEFAULT_REST_RETRIES,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
        key_locking: bool | None = None,
        read_your_writes: bool = True,
        max_connections: int = DEFAULT_REST_CONNECTIONS,
        variable: str | None = None,
        token_variable: str | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        cluster: bool = False,
        autopipeline: bool = True,
    ) -> None:
        self.url = _check_url(url, variable)
        if not isinstance(cluster, bool):
            raise ConfigurationError(f"cluster must be True or False, got {cluster!r}")
        if not isinstance(autopipeline, bool):
            raise ConfigurationError(
                f"autopipeline must be True or False, got {autopipeline!r}",
                variable="autopipeline",
            )
        #: Whether the asyncio driver gathers concurrent requests into ``/pipeline`` batches.
        self.autopipeline = autopipeline
        #: Whether the server behind the API is a Redis Cluster: keys then get hash tags.
        self.is_cluster = cluster
        token_name = token_variable or "token"
        if not isinstance(token, str) or not token.strip():
            raise ConfigurationError(
                f"{token_name} is missing or empty: a REST URL needs its token",
                variable=token_name,
            )
        token = token.strip()
        if any(c.isspace() for c in token) or not token.isprintable():
            raise ConfigurationError(
                f"{token_name} holds whitespace or control characters", variable=token_name
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError(f"retries must be an int >= 0, got {retries!r}")
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ConfigurationError(f"max_connections must be an int, got {max_connections!r}")
        if max_connections < 1:
            raise ConfigurationError(f"max_connections must be >= 1, got {max_connections}")
        if key_locking is None:
            key_locking = self.url.lower().startswith("https:")
        self._settings = _Settings(
            url=self.url,
            token=token,
            token_name=token_name,
            socket_timeout=positive_seconds(socket_timeout, "socket_timeout"),
            connect_timeout=positive_seconds(connect_timeout, "connect_timeout"),
            retries=retries,
            retry_backoff=positive_seconds(retry_backoff, "retry_backoff"),
            key_locking=bool(key_locking),
            read_your_writes=bool(read_your_writes),
            max_connections=max_connections,
            cluster=cluster,
            autopipeline=autopipeline,
            transport=transport,
        )
        settings = self._settings
        self._drivers: DriverPool[RestDriver, AsyncRestDriver] = DriverPool(
            lambda timeout: RestDriver(settings, timeout=timeout),
            lambda timeout: AsyncRestDriver(settings, timeout=timeout),
        )

    @property
    def key_locking(self) -> bool:
        """Whether scripts carry ``#!lua flags=allow-key-locking``."""
        return self._settings.key_locking

    @property
    def sync_token(self) -> str | None:
        """The last ``upstash-sync-token`` the server sent (``None`` before any reply).

        Assign one read from another connection to make this one see that connection's
        writes too.
        """
        return self._settings.sync_token

    @sync_token.setter
    def sync_token(self, token: str | None) -> None:
        self._settings.sync_token = token

    def __repr__(self) -> str:
        return f"<redkit.RestConnection {self.url!r} token=***>"

    def sync_driver(self, *, timeout: float | None = None) -> RestDriver:
        """The blocking driver, created on first use; ``timeout`` bounds each of its waits."""
        return self._drivers.sync(timeout)

    def async_driver(self, *, timeout: float | None = None) -> AsyncRestDriver:
        """The asyncio driver of the running event loop, created on first use in that loop."""
        return self._drivers.async_(timeout)

    def close(self) -> None:
        """Close the blocking drivers; :meth:`aclose` closes the asyncio ones."""
        self._drivers.close()

    async def aclose(self) -> None:
        """Close the asyncio drivers of the running loop, and the blocking drivers."""
        await self._drivers.aclose_loop()
        self.close()

    def __enter__(self) -> RestConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RestConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
