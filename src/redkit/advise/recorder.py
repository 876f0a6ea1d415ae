"""A sampled trace of what a cache and a rate limiter really did, for ``redkit advise``.

Give a recorder to a facade and it writes down the events of a sample of its keys::

    recorder = TraceRecorder.to_file("cache-trace.jsonl", sample=0.01, secret=KEY)
    cache = Cache(redis, namespace="users", trace=recorder)
    limiter = Ratelimit(redis, FixedWindow(100, "1 m"), trace=recorder)

then ``redkit advise cache cache-trace.jsonl`` (or :func:`redkit.advise.read_recorded`) reads
it. :meth:`TraceRecorder.to_stream` writes to a Redis stream instead, bounded by ``MAXLEN``,
which several processes can share.

**Sampling is per key.** A hash of the key decides whether the key is recorded, and a recorded
key is recorded for *every* event: its reads, loads, writes and deletes. Sampling events at
random would keep 1 % of the reads of every key, and a key read twice would almost never show
both reads, so every sampled read would look like a first read (a miss) and the hit ratio
could not be replayed. Per key, the sample holds whole key histories: the hit ratio, the
reuse distance and each key's time between writes are those of the full traffic (for a
uniform 1 % of the keys), and only totals (requests per second, bytes held) shrink by the
sample rate. Rate-limit decisions are sampled per identifier likewise, so a sampled client's
rate is its full rate. Invalidations that concern many keys at once (a tag, a namespace) are
always recorded.

**Keys are hashed by default**: ``HMAC-SHA256(secret, namespace, NUL, key)``, the first 16
hex digits, so no key (user ids, emails) leaves the process; the namespace (the cache's
``namespace``, the limiter's ``prefix``) stays readable, since the analysis groups by it.
Tags are hashed the same way. The same secret gives the same hashes and the same sample:
give every process (and every restart) the same ``secret`` so that their traces join up; by
default each recorder draws a secret of its own. ``hash_keys=False`` writes the keys as they
are, **exposing them** to whoever reads the trace.

**Never on the request path.** A facade's call only appends the event to a bounded buffer in
memory; a daemon thread of the recorder writes the buffer out every ``flush_interval``
seconds or every ``batch`` events (one pipelined ``XADD`` per batch for a stream). When the
buffer is full, new events are dropped and counted (:attr:`TraceRecorder.dropped`); when the
file or Redis fails, the events are dropped, one warning is logged, and the caller never sees
an error. :meth:`TraceRecorder.close` (or ``with``, or the end of the interpreter) writes what
is left. A forked child (a pre-forking server's worker) gets a writing thread of its own.

The format, one JSON object per line (a stream entry holds the same fields, as strings, with
absent ones left out). First a header, written when a recorder starts (a file that several
runs appended to has several)::

    {"redkit_trace": 1, "sample": 0.01, "hashed": true, "started": 1718000000.0,
     "keys_id": "9f86d081884c7d65"}

``keys_id`` is a digest of the secret: two recorders with the same one hash keys alike. Then
one line per event::

    {"ts": 1718000000.25, "kind": "cache", "op": "hit", "ns": "users",
     "key": "3f79bb7b435b0532", "size": 412, "ttl": 300.0, "load_ms": 12.0, "remaining": null}

- ``ts``: seconds since the epoch; ``kind``: ``"cache"`` or ``"ratelimit"``;
- ``op``: for a cache ``"hit"``, ``"miss"`` (a read), ``"load"`` (the loader ran, after a
  miss or to refresh), ``"write"`` (``set``, ``set_many``, ``write_through``), ``"delete"``,
  ``"invalidate"``; for a rate limiter ``"allow"`` or ``"deny"``;
- ``ns``: the cache's namespace or the limiter's prefix; ``key``: the (hashed) key or
  identifier (``null`` for an invalidation of a namespace);
- ``size``: bytes of the stored entry (hits read from Redis, loads and writes), else
  ``null``; ``ttl``: the entry's time to live in seconds; ``load_ms``: how long the loader took
  (on a load, and on a hit the load time of the value it found);
- ``remaining``: what the identifier has left after a decision;
- only where they apply: ``tags`` (a list of hashed tags, on loads, writes and hits of tagged
  entries), ``scope`` (on an invalidation: ``"tag"``, whose hash is ``key``, ``"namespace"``
  for ``bump_version``, ``"pattern"`` for ``delete_pattern``), ``limit`` and ``reason`` (on a
  decision: the limit that applied, and ``"timeout"``, ``"cacheBlock"`` or ``"denyList"`` when
  the answer was not the algorithm's).
"""

from __future__ import annotations

import atexit
import collections
import gzip
import hashlib
import hmac
import json
import logging
import math
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring_ascii
from typing import IO, Any, Literal, NamedTuple, Protocol

from redkit.core.driver import SyncDriver, as_backend
from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import Pipeline, command

__all__ = ["FORMAT_VERSION", "TraceRecorder"]

log = logging.getLogger("redkit.advise")

#: The ``redkit_trace`` number of the header line: the version of the format.
FORMAT_VERSION = 1
#: The shortest secret accepted (as for the cache's signing secret).
MIN_SECRET_BYTES = 16
#: How many keys' sampling decisions are remembered (then forgotten all at once, and redone).
_MEMO_SIZE = 65_536
#: Seconds the stream's writes may wait for Redis.
_STREAM_TIMEOUT = 2.0

CacheOp = Literal["hit", "miss", "load", "write", "delete"]
Scope = Literal["tag", "namespace", "pattern"]


class _Event(NamedTuple):
    """One event, as the request path leaves it in the buffer (formatted off the path)."""

    ts: float
    kind: str
    op: str
    ns: str
    key: str | None
    size: int | None = None
    ttl: float | None = None
    load_ms: float | None = None
    remaining: int | None = None
    tags: tuple[str, ...] = ()
    scope: str | None = None
    limit: int | None = None
    reason: str | None = None


def _event_dict(event: _Event) -> dict[str, Any]:
    """The event as the JSON object of its line."""
    line: dict[str, Any] = {
        "ts": round(event.ts, 6),
        "kind": event.kind,
        "op": event.op,
        "ns": event.ns,
        "key": event.key,
        "size": event.size,
        "ttl": event.ttl,
        "load_ms": None if event.load_ms is None else round(event.load_ms, 3),
        "remaining": event.remaining,
    }
    if event.tags:
        line["tags"] = list(event.tags)
    if event.scope is not None:
        line["scope"] = event.scope
    if event.limit is not None:
        line["limit"] = event.limit
    if event.reason is not None:
        line["reason"] = event.reason
    return line


def _quoted(text: str | None) -> str:
    return "null" if text is None else encode_basestring_ascii(text)


def _number(value: float | None) -> str:
    return "null" if value is None else repr(value)


def _event_line(event: _Event) -> str:
    """The event's JSON line, as :func:`_event_dict` and ``json.dumps`` would write it.

    Built by hand: the thread writes thousands of events a second at high sample rates, and
    ``json.dumps`` of a dict took most of its time.
    """
    load_ms = None if event.load_ms is None else round(event.load_ms, 3)
    line = (
        f'{{"ts":{round(event.ts, 6)!r},"kind":"{event.kind}","op":"{event.op}",'
        f'"ns":{_quoted(event.ns)},"key":{_quoted(event.key)},"size":{_number(event.size)},'
        f'"ttl":{_number(event.ttl)},"load_ms":{_number(load_ms)},'
        f'"remaining":{_number(event.remaining)}'
    )
    if event.tags or event.scope is not None or event.limit is not None or event.reason:
        extra = json.dumps(
            {k: v for k, v in _event_dict(event).items() if k in _EXTRA}, separators=(",", ":")
        )
        return line + "," + extra[1:]
    return line + "}"


#: The fields of an event written only where they apply.
_EXTRA = frozenset({"tags", "scope", "limit", "reason"})


class _Sink(Protocol):
    """Where a recorder's events go: called from its writing thread only."""

    def write(self, header: dict[str, Any] | None, events: list[_Event]) -> None:
        """Write the header (when given) and the events; raise when they could not be."""
        ...

    def close(self) -> None:
        """Release the file or the connection."""
        ...


class _FileSink:
    """JSON lines appended to a file (gzip-compressed when its name ends in ``.gz``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.name = os.fspath(path)
        # Opened here, so that a path that cannot be written fails when the recorder is made.
        self._file: IO[str]
        if self.name.endswith(".gz"):
            self._file = gzip.open(self.name, "at", encoding="utf-8")  # noqa: SIM115 - see close
        else:
            self._file = open(self.name, "a", encoding="utf-8")  # noqa: SIM115 - see close

    def write(self, header: dict[str, Any] | None, events: list[_Event]) -> None:
        lines = [json.dumps(header, separators=(",", ":"))] if header is not None else []
        lines.extend(_event_line(e) for e in events)
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _stream_fields(values: dict[str, Any]) -> list[str | int | float]:
    """A dict as the field-value pairs of ``XADD`` (absent values left out, lists as JSON)."""
    fields: list[str | int | float] = []
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, (list, tuple)):
            value = json.dumps(list(value), separators=(",", ":"))
        fields.extend((name, value))
    return fields


class _StreamSink:
    """Entries added to a Redis stream, trimmed to about ``maxlen`` entries."""

    def __init__(self, redis: object, stream: str, maxlen: int, approximate: bool) -> None:
        if not isinstance(stream, str) or not stream:
            raise InvalidArgumentError(f"stream must be a non-empty str, got {stream!r}")
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise InvalidArgumentError(f"maxlen must be a positive int, got {maxlen!r}")
        self.name = stream
        self._backend = as_backend(redis)
        # A URL makes a connection of the recorder's own, closed with it; a connection or a
        # client given is the application's, and stays open.
        self._owned = isinstance(redis, str)
        self._trim: tuple[str, ...] = ("MAXLEN", "~") if approximate else ("MAXLEN",)
        self._maxlen = maxlen
        # Asked for now (it connects on first use), so that an asyncio client fails here.
        self._driver: SyncDriver = self._backend.sync_driver(timeout=_STREAM_TIMEOUT)

    def write(self, header: dict[str, Any] | None, events: list[_Event]) -> None:
        entries = [header] if header is not None else []
        entries.extend(_event_dict(e) for e in events)
        if not entries:
            return
        adds = tuple(
            command("XADD", self.name, *self._trim, self._maxlen, "*", *_stream_fields(entry))
            for entry in entries
        )
        replies = self._driver.execute(Pipeline(adds))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def close(self) -> None:
        close = getattr(self._backend, "close", None)
        if self._owned and callable(close):
            close()


def _secret(secret: str | bytes | None) -> bytes:
    if secret is None:
        return secrets.token_bytes(32)
    key = secret.encode() if isinstance(secret, str) else secret
    if not isinstance(key, bytes) or len(key) < MIN_SECRET_BYTES:
        raise InvalidArgumentError(
            f"secret must be a str or bytes of at least {MIN_SECRET_BYTES} bytes "
            "(or None: a random one)"
        )
    return key


def _sample(sample: float) -> float:
    if (
        isinstance(sample, bool)
        or not isinstance(sample, (int, float))
        or not math.isfinite(sample)
        or not 0 < sample <= 1
    ):
        raise InvalidArgumentError(
            f"sample must be a share of keys above 0 and at most 1 (0.01 is 1 %), got {sample!r}"
        )
    return float(sample)


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgumentError(f"{name} must be a positive number, got {value!r}")
    return value


#: A memo entry for a key that is not sampled (``None`` is a sampled key's raw name, never).
_NOT_SAMPLED = ""


class TraceRecorder:
    """Writes a sampled trace of cache and rate-limit events, off the request path.

    Make one with :meth:`to_file` or :meth:`to_stream`, and pass it as ``trace=`` to
    :class:`~redkit.Cache`, :class:`~redkit.AsyncCache`, :class:`~redkit.Ratelimit` or
    :class:`~redkit.AsyncRatelimit` (one recorder may serve several). See the module's
    documentation for the format, the sampling and the hashing.

    Args:
        sink: where events go (use the two constructors).
        sample: the share of keys (and identifiers) recorded, above 0 and at most 1.
        hash_keys: write keys as HMAC digests (the default) rather than as they are.
        secret: the HMAC key, which also decides the sample (at least 16 bytes); ``None``
            draws a random one, so give the same secret to every process that should agree.
        buffer: how many events may wait in memory; past that, new ones are dropped.
        flush_interval: seconds between two writes of the buffer.
        batch: a write starts early once this many events wait (and takes at most this many
            per pipelined ``XADD``).
        clock: the time of each event, in seconds since the epoch (``time.time``).

    """

    def __init__(
        self,
        sink: _Sink,
        *,
        sample: float = 0.01,
        hash_keys: bool = True,
        secret: str | bytes | None = None,
        buffer: int = 100_000,
        flush_interval: float = 0.5,
        batch: int = 1_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(buffer, bool) or not isinstance(buffer, int) or buffer < 1:
            raise InvalidArgumentError(f"buffer must be a positive int, got {buffer!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InvalidArgumentError(f"batch must be a positive int, got {batch!r}")
        self.sample = _sample(sample)
        self.hash_keys = bool(hash_keys)
        self._secret = _secret(secret)
        # A key is sampled when the last 8 bytes of its digest, as a number, fall below this.
        self._threshold = int(self.sample * 2**64)
        self._sink = sink
        self._clock = clock
        self._capacity = buffer
        self._batch = batch
        self._interval = _positive(flush_interval, "flush_interval")
        self._memo: dict[tuple[str, str], str] = {}
        self._buffer: collections.deque[_Event] = collections.deque()
        self._recorded = 0
        self._dropped = 0
        self._written = 0
        self._header: dict[str, Any] | None = {
            "redkit_trace": FORMAT_VERSION,
            "sample": self.sample,
            "hashed": self.hash_keys,
            "started": round(clock(), 6),
            "keys_id": self.keys_id,
        }
        self._failing = False
        self._closed = False
        self._start()
        atexit.register(self.close)
        _LIVE.add(self)

    def _start(self) -> None:
        self._write_lock = threading.Lock()  # one writer at a time: the thread, or flush()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redkit-trace", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        """In a forked child (a pre-forking server's worker): a writing thread of its own."""
        if self._closed:
            return
        self._buffer.clear()  # the parent's events: the parent writes them
        self._start()

    @classmethod
    def to_file(
        cls,
        path: str | os.PathLike[str],
        *,
        sample: float = 0.01,
        hash_keys: bool = True,
        secret: str | bytes | None = None,
        buffer: int = 100_000,
        flush_interval: float = 0.5,
        batch: int = 1_000,
    ) -> TraceRecorder:
        """A recorder that appends JSON lines to ``path`` (gzip when it ends in ``.gz``).

        The file is opened now (an unwritable path fails here, not later) and appended to, so
        several runs add to one trace, each after a header of its own.
        """
        sink = _FileSink(path)
        try:
            return cls(
                sink, sample=sample, hash_keys=hash_keys, secret=secret, buffer=buffer,
                flush_interval=flush_interval, batch=batch,
            )  # fmt: skip
        except BaseException:
            sink.close()
            raise

    @classmethod
    def to_stream(
        cls,
        redis: object,
        stream: str = "redkit:trace",
        *,
        maxlen: int = 100_000,
        approximate: bool = True,
        sample: float = 0.01,
        hash_keys: bool = True,
        secret: str | bytes | None = None,
        buffer: int = 100_000,
        flush_interval: float = 0.5,
        batch: int = 1_000,
    ) -> TraceRecorder:
        """A recorder that adds entries to the Redis stream ``stream``, trimmed to ``maxlen``.

        ``redis`` is a :class:`redkit.Connection`, a Redis URL or a redis-py (blocking) client
        (the recorder writes from a thread, so an asyncio client will not do: give the URL);
        a URL gives the recorder a connection of its own, closed by :meth:`close`. Trimming is
        ``MAXLEN ~`` (cheap; a few more entries than ``maxlen`` may stay) unless
        ``approximate=False``.
        """
        sink = _StreamSink(redis, stream, maxlen, approximate)
        return cls(
            sink, sample=sample, hash_keys=hash_keys, secret=secret, buffer=buffer,
            flush_interval=flush_interval, batch=batch,
        )  # fmt: skip

    # -- what the facades call -------------------------------------------------------------

    @property
    def keys_id(self) -> str:
        """A digest of the secret: recorders that hash keys alike have the same one."""
        return hmac.new(self._secret, b"redkit.trace.keys", hashlib.sha256).hexdigest()[:16]

    def key_of(self, namespace: str, key: str) -> str | None:
        """``key`` as the trace writes it (hashed, or as it is), or ``None`` when not sampled."""
        memo_key = (namespace, key)
        found = self._memo.get(memo_key)
        if found is None:
            digest = hmac.new(self._secret, f"{namespace}\0{key}".encode(), hashlib.sha256).digest()
            if int.from_bytes(digest[24:], "big") >= self._threshold:
                found = _NOT_SAMPLED
            else:
                found = digest[:8].hex() if self.hash_keys else key
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()  # cheaper than an LRU, and a decision is quick to redo
            self._memo[memo_key] = found
        return found or None

    def _tag(self, namespace: str, tag: str) -> str:
        if not self.hash_keys:
            return tag
        message = f"{namespace}\0#tag\0{tag}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:16]

    def _put(self, event: _Event) -> None:
        if len(self._buffer) >= self._capacity or self._closed:
            self._dropped += 1
            return
        self._buffer.append(event)
        self._recorded += 1
        if len(self._buffer) == self._batch:
            self._wake.set()

    def record_cache(
        self,
        op: CacheOp,
        namespace: str,
        key: str,
        *,
        size: int | None = None,
        ttl: float | None = None,
        load_ms: float | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Record one cache event of ``key`` in ``namespace``, if the key is sampled."""
        name = self.key_of(namespace, key)
        if name is None:
            return
        hashed_tags = tuple(self._tag(namespace, t) for t in tags) if tags else ()
        self._put(
            _Event(
                self._clock(), "cache", op, namespace, name, size, ttl, load_ms, None, hashed_tags
            )
        )

    def record_invalidation(self, namespace: str, scope: Scope, tag: str | None = None) -> None:
        """Record an invalidation of many keys: of a tag's, or of a whole namespace's."""
        key = self._tag(namespace, tag) if tag is not None else None
        self._put(_Event(self._clock(), "cache", "invalidate", namespace, key, scope=scope))

    def record_decision(
        self,
        prefix: str,
        identifier: str | int,
        success: bool,
        remaining: int,
        limit: int,
        reason: str | None = None,
    ) -> None:
        """Record one rate-limit decision for ``identifier``, if it is sampled."""
        name = self.key_of(prefix, str(identifier))
        if name is None:
            return
        op = "allow" if success else "deny"
        event = _Event(
            self._clock(), "ratelimit", op, prefix, name, remaining=remaining, limit=limit,
            reason=reason,
        )  # fmt: skip
        self._put(event)

    # -- counters and lifecycle --------------------------------------------------------------

    @property
    def recorded(self) -> int:
        """Events taken into the buffer so far."""
        return self._recorded

    @property
    def written(self) -> int:
        """Events written to the file or stream so far."""
        return self._written

    @property
    def dropped(self) -> int:
        """Events lost: the buffer was full, or the file or Redis failed."""
        return self._dropped

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        with self._write_lock:
            while True:
                events: list[_Event] = []
                buffer = self._buffer
                try:
                    while len(events) < self._batch:
                        events.append(buffer.popleft())
                except IndexError:
                    pass
                if not events and self._header is None:
                    return
                self._write(events)
                if len(events) < self._batch:
                    return

    def _write(self, events: list[_Event]) -> None:
        try:
            self._sink.write(self._header, events)
        except Exception as exc:  # the caller's requests never see a failing trace
            self._dropped += len(events)
            if not self._failing:
                self._failing = True
                log.warning(
                    "trace recorder: events dropped, the trace cannot be written (%s); "
                    "retrying with the next ones, without another warning: %s",
                    getattr(self._sink, "name", "?"), exc,
                )  # fmt: skip
            return
        self._header = None
        self._written += len(events)
        if self._failing:
            self._failing = False
            log.info("trace recorder: writing again (%d events dropped so far)", self._dropped)

    def flush(self) -> None:
        """Write every buffered event now, and wait until it is written (or dropped)."""
        self._drain()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is buffered, stop the thread and close the file or connection.

        Events recorded after this are dropped (and counted). Safe to call twice.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        _LIVE.discard(self)
        self._wake.set()
        self._thread.join(timeout)
        self._drain()
        with self._write_lock:
            self._sink.close()

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = getattr(self._sink, "name", "?")
        return (
            f"TraceRecorder({where!r}, sample={self.sample}, hash_keys={self.hash_keys}, "
            f"recorded={self._recorded}, dropped={self._dropped})"
        )


#: Recorders not closed yet: a forked child restarts their threads (threads do not survive).
_LIVE: weakref.WeakSet[TraceRecorder] = weakref.WeakSet()


def _restart_after_fork() -> None:
    for recorder in list(_LIVE):
        recorder._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_restart_after_fork)
