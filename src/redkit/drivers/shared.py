"""Blocking commands of many threads on one connection, pipelined: the threads' auto-pipelining.

:class:`SharedConnection` holds one redis-py connection outside its pool and talks on its
socket directly: each command is packed by hiredis, written with one ``sendall`` and its reply
parsed by a hiredis reader of our own. That skips what redis-py does around every command
(taking a connection from the pool and giving it back under a lock, the retry wrapper, the
observability hooks): about two thirds of a raw redis-py call's own time on loopback.

Threads share it. A thread that finds the connection free sends its commands itself, alone.
A thread that finds it busy queues its packed commands and waits on a lock of its own; when
the busy thread has its replies, it hands the connection to the first thread in the queue,
which writes *every* queued command in one write and reads their replies in order, giving
each to its thread (the last shape of auto-pipelining: N round trips become one, N writes
one, and the server reads them in one pass). What it keeps:

- each reply goes to the thread that sent its command, and an error reply (``WRONGTYPE``,
  ``NOSCRIPT``) is a value there, raised by that thread alone;
- a batch that fails as a whole (the server closed the connection, a socket timeout) gives
  each of its threads an error of its own, and the connection is dropped, never reused with
  replies still on their way: the next batch connects afresh. No command is ever sent twice
  (it may have run before its reply was lost); a connection the server closed while idle (a
  restart, ``CLIENT KILL``) is seen before anything is written, and replaced;
- a thread waits at most its timeout (the socket timeout) for its reply, wherever its
  commands are; one that gives up while they are in flight has its reply read and dropped.

The driver sends here only what may share a connection (see
:func:`redkit.drivers.redis.RedisDriver`): never a transaction, a blocking or pub/sub command.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading
import weakref
from typing import Any

import redis
from redis import exceptions as rx

from redkit.core.errors import BackendError, BackendTimeout

__all__ = ["MAX_BATCH_COMMANDS", "SharedConnection", "pack_command", "shareable"]

hiredis: Any
try:
    import hiredis
except ImportError:  # pragma: no cover - without hiredis every command takes redis-py's path
    hiredis = None

# RESP3 push messages, as hiredis 3.2 and later tell them apart from replies.
_PUSH = getattr(hiredis, "PushNotification", None)

#: Commands written in one batch at most; the rest wait for the next batch.
MAX_BATCH_COMMANDS = 512

# What our hiredis reader answers while a reply is incomplete (never a reply itself).
_MORE = object()
_CONNECTION_CLASSES = (redis.Connection, redis.SSLConnection, redis.UnixDomainSocketConnection)

# Linux bounds a blocking socket's waits itself (SO_RCVTIMEO): one syscall per send or receive,
# where a socket with a Python timeout polls before each.
_KERNEL_TIMEOUTS = sys.platform.startswith("linux")

# A request's states, changed only under the shared connection's lock.
_QUEUED, _LEADING, _SENT, _DONE = range(4)


def shareable(client: redis.Redis) -> bool:
    """Whether ``client``'s commands can go through a :class:`SharedConnection`.

    Only a plain client on the standard pool and connection classes, parsing with hiredis,
    without client-side caching, with the connection settings this module knows to replay
    (those redis-py applies when it connects); anything else keeps redis-py's own path.
    """
    if hiredis is None or not redis.utils.HIREDIS_AVAILABLE:
        return False
    pool = getattr(client, "connection_pool", None)
    if type(pool) is not redis.ConnectionPool or getattr(client, "connection", None) is not None:
        return False  # a blocking pool, a single-connection client: their own rules apply
    if getattr(pool, "cache", None) is not None:
        return False
    if pool.connection_class not in _CONNECTION_CLASSES:
        return False
    kwargs = pool.connection_kwargs
    return kwargs.get("credential_provider") is None and kwargs.get("cache") is None


def pack_command(args: tuple[Any, ...]) -> bytes | None:
    """``args`` as one RESP command, or ``None`` when hiredis cannot pack an argument.

    hiredis packs str (UTF-8), bytes, int and float (as ``repr``), as redis-py does when it
    packs with hiredis; ``None`` for anything else (a bool, ``None``, a memoryview), which
    then goes by redis-py's path, to be packed or refused with its ``DataError``.
    """
    try:
        packed: bytes = hiredis.pack_command(args)
    except TypeError:
        return None
    return packed


class _Request:
    """One thread's packed commands waiting in the queue, and what came back for them."""

    __slots__ = ("count", "error", "packed", "replies", "signal", "state")

    def __init__(self, packed: bytes, count: int) -> None:
        self.packed = packed
        self.count = count
        self.replies: list[Any] | None = None
        self.error: BackendError | None = None
        self.state = _QUEUED
        # Held until the reply (or the lead) is handed over: the cheapest wake-up there is.
        self.signal = threading.Lock()
        self.signal.acquire()


class SharedConnection:
    """One connection of ``client``'s pool, shared by every thread, its commands pipelined.

    Args:
        client: a redis-py client for which :func:`shareable` is true.

    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        timeout = self._pool.connection_kwargs.get("socket_timeout")
        #: Seconds a thread waits for its reply at most (``None``: as long as it takes).
        self.wait: float | None = timeout
        self._lock = threading.Lock()
        self._busy = False
        self._queue: list[_Request] = []
        self._conn: Any = None
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._buffer = bytearray(65536)
        self._poller = select.poll()  # readable between batches: the socket is not clean
        self._pid = os.getpid()  # close() gives back only a connection of this process
        # A child process must not write on its parent's socket, nor wait on a lock that a
        # thread of the parent held at the fork.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_in_child(ref))

    # -- the calling thread ----------------------------------------------------------------

    def run(self, packed: bytes, count: int) -> list[Any]:
        """Send ``count`` packed commands; return their replies (error replies as values).

        Raises:
            BackendError: the batch failed as a whole (connection lost, timeout).

        """
        lock = self._lock
        with lock:
            if self._busy:
                request = _Request(packed, count)
                self._queue.append(request)
            else:
                self._busy = True
                request = None
        if request is None:  # the connection was free: no queue, no wake-up
            try:
                return self._exchange_alone(packed, count)
            finally:
                self._hand_over()
        return self._await(request)

    def _await(self, request: _Request) -> list[Any]:
        wait = self.wait
        signalled = request.signal.acquire(timeout=-1 if wait is None else wait)
        if not signalled:
            with self._lock:
                if request.state == _QUEUED:  # never written: it just leaves the queue
                    self._queue.remove(request)
                    raise BackendTimeout(f"Redis did not answer within {wait} s (queued)")
                if request.state == _SENT:  # in flight: its reply will be read and dropped
                    request.state = _DONE
                    raise BackendTimeout(f"Redis did not answer within {wait} s")
            # _LEADING or _DONE: the hand-over raced the timeout; carry on as signalled.
        if request.state == _LEADING:
            self._lead(request)
        if request.error is not None:
            raise request.error
        assert request.replies is not None
        return request.replies

    def _hand_over(self) -> None:
        """Give the connection to the first queued thread, or mark it free."""
        with self._lock:
            if not self._queue:
                self._busy = False
                return
            first = self._queue[0]
            first.state = _LEADING
        first.signal.release()

    def _lead(self, own: _Request) -> None:
        """Write every queued request (``own`` among them) at once and deliver the replies."""
        with self._lock:
            queue = self._queue
            taken = total = 0
            while taken < len(queue) and (
                not taken or total + queue[taken].count <= MAX_BATCH_COMMANDS
            ):
                total += queue[taken].count
                taken += 1
            batch = queue[:taken]
            del queue[:taken]
            for request in batch:
                if request is not own:  # the leader's own stays _LEADING: nobody wakes it
                    request.state = _SENT
        try:
            self._exchange_batch(batch)
        finally:
            self._hand_over()

    # -- the I/O ---------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        """The connection's socket, connected and checked, ready for a batch."""
        conn = self._conn
        if conn is None:
            conn = self._conn = self._pool.get_connection()
        sock: socket.socket | None = conn._sock
        if sock is not None and sock is self._sock and self._poller.poll(0):
            # Readable between batches: the server closed it (a restart, CLIENT KILL) or sent
            # what nobody asked for. Nothing of ours is on it: a new connection is safe, where
            # a command re-sent after its reply was lost might be applied twice.
            self._drop()
            sock = None
        if sock is None:
            conn.connect()  # redis-py's handshake: AUTH, SELECT, HELLO, client name
            sock = conn._sock
        assert sock is not None
        ready: socket.socket = sock
        if ready is not self._sock:
            timeout = conn.socket_timeout
            if _KERNEL_TIMEOUTS and timeout and type(ready) is socket.socket:
                # Only this class reads and writes it from now on (redis-py only closes it).
                seconds = int(timeout)
                bound = struct.pack("ll", seconds, int((timeout - seconds) * 1e6) or 1)
                ready.settimeout(None)
                ready.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, bound)
                ready.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bound)
            # A fresh socket: a fresh reader, so no half reply of the old one lingers.
            self._reader = hiredis.Reader(
                protocolError=rx.InvalidResponse,
                replyError=conn._parser.parse_error,
                notEnoughData=_MORE,
            )
            self._poller = select.poll()
            self._poller.register(ready, select.POLLIN)
            self._sock = ready
        return ready

    def _drop(self) -> None:
        # Replies may still be on their way: this socket is never read again.
        self._sock = None
        self._reader = None
        if self._conn is not None:
            self._conn.disconnect()

    def _exchange_alone(self, packed: bytes, count: int) -> list[Any]:
        try:
            sock = self._connect()
            _send(sock, packed)
            return [self._read(sock) for _ in range(count)]
        except Exception as exc:
            self._drop()
            raise _translate(exc) from exc
        except BaseException:
            self._drop()
            raise

    def _exchange_batch(self, batch: list[_Request]) -> None:
        delivered = 0
        try:
            sock = self._connect()
            _send(sock, b"".join([request.packed for request in batch]))
            for request in batch:
                replies = [self._read(sock) for _ in range(request.count)]
                delivered += 1
                self._deliver(request, replies, None)
        except BaseException as exc:
            self._drop()
            for request in batch[delivered:]:
                self._deliver(request, None, _translate(exc))  # an error for each thread
            if not isinstance(exc, Exception):
                raise

    def _deliver(
        self, request: _Request, replies: list[Any] | None, error: BackendError | None
    ) -> None:
        with self._lock:
            state = request.state
            if state == _DONE:
                return  # its thread gave up waiting: the reply was read, and is dropped
            request.state = _DONE
            request.replies, request.error = replies, error
        if state == _SENT:
            request.signal.release()
        # _LEADING: the leader's own request; it is not waiting.

    def _read(self, sock: socket.socket) -> Any:
        reader = self._reader
        reply = reader.gets()
        while reply is _MORE:
            try:
                size = sock.recv_into(self._buffer)
            except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: SO_RCVTIMEO
                raise rx.TimeoutError("Timeout reading from socket") from exc
            except OSError as exc:
                raise rx.ConnectionError(f"Error while reading from socket: {exc}") from exc
            if not size:
                raise rx.ConnectionError("Connection closed by server.")
            reader.feed(self._buffer, 0, size)
            reply = reader.gets()
        if _PUSH is not None and isinstance(reply, _PUSH):
            # RESP3 pushes (invalidations, maintenance notices) are redis-py's to handle.
            self._conn._parser.handle_push_response(reply)
            return self._read(sock)
        return reply

    def close(self) -> None:
        """Close the connection and give it back to its pool; the next use takes one again.

        A thread still reading on it sees the connection closed: it was idle or not, its
        commands go once more on a new connection, as after a server restart.
        """
        with self._lock:
            conn, self._conn = self._conn, None
            self._sock = None
            self._reader = None
        if conn is not None and self._pid == os.getpid():
            conn.disconnect()
            self._pool.release(conn)


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except (TimeoutError, BlockingIOError) as exc:  # BlockingIOError: SO_SNDTIMEO
        raise rx.TimeoutError(f"Timeout writing to socket: {exc}") from exc
    except OSError as exc:
        raise rx.ConnectionError(f"Error while writing to socket: {exc}") from exc


def _translate(exc: BaseException) -> BackendError:
    from redkit.drivers.redis import translate_error  # the one mapping, kept in redis.py

    if isinstance(exc, Exception):
        return translate_error(exc)
    return BackendError(f"{type(exc).__name__}: interrupted")


def _forget_in_child(ref: weakref.ReferenceType[SharedConnection]) -> None:
    shared = ref()
    if shared is not None:
        shared._lock = threading.Lock()
        shared._busy = False
        shared._queue = []
        shared._conn = None  # the parent's; the child's pool gives the child its own
        shared._pid = os.getpid()
        shared._sock = None
        shared._reader = None
