"""What a keyspace scan found: the frozen report, and the tally that builds it batch by batch.

The tally keeps memory bounded however many keys are scanned: a prefix tree at most ``depth``
levels deep whose nodes track a bounded number of children (the rest go to ``other`` at once),
and the biggest keys in a heap of ``top`` entries. Memory is sampled (``MEMORY USAGE`` on every
Nth key), so each prefix's bytes are estimated as its sampled bytes scaled by its key count.
"""

from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "OTHER",
    "TTL_BUCKETS",
    "BigKey",
    "KeyspaceReport",
    "MasterCount",
    "PrefixNode",
    "Tally",
    "display_key",
    "ttl_bucket",
]

#: The name of a prefix tree node that sums the children left out.
OTHER = "(other)"

#: The TTL histogram's buckets, in order: upper bounds in ms (``None``: no TTL; the last: more).
TTL_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("none", None),
    ("<1m", 60_000),
    ("<1h", 3_600_000),
    ("<1d", 86_400_000),
    ("<7d", 7 * 86_400_000),
    (">=7d", None),
)

# How many children a node tracks while scanning, per child shown in the report: enough that
# the report's top children are the true top ones on any keyspace with a few large prefixes.
_TRACKED_PER_SHOWN = 50


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively: what JSON reads back."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def display_key(key: bytes | str) -> str:
    """A key name as text: UTF-8 where it is, other bytes escaped (backslash-x), never an error."""
    if isinstance(key, str):
        return key
    return key.decode("utf-8", errors="backslashreplace")


def ttl_bucket(pttl_ms: int) -> str:
    """The TTL histogram bucket of a ``PTTL`` reply (``-1``: no TTL)."""
    if pttl_ms < 0:
        return "none"
    for name, bound in TTL_BUCKETS[1:-1]:
        if bound is not None and pttl_ms < bound:
            return name
    return TTL_BUCKETS[-1][0]


@dataclass(frozen=True)
class PrefixNode:
    """One prefix of the tree: its keys, their estimated memory, and its biggest children.

    Attributes:
        prefix: the prefix, separator included (``"user:"``); the root's is ``""``.
        keys: keys under it (exact over what was scanned).
        memory_bytes: estimated bytes (sampled ``MEMORY USAGE``, scaled), or ``None`` when
            memory was not measured.
        children: the largest children by key count, then one ``(other)`` summing the rest.

    """

    prefix: str
    keys: int
    memory_bytes: int | None
    children: tuple[PrefixNode, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The node as plain JSON-ready data."""
        return dict(_plain(asdict(self)))


@dataclass(frozen=True)
class BigKey:
    """One of the biggest keys found (by ``MEMORY USAGE``; only sampled keys are measured)."""

    key: str
    memory_bytes: int
    type: str
    ttl_ms: int | None


@dataclass(frozen=True)
class MasterCount:
    """One master's share: ``DBSIZE`` before the scan, and the keys this scan returned there."""

    node: str
    dbsize: int
    scanned: int


@dataclass(frozen=True)
class KeyspaceReport:
    """The keyspace of a Redis (every master of a cluster), as one scan found it.

    Attributes:
        total_keys: the sum of ``DBSIZE`` over the masters when the scan began.
        scanned: keys the scan returned (all of them without ``match``; ``SCAN`` may return a
            key twice while the server resizes its table, so this is exact on a quiet server).
        masters: each master's ``DBSIZE`` and scanned count.
        match: the ``SCAN MATCH`` pattern, if one was given.
        tree: the prefix tree (the root holds every scanned key).
        ttl: keys per TTL bucket (:data:`TTL_BUCKETS`); ``none`` is keys without a TTL.
        types: keys per Redis type.
        biggest: the biggest sampled keys, biggest first.
        memory_sampled: keys whose ``MEMORY USAGE`` was read.
        memory_bytes: the estimated memory of the scanned keys, or ``None`` when not measured.
        memory_unavailable: why memory was not measured (``MEMORY USAGE`` refused...), if so.
        vanished: keys that expired or were deleted between ``SCAN`` and their ``PTTL``.
        seconds: how long the scan took.

    """

    total_keys: int
    scanned: int
    masters: tuple[MasterCount, ...]
    match: str | None
    tree: PrefixNode
    ttl: dict[str, int]
    types: dict[str, int]
    biggest: tuple[BigKey, ...]
    memory_sampled: int
    memory_bytes: int | None
    memory_unavailable: str | None
    vanished: int
    seconds: float

    @property
    def keys_without_ttl(self) -> int:
        """Keys that never expire."""
        return self.ttl.get("none", 0)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (``keys_without_ttl`` included)."""
        data: dict[str, Any] = _plain(asdict(self))
        data["keys_without_ttl"] = self.keys_without_ttl
        return data


@dataclass(slots=True)
class _Branch:
    """A prefix tree node while scanning."""

    keys: int = 0
    sampled: int = 0
    sampled_bytes: int = 0
    children: dict[bytes, _Branch] = field(default_factory=dict)
    other: _Branch | None = None

    def child(self, part: bytes, tracked: int) -> _Branch:
        found = self.children.get(part)
        if found is not None:
            return found
        if len(self.children) < tracked:
            found = self.children[part] = _Branch()
            return found
        if self.other is None:
            self.other = _Branch()
        return self.other


class Tally:
    """Counts what a scan finds, batch by batch, in bounded memory; :meth:`report` freezes it."""

    def __init__(self, *, separator: bytes, depth: int, width: int, top: int) -> None:
        self._separator = separator
        self._depth = depth
        self._width = width
        self._tracked = width * _TRACKED_PER_SHOWN
        self._top = top
        self._root = _Branch()
        self._biggest: list[tuple[int, int, bytes, str, int | None]] = []  # a min-heap
        self._seen = 0
        self.ttl: dict[str, int] = {name: 0 for name, _ in TTL_BUCKETS}
        self.types: dict[str, int] = {}
        self.vanished = 0
        #: Why ``MEMORY USAGE`` cannot be read, once a reply said so.
        self.memory_refused: str | None = None

    @property
    def counted(self) -> int:
        """Keys counted so far (vanished ones excluded)."""
        return self._root.keys

    def add(self, key: bytes, kind: str, pttl_ms: int, memory: int | None) -> None:
        """Count one key: its type, its ``PTTL`` and, when sampled, its ``MEMORY USAGE``."""
        # The hot loop of a scan (once per key): one pass down the tree, nothing allocated
        # but the split.
        if pttl_ms == -2 or kind == "none":
            self.vanished += 1  # gone since SCAN returned it
            return
        self.ttl["none" if pttl_ms < 0 else ttl_bucket(pttl_ms)] += 1
        types = self.types
        types[kind] = types.get(kind, 0) + 1
        node = self._root
        parts = key.split(self._separator, self._depth)
        parts.pop()  # the last part is the key's own name, not a prefix
        size = -1 if memory is None else memory
        while True:
            node.keys += 1
            if size >= 0:
                node.sampled += 1
                node.sampled_bytes += size
            if not parts:
                break
            node = node.child(parts.pop(0), self._tracked)
        if size >= 0 and self._top > 0:
            self._seen += 1
            entry = (size, -self._seen, key, kind, None if pttl_ms < 0 else pttl_ms)
            if len(self._biggest) < self._top:
                heapq.heappush(self._biggest, entry)
            elif entry > self._biggest[0]:
                heapq.heapreplace(self._biggest, entry)

    def report(
        self,
        *,
        masters: tuple[MasterCount, ...],
        match: str | None,
        memory_unavailable: str | None,
        seconds: float,
    ) -> KeyspaceReport:
        """The frozen report of everything counted."""
        measured = memory_unavailable is None
        tree = self._freeze("", self._root, 0.0, measured)
        biggest = tuple(
            BigKey(display_key(key), memory, kind, ttl)
            for memory, _, key, kind, ttl in sorted(self._biggest, reverse=True)
        )
        return KeyspaceReport(
            total_keys=sum(m.dbsize for m in masters),
            scanned=sum(m.scanned for m in masters),
            masters=masters,
            match=match,
            tree=tree,
            ttl=dict(self.ttl),
            types=dict(sorted(self.types.items(), key=lambda item: -item[1])),
            biggest=biggest,
            memory_sampled=self._root.sampled,
            memory_bytes=tree.memory_bytes,
            memory_unavailable=memory_unavailable,
            vanished=self.vanished,
            seconds=seconds,
        )

    def _freeze(self, prefix: str, node: _Branch, inherited: float, measured: bool) -> PrefixNode:
        # A prefix with no sample takes the mean of its nearest sampled ancestor.
        mean = node.sampled_bytes / node.sampled if node.sampled else inherited
        ranked = sorted(node.children.items(), key=lambda item: -item[1].keys)
        shown = ranked[: self._width]
        rest = [branch for _, branch in ranked[self._width :]]
        if node.other is not None:
            rest.append(node.other)
        sep = display_key(self._separator)
        children = [
            self._freeze(f"{prefix}{display_key(part)}{sep}", branch, mean, measured)
            for part, branch in shown
        ]
        if rest:
            other = _Branch(
                keys=sum(b.keys for b in rest),
                sampled=sum(b.sampled for b in rest),
                sampled_bytes=sum(b.sampled_bytes for b in rest),
            )
            children.append(self._freeze(prefix + OTHER, other, mean, measured))
        return PrefixNode(
            prefix=prefix,
            keys=node.keys,
            memory_bytes=round(mean * node.keys) if measured else None,
            children=tuple(children),
        )
