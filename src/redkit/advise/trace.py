"""A trace: the requests of a log, in time order, held as columns.

Readers (:mod:`redkit.advise.readers`) turn each line of a log into a :class:`Request`; a
:class:`TraceBuilder` keeps them as compact columns (an ``array`` per field, each string kept
once in a table), so a million-line log costs tens of megabytes, not the gigabyte a million
objects would, and the strings of the trace grow with its distinct keys and clients only.
:meth:`TraceBuilder.build` sorts the requests stably by time (logs are written when requests
end, so they are often slightly out of order) and gives the :class:`Trace` the analyses read.

The three kinds of request (:class:`Op`):

- ``READ``: a read the cache would serve (an HTTP ``GET``/``HEAD`` answered 200; a cache
  trace's ``get``);
- ``WRITE``: a change of the resource, which invalidates its cached entry (an HTTP ``POST``,
  ``PUT``, ``PATCH`` or ``DELETE``, keyed by its path without query; a cache trace's ``set`` or
  ``delete``);
- ``OTHER``: any other request (a 404, a redirect, ``OPTIONS``): it counts for rate limits only.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

__all__ = ["Malformed", "Op", "Request", "Strings", "Trace", "TraceBuilder"]


class Op(IntEnum):
    """What a request does to the cache."""

    READ = 0
    WRITE = 1
    OTHER = 2


class Request(NamedTuple):
    """One request of a log, as a reader yields it.

    ``key`` names the cached resource (the route template's path with its ids, and the
    normalised query), ``namespace`` the group it belongs to (the route template,
    ``/api/users/{id}``; a cache trace's namespace). ``attributes`` holds the fields a caller
    asked the reader for (``header:X-API-Key``), by name.
    """

    time: float  # seconds since the epoch
    line: int  # where it was read, from 1
    op: Op
    key: str
    namespace: str
    size: int | None = None  # bytes of the response or value
    ttl: float | None = None  # seconds, when the trace records one
    client: str | None = None  # the client's address or id
    user: str | None = None  # the authenticated user, when the log has one
    user_agent: str | None = None
    status: int | None = None
    method: str | None = None
    attributes: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Malformed:
    """A line that could not be read: where, why, and its start."""

    line: int
    reason: str
    text: str


class Strings:
    """Each distinct string once, numbered from 0 in order of arrival; ``-1`` is "none"."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def id(self, value: str | None) -> int:
        """The number of ``value`` (``-1`` for ``None``), adding it when new."""
        if value is None:
            return -1
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found

    def __getitem__(self, number: int) -> str | None:
        return None if number < 0 else self.values[number]

    def __len__(self) -> int:
        return len(self.values)


def _column(kind: str) -> array:  # type: ignore[type-arg]
    return array(kind)


@dataclass
class Trace:
    """The requests of one or more logs, sorted stably by time, as columns.

    Row ``i`` is request ``i``: ``times[i]`` (seconds since the epoch), ``ops[i]`` (an
    :class:`Op` value), ``keys[i]`` (a number in :attr:`key_names`), and so on; ``-1`` (or
    ``nan`` for ``ttls``) where the log said nothing. :meth:`requests` gives the rows back as
    :class:`Request` tuples, for code that prefers them to speed.
    """

    source: str
    format: str
    times: array = field(default_factory=lambda: _column("d"))  # type: ignore[type-arg]
    lines: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    ops: array = field(default_factory=lambda: _column("b"))  # type: ignore[type-arg]
    keys: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    namespaces: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    sizes: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    ttls: array = field(default_factory=lambda: _column("d"))  # type: ignore[type-arg]
    clients: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    users: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    user_agents: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    statuses: array = field(default_factory=lambda: _column("h"))  # type: ignore[type-arg]
    methods: array = field(default_factory=lambda: _column("q"))  # type: ignore[type-arg]
    #: One column per attribute asked for (``header:X-API-Key``), numbers in :attr:`strings`.
    attributes: dict[str, array] = field(default_factory=dict)  # type: ignore[type-arg]
    key_names: Strings = field(default_factory=Strings)
    namespace_names: Strings = field(default_factory=Strings)
    #: Clients, users, user agents, methods and attribute values share one table.
    strings: Strings = field(default_factory=Strings)
    #: Lines read (good and malformed), and the malformed ones: a count and the first few.
    lines_read: int = 0
    malformed: int = 0
    malformed_examples: list[Malformed] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def start(self) -> float:
        """The time of the first request (``nan`` for an empty trace)."""
        return self.times[0] if self.times else math.nan

    @property
    def end(self) -> float:
        """The time of the last request (``nan`` for an empty trace)."""
        return self.times[-1] if self.times else math.nan

    @property
    def duration(self) -> float:
        """Seconds from the first request to the last (0 for fewer than two)."""
        return self.times[-1] - self.times[0] if len(self.times) > 1 else 0.0

    def request(self, index: int) -> Request:
        """Row ``index`` as a :class:`Request`."""
        size = self.sizes[index]
        ttl = self.ttls[index]
        status = self.statuses[index]
        attributes = {
            name: value
            for name, column in self.attributes.items()
            if (value := self.strings[column[index]]) is not None
        }
        return Request(
            time=self.times[index],
            line=self.lines[index],
            op=Op(self.ops[index]),
            key=self.key_names[self.keys[index]] or "",
            namespace=self.namespace_names[self.namespaces[index]] or "",
            size=None if size < 0 else size,
            ttl=None if math.isnan(ttl) else ttl,
            client=self.strings[self.clients[index]],
            user=self.strings[self.users[index]],
            user_agent=self.strings[self.user_agents[index]],
            status=None if status < 0 else status,
            method=self.strings[self.methods[index]],
            attributes=attributes or None,
        )

    def requests(self) -> Iterator[Request]:
        """Every row as a :class:`Request`, in time order."""
        return (self.request(index) for index in range(len(self.times)))


#: How many malformed lines a trace keeps as examples (all are counted).
MALFORMED_EXAMPLES = 5


class TraceBuilder:
    """Collects requests (in any order) into a :class:`Trace`.

    ``attributes`` names the :attr:`Request.attributes` to keep as columns; others are
    dropped, so a trace holds only what the analysis asked for.
    """

    def __init__(self, source: str, format: str, *, attributes: Iterable[str] = ()) -> None:
        self._trace = Trace(source=source, format=format)
        self._attribute_names = tuple(attributes)
        for name in self._attribute_names:
            self._trace.attributes[name] = _column("q")
        self._sorted = True
        self._last = -math.inf

    def add_row(
        self,
        time: float,
        line: int,
        op: int,
        key: str,
        namespace: str,
        size: int,
        ttl: float,
        client: str | None,
        user: str | None,
        user_agent: str | None,
        status: int,
        method: str | None,
        attributes: Mapping[str, str] | None,
    ) -> None:
        """Append one request given as its fields (-1 or nan where unknown, as the columns).

        The row :meth:`add` appends for a :class:`Request`, without building one: a reader's
        fast path for the common access-log line, a million times per log.
        """
        t = self._trace
        if time < self._last:
            self._sorted = False
        self._last = time
        t.lines_read += 1
        t.times.append(time)
        t.lines.append(line)
        t.ops.append(op)
        index = t.key_names._index
        found = index.get(key)
        t.keys.append(t.key_names.id(key) if found is None else found)
        index = t.namespace_names._index
        found = index.get(namespace)
        t.namespaces.append(t.namespace_names.id(namespace) if found is None else found)
        t.sizes.append(size)
        t.ttls.append(ttl)
        # Unrolled, with the lookup inline: a loop or a call per value costs a million times.
        strings = t.strings
        index = strings._index
        found = -1 if client is None else index.get(client)
        t.clients.append(strings.id(client) if found is None else found)
        found = -1 if user is None else index.get(user)
        t.users.append(strings.id(user) if found is None else found)
        found = -1 if user_agent is None else index.get(user_agent)
        t.user_agents.append(strings.id(user_agent) if found is None else found)
        found = -1 if method is None else index.get(method)
        t.methods.append(strings.id(method) if found is None else found)
        t.statuses.append(status)
        if self._attribute_names:
            given = attributes or {}
            for name in self._attribute_names:
                t.attributes[name].append(strings.id(given.get(name)))

    def add(self, request: Request) -> None:
        """Append one request."""
        self.add_row(
            request.time, request.line, int(request.op), request.key, request.namespace,
            -1 if request.size is None else request.size,
            math.nan if request.ttl is None else request.ttl,
            request.client, request.user, request.user_agent,
            -1 if request.status is None else request.status, request.method, request.attributes,
        )  # fmt: skip

    def reject(self, line: int, reason: str, text: str) -> None:
        """Count a malformed line (the first few are kept, with their number and start)."""
        t = self._trace
        t.lines_read += 1
        t.malformed += 1
        if len(t.malformed_examples) < MALFORMED_EXAMPLES:
            t.malformed_examples.append(Malformed(line, reason, text[:200]))

    def build(self) -> Trace:
        """The trace, sorted stably by time (by time, then by order of arrival)."""
        t = self._trace
        if not self._sorted:
            order = sorted(range(len(t.times)), key=t.times.__getitem__)  # stable
            for name in (
                "times", "lines", "ops", "keys", "namespaces", "sizes", "ttls", "clients",
                "users", "user_agents", "statuses", "methods",
            ):  # fmt: skip
                column = getattr(t, name)
                setattr(t, name, array(column.typecode, map(column.__getitem__, order)))
            for name, column in t.attributes.items():
                t.attributes[name] = array(column.typecode, map(column.__getitem__, order))
            self._sorted = True
        return t
