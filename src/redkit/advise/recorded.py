"""Read a trace that :class:`~redkit.advise.recorder.TraceRecorder` wrote, from a file or a stream.

The recorder writes what the cache *did* (hits, misses, loads); the analyses want what it was
*asked* (reads and writes), and re-derive hits under each candidate setting. So:

- a ``hit`` or a ``miss`` is an :attr:`Op.READ <redkit.advise.trace.Op.READ>`, with the
  attribute ``result`` (``"hit"`` or ``"miss"``: the real cache's answer). A miss takes its
  size, time to live and ``load_ms`` attribute from the load that followed it; a read without
  a size takes the last size seen for its key;
- a ``load`` is no request of its own (the cache made it, not a caller);
- a ``write`` or a ``delete`` is an :attr:`Op.WRITE <redkit.advise.trace.Op.WRITE>`;
- an ``invalidate`` is a write of each key it reached: for a tag, every key of the namespace
  last loaded or written with that tag; for a namespace (``bump_version``) or a pattern
  (``delete_pattern``, whose pattern is not recorded), every key of the namespace seen so far;
- a rate-limit decision is an :attr:`Op.OTHER <redkit.advise.trace.Op.OTHER>` in the namespace
  of the limiter's prefix, whose key and client are the (hashed) identifier, with the
  attributes ``decision`` (``"allow"`` or ``"deny"``), ``remaining`` and, when the answer was
  not the algorithm's, ``reason``.

Lines that are not events (not JSON, a field of the wrong type, an unknown ``op``) are counted
and the first few kept with their line number and the reason, and reading goes on. The headers
are kept in :attr:`RecordedTrace.headers`; :attr:`RecordedTrace.sample` is the share of keys
the trace holds, to scale totals (requests per second, bytes) back to the whole traffic.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

from redkit.advise.recorder import FORMAT_VERSION
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from redkit.core.driver import as_backend
from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import command
from redkit.core.replies import as_text

__all__ = ["FORMAT", "RECORDED_ATTRIBUTES", "RecordedTrace", "read_recorded"]

#: The :attr:`Trace.format` of a recorded trace.
FORMAT = "redkit-trace"
#: The attributes a recorded trace's requests carry (see the module's documentation).
RECORDED_ATTRIBUTES = ("result", "load_ms", "decision", "remaining", "reason")

_CACHE_OPS = frozenset({"hit", "miss", "load", "write", "delete", "invalidate"})
_RATELIMIT_OPS = frozenset({"allow", "deny"})
_SCOPES = frozenset({"tag", "namespace", "pattern"})
#: How stream fields (all strings) are typed back.
_STREAM_TYPES: dict[str, Any] = {
    "ts": float, "size": int, "ttl": float, "load_ms": float, "remaining": int, "limit": int,
    "redkit_trace": int, "sample": float, "started": float,
}  # fmt: skip
#: Stream entries read per XRANGE.
_PAGE = 10_000


@dataclass
class RecordedTrace(Trace):
    """A :class:`~redkit.advise.trace.Trace` read from a recorder's output, with its headers."""

    #: The share of keys recorded, when every header agrees on it (else ``None``).
    sample: float | None = None
    #: Whether keys are hashed, when every header agrees (else ``None``).
    hashed: bool | None = None
    #: The header of each recorder that wrote to the trace, in order.
    headers: list[dict[str, Any]] = field(default_factory=list)


class _Bad(ValueError):
    """A line that is no event: the message says why."""


def _number(event: dict[str, Any], name: str, *, integer: bool = False) -> Any:
    value = event.get(name)
    if value is None:
        return None
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise _Bad(f"{name} must be {kind} or null, got {value!r}")
    if not math.isfinite(value) or (name != "remaining" and value < 0):
        raise _Bad(f"{name} must be {kind} >= 0, got {value!r}")
    return value


def _text(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if not isinstance(value, str):
        raise _Bad(f"{name} must be a string, got {value!r}")
    return value


class _Reader:
    """Turns events into requests, keeping what later events need (sizes, tags, misses)."""

    def __init__(self, source: str) -> None:
        self.builder = TraceBuilder(source, FORMAT, attributes=RECORDED_ATTRIBUTES)
        self.headers: list[dict[str, Any]] = []
        self.events = 0
        self._sizes: dict[tuple[str, str], int] = {}
        self._pending: dict[tuple[str, str], tuple[int, float, str]] = {}  # misses to complete
        self._keys: dict[str, set[str]] = {}
        self._tags: dict[tuple[str, str], tuple[str, ...]] = {}  # (ns, key) -> its tags
        self._tagged: dict[tuple[str, str], set[str]] = {}  # (ns, tag) -> its keys

    def line(self, number: int, text: str) -> None:
        """Read one JSON line."""
        if not text.strip():
            return
        try:
            event = json.loads(text)
        except ValueError as exc:
            self.builder.reject(number, f"not JSON: {exc}", text)
            return
        self.event(number, event, text)

    def event(self, number: int, event: Any, text: str) -> None:
        """Read one event (or header) as a dict."""
        self.events += 1
        try:
            if not isinstance(event, dict):
                raise _Bad("not a JSON object")
            if "redkit_trace" in event:
                self._header(event)
            else:
                self._event(number, event)
        except _Bad as exc:
            self.builder.reject(number, str(exc), text)

    def _header(self, header: dict[str, Any]) -> None:
        version = header["redkit_trace"]
        if version != FORMAT_VERSION:
            raise _Bad(
                f"trace format {version!r} is not format {FORMAT_VERSION}: read it with the "
                "redkit version that recorded it (or upgrade redkit)"
            )
        self.headers.append(header)

    def _event(self, number: int, event: dict[str, Any]) -> None:
        ts = event.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise _Bad(f"ts must be a number of seconds since the epoch, got {ts!r}")
        kind, op, ns = event.get("kind"), event.get("op"), _text(event, "ns")
        if kind == "cache":
            if op not in _CACHE_OPS:
                raise _Bad(f"op {op!r} is not a cache event (one of {sorted(_CACHE_OPS)})")
            self._cache(number, float(ts), op, ns, event)
        elif kind == "ratelimit":
            if op not in _RATELIMIT_OPS:
                raise _Bad(f"op {op!r} is not a rate-limit decision (allow or deny)")
            self._decision(number, float(ts), op, ns, event)
        else:
            raise _Bad(f"kind must be cache or ratelimit, got {kind!r}")

    def _decision(self, number: int, ts: float, op: str, ns: str, event: dict[str, Any]) -> None:
        key = _text(event, "key")
        remaining = _number(event, "remaining", integer=True)
        reason = event.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise _Bad(f"reason must be a string or null, got {reason!r}")
        attributes = {"decision": op}
        if remaining is not None:
            attributes["remaining"] = str(remaining)
        if reason is not None:
            attributes["reason"] = reason
        self.builder.add(Request(ts, number, Op.OTHER, key, ns, client=key, attributes=attributes))

    def _cache(self, number: int, ts: float, op: str, ns: str, event: dict[str, Any]) -> None:
        size = _number(event, "size", integer=True)
        ttl = _number(event, "ttl")
        load_ms = _number(event, "load_ms")
        tags = event.get("tags")
        if tags is not None and (
            not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)
        ):
            raise _Bad(f"tags must be a list of strings, got {tags!r}")
        if op == "invalidate":
            self._invalidate(number, ts, ns, event)
            return
        key = _text(event, "key")
        slot = (ns, key)
        self._keys.setdefault(ns, set()).add(key)
        if op == "load":
            missed = self._pending.pop(slot, None)
            if missed is not None:  # the miss it answered takes its size, ttl and time
                self._read(missed[0], missed[1], ns, key, "miss", size, ttl, load_ms)
        else:
            self._complete(slot)
            if op == "miss":
                self._pending[slot] = (number, ts, key)
            elif op == "hit":
                self._read(number, ts, ns, key, "hit", size, ttl, load_ms)
            else:  # write, delete
                self.builder.add(Request(ts, number, Op.WRITE, key, ns, size=size, ttl=ttl))
        if size is not None:
            self._sizes[slot] = size
        if op in ("load", "write", "delete"):
            self._retag(ns, key, tuple(tags or ()))
        elif tags:
            self._retag(ns, key, tuple(tags))

    def _read(
        self,
        number: int,
        ts: float,
        ns: str,
        key: str,
        result: str,
        size: int | None,
        ttl: float | None,
        load_ms: float | None,
    ) -> None:
        attributes = {"result": result}
        if load_ms is not None:
            attributes["load_ms"] = f"{load_ms:g}"
        if size is None:
            size = self._sizes.get((ns, key))
        self.builder.add(
            Request(ts, number, Op.READ, key, ns, size=size, ttl=ttl, attributes=attributes)
        )

    def _complete(self, slot: tuple[str, str]) -> None:
        """Add the miss of ``slot`` that no load followed (a plain ``get``), if there is one."""
        missed = self._pending.pop(slot, None)
        if missed is not None:
            self._read(missed[0], missed[1], slot[0], missed[2], "miss", None, None, None)

    def _retag(self, ns: str, key: str, tags: tuple[str, ...]) -> None:
        old = self._tags.get((ns, key), ())
        if old == tags:
            return
        for tag in old:
            self._tagged.get((ns, tag), set()).discard(key)
        for tag in tags:
            self._tagged.setdefault((ns, tag), set()).add(key)
        if tags:
            self._tags[(ns, key)] = tags
        else:
            self._tags.pop((ns, key), None)

    def _invalidate(self, number: int, ts: float, ns: str, event: dict[str, Any]) -> None:
        scope = event.get("scope")
        if scope not in _SCOPES:
            raise _Bad(f"an invalidation's scope must be one of {sorted(_SCOPES)}, got {scope!r}")
        if scope == "tag":
            reached = self._tagged.get((ns, _text(event, "key")), set())
        else:
            reached = self._keys.get(ns, set())
        for key in sorted(reached):  # sorted: the same trace gives the same order every time
            self._complete((ns, key))
            self.builder.add(Request(ts, number, Op.WRITE, key, ns))

    def build(self) -> RecordedTrace:
        """The trace read so far (misses still waiting for a load are added as they are)."""
        for slot in list(self._pending):
            self._complete(slot)
        trace = self.builder.build()
        samples = {h.get("sample") for h in self.headers}
        hashed = {h.get("hashed") for h in self.headers}
        values = {f.name: getattr(trace, f.name) for f in fields(Trace)}
        return RecordedTrace(
            **values,
            sample=samples.pop() if len(samples) == 1 else None,
            hashed=hashed.pop() if len(hashed) == 1 else None,
            headers=self.headers,
        )


def _lines(path: str) -> Iterator[str]:
    opener = gzip.open if path.endswith(".gz") else open
    # Undecodable bytes become U+FFFD: that line is then reported, not the whole file refused.
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
        yield from lines


def _stream_event(fields_: dict[str, str]) -> dict[str, Any]:
    """A stream entry's fields (strings) typed back into the event the file would hold."""
    event: dict[str, Any] = {}
    for name, text in fields_.items():
        kind = _STREAM_TYPES.get(name)
        try:
            if kind is not None:
                event[name] = kind(text)
            elif name == "tags":
                event[name] = json.loads(text)
            elif name == "hashed":
                event[name] = text == "1"
            else:
                event[name] = text
        except ValueError as exc:
            raise _Bad(
                f"{name} does not read as {getattr(kind, '__name__', 'JSON')}: {exc}"
            ) from exc
    return event


def _entry_fields(raw: Any) -> dict[str, str]:
    """An XRANGE entry's fields: redis-py gives a dict, other clients a flat list."""
    if isinstance(raw, dict):
        pairs: Iterable[tuple[Any, Any]] = raw.items()
    else:
        items = list(raw)
        pairs = zip(items[::2], items[1::2], strict=True)
    return {as_text(name): as_text(value) for name, value in pairs}


def _read_stream(reader: _Reader, redis: object, name: str) -> None:
    driver = as_backend(redis).sync_driver()
    start = "-"
    number = 0
    while True:
        page = driver.execute(command("XRANGE", name, start, "+", "COUNT", _PAGE))
        for entry_id, raw in page:
            number += 1
            text = f"{as_text(entry_id)} {raw!r}"
            try:
                event = _stream_event(_entry_fields(raw))
            except (_Bad, ValueError) as exc:
                reader.events += 1
                reader.builder.reject(number, str(exc), text)
                continue
            reader.event(number, event, text)
        if len(page) < _PAGE:
            return
        start = "(" + as_text(page[-1][0])


def read_recorded(
    source: str | os.PathLike[str] | Iterable[str] | None = None,
    *,
    stream: tuple[object, str] | None = None,
) -> RecordedTrace:
    """Read a recorded trace: a file (``.gz`` too), lines of one, or a Redis stream.

    ``stream`` is ``(redis, name)``: a :class:`redkit.Connection`, URL or client, and the
    stream's key (``"redkit:trace"`` by default in the recorder).

    Raises:
        InvalidArgumentError: when neither or both sources are given, or the source holds
            nothing at all (no header, no event).
        OSError: when the file cannot be read.

    """
    if (source is None) == (stream is None):
        raise InvalidArgumentError(
            "read_recorded needs one source: a path (or lines), or stream=(redis, name)"
        )
    if stream is not None:
        redis, name = stream
        reader = _Reader(f"redis stream {name}")
        _read_stream(reader, redis, name)
        where = f"the stream {name!r}"
    else:
        assert source is not None
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            reader = _Reader(path)
            lines: Iterable[str] = _lines(path)
            where = path
        else:
            reader = _Reader("<lines>")
            lines = source
            where = "the lines given"
        for number, text in enumerate(lines, 1):
            reader.line(number, text)
    if reader.events == 0:
        raise InvalidArgumentError(
            f"{where} holds no recorded trace (no header, no event): is it the path or stream "
            "the recorder writes to (TraceRecorder.to_file / to_stream)?"
        )
    return reader.build()
