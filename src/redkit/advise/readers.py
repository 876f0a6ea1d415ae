r"""Readers: access logs and cache traces, streamed line by line into a :class:`Trace`.

:func:`read_trace` reads one file or several (``.gz`` transparently, known by its magic bytes,
whatever its name), line by line, never the whole file in memory, and gives the sorted
:class:`~redkit.advise.trace.Trace` the analyses read. Formats (``format=``, ``--format``):

``clf`` / ``combined``
    The Common and Combined Log Formats (nginx's and Apache's defaults):
    ``host ident authuser [10/Oct/2026:13:55:36 +0200] "GET /a?b=1 HTTP/1.1" 200 2326
    "referer" "user-agent"``. ``bytes`` may be ``-``; quoted fields may hold ``\"``; fields a
    custom format adds after the user agent are ignored. ``client`` is ``host``, ``user`` is
    ``authuser`` (unless ``-``), ``size`` is ``bytes``. A line without an HTTP request line
    (nginx's ``"-"`` or the bytes of a TLS handshake, answered 400 by the server itself) is
    rejected: the application, and so its cache and rate limiter, never saw it.
``jsonl``
    JSON lines. The field names of nginx's JSON logs (``time_iso8601``/``msec``/``time_local``,
    ``remote_addr``, ``request`` or ``request_method`` + ``request_uri``, ``status``,
    ``body_bytes_sent``, ``http_user_agent``, ``remote_user``) and of Caddy's (``ts``,
    ``request.method``, ``request.uri``, ``request.remote_ip``, ``request.headers.User-Agent``,
    ``status``, ``size``, ``user_id``) are known; the first good line of each file tells which
    (a Caddy entry has a ``request`` object). A line with a ``key`` field is a cache trace,
    read like the CSV below. ``fields={"client": "x_real_ip", ...}`` overrides a field's
    name (dots reach into objects: ``request.headers.X-Real-Ip``); the roles are
    :data:`FIELD_ROLES`.
``csv``
    A header, then rows: ``timestamp,key[,size][,op][,ttl][,client]`` in any column order
    (``time``/``ts`` for ``timestamp``). ``op`` is ``get``/``read`` (a read, also when empty or
    absent) or ``set``/``write``/``delete``/``invalidate`` (a write); any other op (a
    recorder's ``load``) counts for rate limits only. Keys are taken verbatim; the namespace
    is that of :meth:`Templates.key_namespace` (``user:42`` is in ``user``, a path-like key in
    its route template, others in ``default``).
``twitter``
    Twitter's public cache traces, no header:
    ``timestamp,anonymized key,key size,value size,client id,operation,TTL``. ``get``/``gets``
    are reads; ``set``, ``add``, ``replace``, ``cas``, ``append``, ``prepend``, ``delete``,
    ``incr``, ``decr`` are writes; TTL ``0`` is none. ``size`` is key size + value size, what
    the entry costs in memory (as libCacheSim counts it).
``auto`` (the default)
    Told from the first lines of each file: a JSON object is ``jsonl``, a ``[dd/Mon/yyyy:``
    date ``clf``/``combined``, a header with ``timestamp`` and ``key`` ``csv``, seven comma
    fields starting with a number ``twitter``.

What a request is (:class:`~redkit.advise.trace.Op`): an HTTP ``GET`` or ``HEAD`` answered
``200`` is a ``READ``, keyed by its path and normalised query (:mod:`redkit.advise.templates`);
a ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` answered below 400 is a ``WRITE`` keyed by its bare
path (a ``303`` after a form's ``POST`` is a change that redirects); one answered 4xx or 5xx
was refused or failed and changed nothing, so it is ``OTHER``, as is everything else (a 404,
a 304, ``OPTIONS``). Namespaces are route templates (``/api/users/{id}``) unless a
``--key-pattern`` names them.

Timestamps are seconds since the epoch. A number above ``1e11`` is taken as milliseconds (no
log of seconds reaches the year 5000); ISO 8601 without a zone is UTC.

Bad input never stops a run: a line that cannot be read (a truncated line, a bad date, not
JSON, an unknown operation) is counted as malformed with its number and reason, and the first
few are kept (:attr:`Trace.malformed_examples`). Bytes that are not UTF-8 are decoded with
replacement characters (nginx and Apache escape them as ``\xHH`` anyway). Blank lines are
skipped, uncounted. A missing, unreadable or empty file, a directory, a file whose format
cannot be told, or a set of files without one usable request is an
:class:`~redkit.errors.InvalidArgumentError` naming the path and what to do.

Attributes (``attributes=["header:X-API-Key"]``, for ``--by header:X-API-Key``) fill
:attr:`Request.attributes`: a request header (Caddy's ``request.headers``, any case; nginx's
``http_x_api_key``), or ``field:NAME`` (a JSON field, dots allowed, or a CSV column). A format
without headers (CLF, CSV, Twitter) asked for one is an error before anything is read.
"""

from __future__ import annotations

import calendar
import gzip
import io
import json
import math
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from redkit.advise.templates import Templates, key_of, normalise_query, split_target
from redkit.advise.trace import Op, Request, Trace, TraceBuilder
from redkit.core.errors import InvalidArgumentError

__all__ = ["FIELD_ROLES", "FORMATS", "Progress", "detect_format", "read_trace"]

#: The values ``format=`` takes (``combined`` is read by the ``clf`` reader; ``json`` is ``jsonl``).
FORMATS = ("auto", "clf", "combined", "jsonl", "json", "csv", "twitter")

#: The roles ``fields=`` may rename for JSON lines.
FIELD_ROLES = (
    "time", "method", "uri", "request", "client", "user", "status", "size", "user_agent",
    "key", "op", "ttl",
)  # fmt: skip

#: ``progress(bytes_read, total_bytes)``, called now and then while reading (sizes on disk).
Progress = Callable[[int, int], None]

_GZIP_MAGIC = b"\x1f\x8b"
# A line longer than this is malformed (and skipped to its end without being held whole).
_MAX_LINE = 1 << 20
# How often (in lines) to report progress.
_PROGRESS_EVERY = 16384
# How many first non-empty lines format detection looks at.
_SNIFF_LINES = 50

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_HTTP_READS = frozenset(("GET", "HEAD"))
_HTTP_WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))
_CACHE_READS = frozenset(("get", "read", "gets"))
_CACHE_WRITES = frozenset(("set", "write", "delete", "invalidate"))
_TWITTER_READS = frozenset(("get", "gets"))
_TWITTER_WRITES = frozenset(
    ("set", "add", "replace", "cas", "append", "prepend", "delete", "incr", "decr")
)

# "[10/Oct/2026:13:55:36 +0200]": day, month, year, hour, minute, second, fraction, zone.
_CLF_TIME = re.compile(
    r"(\d{1,2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*([+-]\d{4})?"
)
_ISO_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?"
)
_Q = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # a quoted field, with \" and \\ escapes
_CLF = re.compile(
    rf"(\S+) (\S+) (\S+) \[([^\]]*)\] {_Q} (\d{{3}}) (\d+|-)(?: {_Q} {_Q}(?:\s.*)?| [^\"]*)?\s*"
)
# The same, for the common line (a plain request line, nothing escaped before the user agent):
# host, user, time, method, target, status, bytes, user agent.
_CLF_FAST = re.compile(
    r'(\S+) \S+ ([^\s\\"]+) \[([^\]]*)\] "([A-Z]+) (/[^\s"\\]*|\*) HTTP/[0-9.]+" (\d{3}) (\d+|-)'
    rf'(?: "[^"\\]*(?:\\.[^"\\]*)*" {_Q}(?:\s.*)?| [^"]*)?\s*'
)
_SNIFF_CLF = re.compile(r"\[\d{1,2}/[A-Z][a-z]{2}/\d{4}:")
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


_ESCAPE = re.compile(r'\\(["\\])')


def _unescape(text: str) -> str:
    # Apache writes \" and \\; nginx writes \x22 and \x5C, which stay as they are.
    if "\\" not in text:
        return text
    return _ESCAPE.sub(r"\1", text)


def _clf_time(text: str) -> float:
    found = _CLF_TIME.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not a [dd/Mon/yyyy:HH:MM:SS +zzzz] time: {text[:40]!r}")
    day, month_name, year, hour, minute, second, fraction, zone = found.groups()
    month = _MONTHS.get(month_name)
    if month is None:
        raise ValueError(f"no month is called {month_name!r}")
    return _epoch(year, month, day, hour, minute, second, fraction, zone)


def _epoch(
    year: str,
    month: int | str,
    day: str,
    hour: str | None,
    minute: str | None,
    second: str | None,
    fraction: str | None,
    zone: str | None,
) -> float:
    # datetime() validates every field (no 31 November, no hour 25).
    stamp = datetime(
        int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
    )
    seconds = calendar.timegm(stamp.timetuple())
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        offset = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60
        if int(digits[:2]) > 23 or int(digits[2:4] or 0) > 59:
            raise ValueError(f"bad time zone offset {zone!r}")
        seconds -= offset if zone[0] == "+" else -offset
    return seconds + (float("0." + fraction) if fraction else 0.0)


def _iso_time(text: str) -> float:
    found = _ISO_TIME.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"not an ISO 8601 time: {text[:40]!r}")
    return _epoch(*found.groups())


def _time_value(value: object) -> float:
    """Seconds since the epoch from a number, a numeric string, ISO 8601 or a CLF date."""
    if isinstance(value, bool):
        raise ValueError("a time cannot be true or false")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        if _NUMBER.fullmatch(value):
            number = float(value)
        elif "/" in value:
            return _clf_time(value.strip("[] "))
        else:
            return _iso_time(value)
    else:
        raise ValueError(f"a time must be a number or a string, got {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"not a finite time: {value!r}")
    return number / 1000.0 if abs(number) > 1e11 else number


def _int_value(value: object) -> int | None:
    """A non-negative count (a size, a status) from a number or string; None for none/``-``."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, bool):
        raise ValueError("expected a number, got true/false")
    if isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.strip().isdigit()
    ):
        number = int(value)
    else:
        raise ValueError(f"expected a whole number, got {str(value)[:40]!r}")
    if number < 0:
        raise ValueError(f"expected a count, got {number}")
    return number


def _ttl_value(value: object) -> float | None:
    """A TTL in seconds; 0, empty and ``-`` mean none."""
    if value is None or value == "" or value == "-":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"a ttl must be a number, got {str(value)[:40]!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"a ttl must be a finite number of seconds, got {value!r}")
    return number or None


def _http_op(method: str, status: int) -> Op:
    if method in _HTTP_READS:
        return Op.READ if status == 200 else Op.OTHER
    if method in _HTTP_WRITES:
        return Op.WRITE if status < 400 else Op.OTHER
    return Op.OTHER


class _Malformed(ValueError):
    """A line that cannot be read (the message is its reason)."""


class _Http:
    """Keys, namespaces and ops of HTTP requests, remembered per raw target."""

    def __init__(self, templates: Templates) -> None:
        self.templates = templates
        self._targets: dict[str, tuple[str, str, str]] = {}

    def parts(self, target: str) -> tuple[str, str, str]:
        """``(read key, write key, namespace)`` of a request target."""
        found = self._targets.get(target)
        if found is None:
            if len(self._targets) >= 1 << 18:
                self._targets.clear()  # bounded: a log of unique queries must not grow this
            path, query = split_target(target)
            found = (key_of(path, normalise_query(query)), path, self.templates.namespace(path))
            self._targets[target] = found
        return found

    def request(
        self,
        time: float,
        line: int,
        method: str,
        target: str,
        status: int,
        size: int | None,
        client: str | None,
        user: str | None,
        user_agent: str | None,
        attributes: Mapping[str, str] | None,
    ) -> Request:
        read_key, path, namespace = self.parts(target)
        op = _http_op(method, status)
        key = path if op is Op.WRITE else read_key
        return Request(
            time, line, op, key, namespace, size, None, client, user, user_agent, status,
            method, attributes,
        )  # fmt: skip


def _split_request_line(text: str) -> tuple[str, str]:
    parts = text.split(" ")
    if (len(parts) == 3 and parts[2].startswith("HTTP/")) or len(parts) == 2:
        method, target = parts[0], parts[1]
        if method.isalpha() and target and (target[0] in "/*" or "://" in target):
            return method.upper(), target
    raise _Malformed(f"no HTTP request line in {text[:60]!r}")


# -- the readers: each turns (line number, text) into a Request or raises _Malformed -------


class _ClfReader:
    name = "clf"

    def __init__(self, http: _Http, builder: TraceBuilder | None = None) -> None:
        self.http = http
        self._times: dict[str, float] = {}
        # Given a builder, the common line goes straight into it (the reader then returns
        # None): no Request is built a million times.
        self._add = None if builder is None else builder.add_row

    def _time(self, stamp: str) -> float:
        try:
            when = _clf_time(stamp)
        except (ValueError, OverflowError) as exc:
            raise _Malformed(f"bad time: {exc}") from None
        if len(self._times) > 4096:
            self._times.clear()  # one-second resolution: only recent times repeat
        self._times[stamp] = when
        return when

    def __call__(self, number: int, text: str) -> Request | None:
        found = _CLF_FAST.fullmatch(text)
        if found is None:
            return self._general(number, text)
        # The common line: a plain request line, no escapes but perhaps in the user agent.
        host, user, stamp, method, target, status, size, agent = found.groups()
        when = self._times.get(stamp)
        if when is None:
            when = self._time(stamp)
        parts = self.http.parts(target)
        code = int(status)
        if method in _HTTP_READS:
            op = Op.READ if code == 200 else Op.OTHER
        elif method in _HTTP_WRITES:
            op = Op.WRITE if code < 400 else Op.OTHER
        else:
            op = Op.OTHER
        if agent is not None and "\\" in agent:
            agent = _unescape(agent)
        if self._add is not None:
            self._add(
                when, number, op, parts[1] if op is Op.WRITE else parts[0], parts[2],
                -1 if size == "-" else int(size), math.nan, host, None if user == "-" else user,
                None if agent == "-" else agent, code, method, None,
            )  # fmt: skip
            return None
        return Request(
            when, number, op, parts[1] if op is Op.WRITE else parts[0], parts[2],
            None if size == "-" else int(size), None, host, None if user == "-" else user,
            None if agent == "-" else agent, code, method, None,
        )  # fmt: skip

    def _general(self, number: int, text: str) -> Request:
        found = _CLF.fullmatch(text)
        if found is None:
            raise _Malformed("not a Common/Combined Log Format line (truncated?)")
        host, _ident, user, stamp, request_line, status, size, _referer, agent = found.groups()
        when = self._times.get(stamp)
        if when is None:
            when = self._time(stamp)
        method, target = _split_request_line(_unescape(request_line))
        return self.http.request(
            when, number, method, target, int(status), None if size == "-" else int(size),
            host, None if user == "-" else _unescape(user),
            None if agent is None or agent == "-" else _unescape(agent), None,
        )  # fmt: skip


def _path(spec: str) -> tuple[str, ...]:
    return tuple(spec.split("."))


def _lookup(obj: Mapping[str, Any], spec: str, path: tuple[str, ...]) -> Any:
    """A field by name: a flat key first (``a.b`` as one name), else down the dots."""
    if spec in obj:
        return obj[spec]
    if len(path) == 1:
        return None
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _lookup_any_case(obj: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = obj
    for part in path:
        if not isinstance(value, Mapping):
            return None
        got = value.get(part)
        if got is None:
            lowered = part.lower()
            got = next((v for k, v in value.items() if k.lower() == lowered), None)
        value = got
    return value


def _text_value(value: Any) -> str | None:
    if isinstance(value, list):  # Caddy logs each header as a list of values
        value = value[0] if value else None
    if value is None or value == "" or value == "-":
        return None
    return value if isinstance(value, str) else str(value)


_NGINX: dict[str, tuple[str, ...]] = {
    "time": ("msec", "time_iso8601", "time_local", "timestamp", "time", "@timestamp", "ts"),
    "method": ("request_method", "method"),
    "uri": ("request_uri",),
    "request": ("request",),
    "client": ("remote_addr", "client_ip", "client", "ip"),
    "user": ("remote_user", "user"),
    "status": ("status",),
    "size": ("body_bytes_sent", "bytes_sent", "size", "bytes"),
    "user_agent": ("http_user_agent", "user_agent"),
}
_CADDY: dict[str, tuple[str, ...]] = {
    "time": ("ts",),
    "method": ("request.method",),
    "uri": ("request.uri",),
    "client": ("request.client_ip", "request.remote_ip", "request.remote_addr"),
    "user": ("user_id",),
    "status": ("status",),
    "size": ("size",),
    "user_agent": ("request.headers.User-Agent",),
}
_CACHE: dict[str, tuple[str, ...]] = {
    "time": ("timestamp", "time", "ts"),
    "key": ("key",),
    "op": ("op", "operation"),
    "size": ("size",),
    "ttl": ("ttl",),
    "client": ("client",),
}


class _JsonReader:
    name = "jsonl"

    def __init__(
        self,
        http: _Http,
        fields: Mapping[str, str],
        attributes: Sequence[str],
        flavour: str | None = None,
    ) -> None:
        self.http = http
        self.overrides = dict(fields)
        self.attributes = tuple(attributes)
        self.flavour: str | None = None
        self._roles: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
        self._attribute_paths: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
        if flavour is not None:
            self._choose(flavour)

    @staticmethod
    def flavour_of(obj: Mapping[str, Any], fields: Mapping[str, str]) -> str:
        """``caddy``, ``nginx`` or ``cache``: whose JSON log this entry looks like."""
        if "key" in fields or ("key" in obj and "request" not in obj and "uri" not in fields):
            return "cache"
        if isinstance(obj.get("request"), Mapping):
            return "caddy"
        return "nginx"

    def _choose(self, flavour: str) -> None:
        self.flavour = flavour
        defaults = {"caddy": _CADDY, "cache": _CACHE}.get(flavour, _NGINX)
        roles = dict(defaults)
        for role, name in self.overrides.items():
            roles[role] = (name,)
        self._roles = {
            role: tuple((name, _path(name)) for name in names) for role, names in roles.items()
        }
        paths = []
        for attribute in self.attributes:
            kind, _, name = attribute.partition(":")
            if kind == "field":
                paths.append((attribute, "field", _path(name)))
            elif flavour == "caddy":
                paths.append((attribute, "header", ("request", "headers", name)))
            else:  # nginx names a header's variable $http_x_api_key
                paths.append((attribute, "field", ("http_" + name.lower().replace("-", "_"),)))
        self._attribute_paths = tuple(paths)

    def _get(self, obj: Mapping[str, Any], role: str) -> Any:
        for name, path in self._roles.get(role, ()):
            value = _lookup(obj, name, path)
            if value is not None:
                return value
        return None

    def __call__(self, number: int, text: str) -> Request:
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError):
            raise _Malformed("not JSON (truncated?)") from None
        if not isinstance(obj, dict):
            raise _Malformed("not a JSON object")
        if self.flavour is None:
            self._choose(self.flavour_of(obj, self.overrides))
        try:
            stamp = self._get(obj, "time")
            if stamp is None:
                raise _Malformed("no time field (name it with fields={'time': ...})")
            when = _time_value(stamp)
            attributes = self._attributes(obj)
            if self.flavour == "cache":
                return self._cache_request(obj, number, when, attributes)
            return self._http_request(obj, number, when, attributes)
        except (ValueError, TypeError, OverflowError) as exc:
            if isinstance(exc, _Malformed):
                raise
            raise _Malformed(str(exc)) from None

    def _attributes(self, obj: Mapping[str, Any]) -> dict[str, str] | None:
        if not self._attribute_paths:
            return None
        found = {}
        for attribute, kind, path in self._attribute_paths:
            if kind == "header":
                value = _text_value(_lookup_any_case(obj, path))
            else:
                value = _text_value(_lookup(obj, ".".join(path), path))
            if value is not None:
                found[attribute] = value
        return found or None

    def _http_request(
        self, obj: Mapping[str, Any], number: int, when: float, attributes: dict[str, str] | None
    ) -> Request:
        method = _text_value(self._get(obj, "method"))
        target = _text_value(self._get(obj, "uri"))
        if method is None or target is None:
            line = _text_value(self._get(obj, "request"))
            if line is None:
                if "uri" in obj and method is not None:  # nginx's $uri and $args
                    args = _text_value(obj.get("args"))
                    target = str(obj["uri"]) + ("?" + args if args else "")
                else:
                    raise _Malformed("not an access log entry: no request method and uri")
            else:
                method, target = _split_request_line(line)
        status = _int_value(self._get(obj, "status"))
        if status is None:
            raise _Malformed("no status field")
        client = _text_value(self._get(obj, "client"))
        if client is not None and self.flavour == "caddy" and client.count(":") == 1:
            client = client.rsplit(":", 1)[0]  # Caddy's remote_addr is "ip:port"
        return self.http.request(
            when, number, method.upper(), target, status, _int_value(self._get(obj, "size")),
            client, _text_value(self._get(obj, "user")),
            _text_value(self._get(obj, "user_agent")), attributes,
        )  # fmt: skip

    def _cache_request(
        self, obj: Mapping[str, Any], number: int, when: float, attributes: dict[str, str] | None
    ) -> Request:
        key = _text_value(self._get(obj, "key"))
        if key is None:
            raise _Malformed("no key")
        op = _cache_op(_text_value(self._get(obj, "op")))
        return Request(
            when, number, op, key, self.http.templates.key_namespace(key),
            _int_value(self._get(obj, "size")), _ttl_value(self._get(obj, "ttl")),
            _text_value(self._get(obj, "client")), None, None, None, None, attributes,
        )  # fmt: skip


def _cache_op(name: str | None) -> Op:
    if name is None:
        return Op.READ
    lowered = name.strip().lower()
    if lowered in _CACHE_READS or not lowered:
        return Op.READ
    if lowered in _CACHE_WRITES:
        return Op.WRITE
    return Op.OTHER


_CSV_ALIASES = {"time": "timestamp", "ts": "timestamp", "operation": "op", "bytes": "size"}


class _CsvReader:
    name = "csv"

    def __init__(self, http: _Http, attributes: Sequence[str]) -> None:
        self.templates = http.templates
        self.attributes = tuple(attributes)
        self.columns: dict[str, int] | None = None
        self._attribute_columns: tuple[tuple[str, int], ...] = ()
        self._width = 0

    @staticmethod
    def header(text: str) -> dict[str, int] | None:
        """The columns of a header line, or None when it is not one (no timestamp and key)."""
        names = [_CSV_ALIASES.get(n, n) for n in (c.strip().lower() for c in _csv_fields(text))]
        columns = {name: i for i, name in reversed(list(enumerate(names)))}
        return columns if "timestamp" in columns and "key" in columns else None

    def __call__(self, number: int, text: str) -> Request | None:
        if self.columns is None:
            self.columns = self.header(text)
            if self.columns is None:
                raise _Malformed("the first line is not a header with timestamp and key columns")
            fields = [c.strip() for c in _csv_fields(text)]
            self._width = max(self.columns.values()) + 1
            self._attribute_columns = tuple(
                (attribute, fields.index(attribute.partition(":")[2]))
                for attribute in self.attributes
                if attribute.partition(":")[2] in fields
            )
            return None  # the header is no request
        row = _csv_fields(text)
        if len(row) < self._width:
            raise _Malformed(f"{len(row)} fields, the header has more (truncated?)")
        c = self.columns
        try:
            when = _time_value(row[c["timestamp"]].strip())
            size = _int_value(row[c["size"]].strip()) if "size" in c else None
            ttl = _ttl_value(row[c["ttl"]].strip()) if "ttl" in c else None
        except (ValueError, OverflowError) as exc:
            raise _Malformed(str(exc)) from None
        key = row[c["key"]]
        if not key:
            raise _Malformed("an empty key")
        op = _cache_op(row[c["op"]]) if "op" in c else Op.READ
        client = (row[c["client"]].strip() or None) if "client" in c else None
        attributes = {
            name: row[i] for name, i in self._attribute_columns if i < len(row) and row[i]
        }
        return Request(
            when, number, op, key, self.templates.key_namespace(key), size, ttl, client,
            None, None, None, None, attributes or None,
        )  # fmt: skip


def _csv_fields(text: str) -> list[str]:
    if '"' not in text:
        return text.split(",")
    import csv

    try:
        return next(csv.reader([text], strict=True))
    except (csv.Error, StopIteration) as exc:
        raise _Malformed(f"bad CSV quoting: {exc}") from None


class _TwitterReader:
    name = "twitter"

    def __init__(self, http: _Http) -> None:
        self.templates = http.templates

    def __call__(self, number: int, text: str) -> Request:
        fields = text.split(",")
        if len(fields) < 7:
            raise _Malformed(f"{len(fields)} fields, a Twitter trace line has 7 (truncated?)")
        # An anonymised key holds no comma, but if one does, the other fields still line up.
        stamp, key_size, value_size, client, operation, ttl = (
            fields[0], fields[-5], fields[-4], fields[-3], fields[-2], fields[-1],
        )  # fmt: skip
        key = ",".join(fields[1:-5])
        if not key:
            raise _Malformed("an empty key")
        try:
            when = _time_value(stamp)
            size = (_int_value(key_size) or 0) + (_int_value(value_size) or 0)
            seconds = _ttl_value(ttl)
        except (ValueError, OverflowError) as exc:
            raise _Malformed(str(exc)) from None
        name = operation.strip().lower()
        if name in _TWITTER_READS:
            op = Op.READ
        elif name in _TWITTER_WRITES:
            op = Op.WRITE
        else:
            raise _Malformed(f"unknown operation {operation[:20]!r}")
        return Request(
            when,
            number,
            op,
            key,
            self.templates.key_namespace(key),
            size,
            seconds,
            client or None,
        )


# -- files --------------------------------------------------------------------------------


@dataclass
class _Source:
    path: Path
    size: int
    format: str  # clf, combined, jsonl, csv, twitter
    flavour: str | None = None  # for jsonl


def _open_binary(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """``(raw file, stream of its bytes)``: gunzipped when the file starts with gzip's magic."""
    try:
        raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    except IsADirectoryError:
        raise _directory(path) from None
    except FileNotFoundError:
        raise InvalidArgumentError(
            f"cannot read {path}: no such file (give the path of an access log or a cache trace)"
        ) from None
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot read {path}: {exc.strerror or exc} (check that it exists and its permissions)"
        ) from None
    try:
        magic = raw.read(2)
        raw.seek(0)
    except OSError as exc:
        raw.close()
        if isinstance(exc, IsADirectoryError):
            raise _directory(path) from None
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    if magic == _GZIP_MAGIC:
        return raw, gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw, raw


def _directory(path: Path) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"{path} is a directory: give the log files in it (e.g. {path / 'access.log'}), "
        "or several paths"
    )


class _File:
    """An open log: its raw file (for progress) and its decoded text (gunzipped if need be)."""

    def __init__(self, path: Path) -> None:
        self.raw, stream = _open_binary(path)
        self.text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="replace", newline="\n")

    def __enter__(self) -> _File:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.text.close()
        except _STREAM_ERRORS:
            pass  # a damaged gzip file, already reported
        finally:
            self.raw.close()


def _lines(text: IO[str]) -> Iterator[str | None]:
    """Decoded lines without their ending; ``None`` for a line too long to keep."""
    readline = text.readline
    while True:
        line = readline(_MAX_LINE)
        if not line:
            return
        if line[-1] != "\n" and len(line) >= _MAX_LINE:
            while True:  # skip the rest of the long line without holding it
                rest = readline(_MAX_LINE)
                if not rest or rest[-1] == "\n":
                    break
            yield None
            continue
        yield line.rstrip("\r\n")


_STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def _sniff(path: Path, fields: Mapping[str, str]) -> tuple[int, str, str | None, str | None]:
    """``(size, format, json flavour, first line)`` of one file, from its first lines.

    The format is ``""`` when the first lines tell none, ``"empty"`` for a file without one.
    """
    first: str | None = None
    try:
        file = _File(path)
    except _STREAM_ERRORS as exc:
        raise InvalidArgumentError(f"cannot read {path}: a damaged gzip file ({exc})") from None
    try:
        size = os.fstat(file.raw.fileno()).st_size
        seen = 0
        for line in _lines(file.text):
            if line is None or not line.strip():
                continue
            if first is None:
                first = line
            found = detect_format(line)
            if found is not None:
                flavour = None
                if found == "jsonl":
                    flavour = _JsonReader.flavour_of(json.loads(line), fields)
                return size, found, flavour, first
            seen += 1
            if seen >= _SNIFF_LINES:
                break
    except _STREAM_ERRORS as exc:
        raise InvalidArgumentError(f"cannot read {path}: a damaged gzip file ({exc})") from None
    except OSError as exc:
        if isinstance(exc, IsADirectoryError):
            raise _directory(path) from None
        raise InvalidArgumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    finally:
        file.__exit__()
    return size, ("" if first else "empty"), None, first


def detect_format(line: str) -> str | None:
    """The format one line is in (``jsonl``, ``clf``, ``combined``, ``csv``, ``twitter``), or None.

    ``csv`` means a header line (``timestamp`` and ``key`` columns).
    """
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            return "jsonl" if isinstance(json.loads(stripped), dict) else None
        except (ValueError, RecursionError):
            return None
    if _SNIFF_CLF.search(line):
        found = _CLF.fullmatch(line)
        if found is not None:
            return "combined" if found.group(9) is not None else "clf"
        return None
    try:
        if _CsvReader.header(stripped) is not None:
            return "csv"
    except _Malformed:
        return None
    fields = stripped.split(",")
    if (
        len(fields) == 7
        and _NUMBER.fullmatch(fields[0])
        and fields[5].strip().lower() in (_TWITTER_READS | _TWITTER_WRITES)
    ):
        return "twitter"
    return None


def _check_attributes(attributes: Sequence[str], sources: Sequence[_Source]) -> None:
    for attribute in attributes:
        kind, sep, name = attribute.partition(":")
        if not sep or kind not in ("header", "field") or not name:
            raise InvalidArgumentError(
                f"attribute {attribute!r}: write header:NAME (a request header, e.g. "
                "header:X-API-Key) or field:NAME (a JSON field or CSV column)"
            )
        for source in sources:
            if kind == "header" and source.format != "jsonl":
                raise InvalidArgumentError(
                    f"{source.path} is a {source.format} log, which records no request headers, "
                    f"so {attribute} cannot be read from it: log the header (nginx: a JSON "
                    f'log_format with "api_key":"$http_{name.lower().replace("-", "_")}"; '
                    "Caddy logs headers) and read that log, or use --by ip or --by user"
                )
            if kind == "field" and source.format not in ("jsonl", "csv"):
                raise InvalidArgumentError(
                    f"{source.path} is a {source.format} log, which has no named fields, so "
                    f"{attribute} cannot be read from it: use --by ip or --by user"
                )


def _format_name(format: str) -> str:
    if not isinstance(format, str) or format.lower() not in FORMATS:
        raise InvalidArgumentError(
            f"format must be one of {', '.join(FORMATS)}, got {format!r} (--format)"
        )
    name = format.lower()
    return {"json": "jsonl", "combined": "clf"}.get(name, name)


def read_trace(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str = "auto",
    key_patterns: Sequence[str | tuple[str, str]] = (),
    attributes: Sequence[str] = (),
    fields: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Trace:
    """Read one log or several into a :class:`~redkit.advise.trace.Trace`, sorted by time.

    Args:
        source: a path, or several (read in order; their requests are merged by time).
        format: ``auto`` (each file's own, told from its first lines), ``clf``/``combined``,
            ``jsonl``, ``csv`` or ``twitter`` (see the module docstring).
        key_patterns: ``"REGEX=NAME"`` overrides of namespaces (``--key-pattern``).
        attributes: extra fields to keep, ``header:X-API-Key`` or ``field:NAME``.
        fields: for JSON lines, field names by role (:data:`FIELD_ROLES`), e.g.
            ``{"client": "x_forwarded_for"}``.
        progress: called with ``(bytes_read, total_bytes)`` while reading.

    Raises:
        InvalidArgumentError: a missing, unreadable or empty file, a directory, an unknown
            format, an attribute the format cannot have, or no usable request at all.

    """
    paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    if not paths:
        raise InvalidArgumentError("read_trace() needs at least one file to read")
    chosen = _format_name(format)
    for role in fields or {}:
        if role not in FIELD_ROLES:
            raise InvalidArgumentError(
                f"fields: no role is called {role!r}; the roles are {', '.join(FIELD_ROLES)}"
            )
    templates = Templates(key_patterns)
    sources = []
    for given in paths:
        path = Path(given)
        size, found, flavour, first = _sniff(path, fields or {})
        if found == "empty":
            if len(paths) == 1:
                raise InvalidArgumentError(
                    f"{path} is empty: there is nothing to analyse (is it the right file? a "
                    f"rotated log keeps its lines in {path.name}.1)"
                )
            continue  # one empty log of several (a log just rotated) adds nothing
        if chosen != "auto":
            if chosen == "clf" and found in ("clf", "combined"):
                pass
            else:
                found = "clf" if chosen == "clf" else chosen
        if not found:
            raise InvalidArgumentError(
                f"cannot tell the format of {path} from its first lines (it starts with "
                f"{(first or '')[:80]!r}): give format= (--format) clf, combined, jsonl, csv "
                "or twitter"
            )
        sources.append(_Source(path, size, found, flavour))
    if not sources:
        raise InvalidArgumentError(
            f"{', '.join(str(p) for p in paths)}: every file is empty, there is nothing to analyse"
        )
    _check_attributes(attributes, sources)

    names = []
    for s in sources:
        name = f"jsonl/{s.flavour}" if s.format == "jsonl" and s.flavour else s.format
        if name not in names:
            names.append(name)
    label = ", ".join(str(s.path) for s in sources)
    builder = TraceBuilder(label, "+".join(names), attributes=attributes)
    http = _Http(templates)
    total = sum(s.size for s in sources)
    done = 0
    several = len(sources) > 1
    for s in sources:
        reader: Callable[[int, str], Request | None]
        if s.format in ("clf", "combined"):
            reader = _ClfReader(http, builder)
        elif s.format == "jsonl":
            reader = _JsonReader(http, fields or {}, attributes, s.flavour)
        elif s.format == "csv":
            reader = _CsvReader(http, attributes)
        else:
            reader = _TwitterReader(http)
        done = _read_file(s, reader, builder, done, total, progress, several)
    trace = builder.build()
    if not len(trace):
        raise _nothing_read(trace, label)
    return trace


def _read_file(
    source: _Source,
    reader: Callable[[int, str], Request | None],
    builder: TraceBuilder,
    done: int,
    total: int,
    progress: Progress | None,
    several: bool,
) -> int:
    file = _File(source.path)
    raw = file.raw
    where = f"{source.path.name}: " if several else ""
    number = 0
    add = builder.add
    reject = builder.reject
    with file:
        lines = _lines(file.text)
        while True:
            try:
                text = next(lines)
            except StopIteration:
                break
            except _STREAM_ERRORS as exc:
                reject(number + 1, f"{where}the gzip stream is damaged or cut short ({exc})", "")
                break
            except OSError as exc:
                raise InvalidArgumentError(
                    f"cannot read {source.path}: {exc.strerror or exc}"
                ) from None
            number += 1
            if text is None:
                reject(number, f"{where}a line longer than {_MAX_LINE} characters", "")
                continue
            try:
                request = reader(number, text)
            except _Malformed as exc:
                if text and not text.isspace():  # blank lines are no requests, nor malformed
                    reject(number, f"{where}{exc}", text)
                continue
            except Exception as exc:  # one odd line must never stop a run
                reject(number, f"{where}unreadable: {type(exc).__name__}: {exc}", text)
                continue
            if request is not None:
                add(request)
            if progress is not None and number % _PROGRESS_EVERY == 0:
                progress(min(done + raw.tell(), total), total)
    done += source.size
    if progress is not None:
        progress(done, total)
    return done


def _nothing_read(trace: Trace, label: str) -> InvalidArgumentError:
    if trace.malformed:
        first = trace.malformed_examples[0]
        return InvalidArgumentError(
            f"no request could be read from {label} (format {trace.format}): all "
            f"{trace.malformed} lines are malformed; the first, line {first.line}: "
            f"{first.reason}: {first.text[:80]!r}. Is it the format you meant? give format= "
            "(--format) clf, combined, jsonl, csv or twitter"
        )
    return InvalidArgumentError(
        f"no request could be read from {label} (format {trace.format}): it holds no request lines"
    )
