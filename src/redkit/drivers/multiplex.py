"""One Redis connection shared by every concurrent asyncio caller: auto-pipelining's transport.

Redis answers the commands of one connection in the order it received them. So any number of
callers can share one socket: each command is packed (hiredis, in C) into a write buffer and
gets a future; the buffer goes out in one write at the end of the event-loop pass (or earlier,
once it holds :data:`DEFAULT_BATCH_OPS` commands or :data:`DEFAULT_BATCH_BYTES` bytes); each
reply that hiredis parses resolves the oldest future still waiting. One write, one read and one
loop pass then serve every task that issued a command in that pass, where redis-py spends all
three on each command.

redis-py still opens the connection: TCP or a Unix socket, TLS, ``AUTH``, ``SELECT``,
``HELLO``, the client name. Then this protocol takes the transport over, and redis-py's stream
reader never sees a byte of it again.

What keeps the connection in step:

- A future is resolved with a *value* even when the command failed: the reply's error (a
  redis-py exception, from redis-py's own error table) or the :class:`BackendError` that broke
  the connection. Callers raise it; a pipeline's items that nobody awaits any more log nothing.
- A caller that is cancelled, or gives up, leaves its future behind; its reply is still read
  and dropped, so the next reply goes to the next caller.
- With a ``deadline``, each write has one. If the replies to a write have not all arrived by
  then, the connection is dropped and every command waiting on it fails with
  :class:`BackendTimeout`: a server that stalls cannot hold callers past their deadline, and
  no late reply can land on a reused connection.
- When the server closes the connection (a restart, a kill), every waiting command fails with
  :class:`BackendUnavailable`; the driver opens a new connection for the next command.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import hiredis
import redis.asyncio
from redis._parsers.base import BaseParser

from redkit.core.errors import BackendError, BackendTimeout, BackendUnavailable
from redkit.drivers.observed import DriverTelemetry

__all__ = ["DEFAULT_BATCH_BYTES", "DEFAULT_BATCH_OPS", "MultiplexedConnection"]

#: Commands in one write at most; a pass that issues more writes them in several.
DEFAULT_BATCH_OPS = 256
#: Bytes of packed commands in one write at most (a write holds at least one command).
DEFAULT_BATCH_BYTES = 1 << 20

# What hiredis returns when the buffer holds no complete reply (False is a RESP3 reply).
_INCOMPLETE = object()


class MultiplexedConnection(asyncio.Protocol):
    """One connection, its write buffer and the futures waiting for its replies, in order.

    Made by :meth:`open`. :meth:`send` and :meth:`send_all` never suspend: they queue the
    command and return the future that its reply resolves.
    """

    def __init__(
        self,
        *,
        deadline: float | None,
        batch_ops: int,
        batch_bytes: int,
        telemetry: DriverTelemetry | None = None,
    ) -> None:
        """A protocol with no transport yet; use :meth:`open`."""
        self._deadline = deadline
        # Told of each write (one round trip): once a batch, not once a command.
        self._telemetry = telemetry
        self._batch_ops = batch_ops
        self._batch_bytes = batch_bytes
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._writer: asyncio.StreamWriter | None = None
        # redis-py's error table, so that an error reply is the exception redis-py would raise.
        self._parser = hiredis.Reader(replyError=BaseParser.parse_error, notEnoughData=_INCOMPLETE)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._buffer: list[bytes] = []
        self._buffered_bytes = 0
        self._flush_scheduled = False
        # Replies expected and received so far, and each write's deadline with the count of
        # replies that answers it in full (oldest first).
        self._sent = 0
        self._received = 0
        self._due: deque[tuple[float, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        #: The error that ended this connection, or ``None`` while it is usable.
        self.broken: BackendError | None = None

    @classmethod
    async def open(
        cls,
        connection: redis.asyncio.Connection,
        *,
        deadline: float | None,
        batch_ops: int = DEFAULT_BATCH_OPS,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        telemetry: DriverTelemetry | None = None,
    ) -> MultiplexedConnection:
        """Connect ``connection`` (redis-py's handshake), then take its transport over.

        ``telemetry`` is told of each write and the commands it carries.
        """
        await connection.connect()  # type: ignore[no-untyped-call]
        writer = connection._writer  # redis-py keeps its stream writer private
        if writer is None:
            raise BackendUnavailable("redis-py connected without a transport; try again")
        transport = writer.transport
        mux = cls(
            deadline=deadline, batch_ops=batch_ops, batch_bytes=batch_bytes, telemetry=telemetry
        )
        transport.set_protocol(mux)
        mux.connection_made(transport)
        # The transport is this protocol's now: redis-py would close it when its connection
        # object is freed, and the stream writer when it is (so it is kept, unused).
        mux._writer = writer
        connection._writer = connection._reader = None
        return mux

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Take ``transport`` (called by :meth:`open`: ``set_protocol`` does not call it)."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    @property
    def load(self) -> int:
        """Commands queued or waiting for a reply: the driver sends more to the least loaded."""
        return len(self._waiting)

    @property
    def filling(self) -> bool:
        """Whether a write is being gathered in this pass (later commands should join it)."""
        return self._flush_scheduled

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; its future resolves with the reply (or the error)."""
        future = self._loop.create_future()
        if self.broken is not None:
            future.set_result(self.broken)
            return future
        self._waiting.append(future)
        self._buffer.append(packed)
        self._buffered_bytes += len(packed)
        self._queued()
        return future

    def send_all(self, packed: list[bytes]) -> list[asyncio.Future[Any]]:
        """Queue several commands, in order and on this connection; one future each."""
        create = self._loop.create_future
        futures = [create() for _ in packed]
        if self.broken is not None:
            for future in futures:
                future.set_result(self.broken)
            return futures
        self._waiting.extend(futures)
        self._buffer.extend(packed)
        self._buffered_bytes += sum(map(len, packed))
        self._queued()
        return futures

    def _queued(self) -> None:
        if len(self._buffer) >= self._batch_ops or self._buffered_bytes >= self._batch_bytes:
            self._write()  # a full batch goes now; the pass's later commands start the next
        elif not self._flush_scheduled:
            # call_soon runs after every task that is ready in this pass: they all join.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._buffer:
            self._write()

    def _write(self) -> None:
        transport = self._transport
        assert transport is not None
        buffer, self._buffer = self._buffer, []
        self._buffered_bytes = 0
        self._sent += len(buffer)
        transport.write(b"".join(buffer))
        if self._telemetry is not None:
            self._telemetry.sent(len(buffer))
        if self._deadline is not None:
            due = self._loop.time() + self._deadline
            self._due.append((due, self._sent))
            if self._timer is None:
                self._timer = self._loop.call_at(due, self._check_answered)

    def _check_answered(self) -> None:
        # One timer per connection, at the deadline of its oldest write not yet answered in
        # full (not one per write: a busy connection makes thousands of writes a second).
        self._timer = None
        due = self._due
        while due and due[0][1] <= self._received:
            due.popleft()  # answered in full
        if self.broken is not None or not due:
            return
        if due[0][0] <= self._loop.time():
            self._break(BackendTimeout(f"Redis did not answer within {self._deadline} s"))
        else:
            self._timer = self._loop.call_at(due[0][0], self._check_answered)

    def data_received(self, data: bytes) -> None:
        """Resolve the oldest waiting futures with the replies that ``data`` completes."""
        parser = self._parser
        parser.feed(data)
        waiting = self._waiting
        try:
            while (reply := parser.gets()) is not _INCOMPLETE:
                self._received += 1
                future = waiting.popleft()
                if not future.done():  # its caller gave up: the reply is dropped
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # Not RESP, or a reply nobody asked for: the stream cannot be trusted any more.
            self._break(BackendUnavailable(f"Redis sent a reply that cannot be matched: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every waiting command: the server closed the connection, or it was dropped."""
        if self.broken is None:
            why = f": {exc}" if exc is not None else ""
            self._break(BackendUnavailable(f"Redis closed the connection{why}"))

    def _break(self, error: BackendError) -> None:
        self.broken = error
        self._buffer = []
        self._due.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                # A fresh exception each: one instance raised in many tasks shares a traceback.
                future.set_result(type(error)(str(error)))
        if self._transport is not None:
            self._transport.abort()

    def close(self) -> None:
        """Drop the connection; every command still waiting fails with ``BackendUnavailable``."""
        if self.broken is None:
            self._break(BackendUnavailable("the driver was closed"))
