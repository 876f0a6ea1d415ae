"""The keyspace report: ``SCAN`` on every master, never ``KEYS``, at a bounded load.

One flow, :func:`keyspace_flow`, does the work for :func:`scan_keyspace` (blocking) and
:func:`ascan_keyspace` (asyncio). Per master it walks ``SCAN`` pages of ``count`` keys; for
each page it sends one pipeline (``TYPE`` and ``PTTL`` of each key, ``MEMORY USAGE`` of every
``sample_memory``-th), then sleeps ``pause`` seconds so the server serves its other clients
between batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypedDict

from redkit.core.errors import BackendError, CommandError, InvalidArgumentError
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Arg, Call, Command, Masters, OnNode, Pipeline, Sleep, command
from redkit.core.replies import as_int, as_text
from redkit.core.scripts import load_script
from redkit.ops.backends import aowned, owned
from redkit.ops.keys import check_pause
from redkit.ops.report import KeyspaceReport, MasterCount, Tally

if TYPE_CHECKING:
    # Annotations only (never evaluated): typing has Unpack from Python 3.11.
    from typing_extensions import Unpack

__all__ = ["KeyspaceOptions", "Progress", "ascan_keyspace", "keyspace_flow", "scan_keyspace"]

#: ``progress(scanned, estimated_total)``, called after each batch (the total from ``DBSIZE``).
Progress = Callable[[int, int], Any]

#: The one-call script that reads a page's facts.
_KEY_FACTS = load_script("redkit.ops", "key_facts")

#: Keys whose facts one call reads (a page is sent in calls of this many).
FACTS_BATCH = 250

# MEMORY USAGE's SAMPLES: how many elements of an aggregate it measures to estimate the rest.
_MEMORY_SAMPLES = 5


def _check_match(match: object) -> None:
    if match is not None and (not isinstance(match, str) or not match):
        raise InvalidArgumentError(
            "match must be a non-empty SCAN MATCH glob such as 'session:*', or None for the "
            f"whole keyspace; got {match!r}"
        )


def _check(
    count: int, pause: float, sample_memory: int, separator: str, depth: int, width: int, top: int
) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 100_000:
        raise InvalidArgumentError(f"count must be an int from 1 to 100000, got {count!r}")
    check_pause(pause)
    for name, value, low in (
        ("sample_memory", sample_memory, 0),
        ("depth", depth, 0),
        ("width", width, 1),
        ("top", top, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InvalidArgumentError(f"{name} must be an int of at least {low}, got {value!r}")
    if not isinstance(separator, str) or not separator:
        raise InvalidArgumentError(f"separator must be a non-empty string, got {separator!r}")


def _key_bytes(key: Any) -> bytes:
    return key if isinstance(key, bytes) else str(key).encode("utf-8", "surrogateescape")


def _node_name(node: object) -> str:
    return "standalone" if node is None else str(node)


def _is_text(key: Any) -> bool:
    if isinstance(key, str):
        return True
    try:
        key.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Facts:
    """How a page's facts are read: by the one-call script while the server takes it.

    The script (``ops/lua/key_facts.lua``) sends a page's ``TYPE``, ``PTTL`` and sampled
    ``MEMORY USAGE`` in one command whose reply hiredis parses in C: several times faster
    than a pipeline of 2,000 commands built in Python. The keys go as ``KEYS`` first; a
    cluster refuses that (a node's page spans many slots: ``CROSSSLOT``), so they go as
    arguments to the node that ``SCAN`` named, which holds them all. A server that refuses
    both (an ACL, an API without scripts or with key locking) gets the pipeline from then on.
    """

    #: How the next page is read: keys declared, keys as arguments, or a pipeline.
    modes = ("declared", "arguments", "pipeline")

    def __init__(self) -> None:
        self.mode = "declared"

    def read(
        self, node: str | None, page: list[Any], memory_every: int, before: int
    ) -> Flow[list[Any] | None]:
        """Three replies per key (type, pttl, bytes or -1), or ``None`` once refused."""
        while self.mode != "pipeline":
            head: tuple[Arg, ...] = (memory_every, before, _MEMORY_SAMPLES)
            if self.mode == "declared":
                tail: tuple[Arg, ...] = (len(page), *page, *head)
            else:
                tail = (0, *head, *page)
            try:
                return list((yield from self._call(node, tail)))
            except CommandError:
                self.mode = self.modes[self.modes.index(self.mode) + 1]
        return None

    def _call(self, node: str | None, tail: tuple[Arg, ...]) -> Flow[Any]:
        try:
            return (yield OnNode(node, command("EVALSHA", _KEY_FACTS.sha, *tail)))
        except CommandError:
            # NOSCRIPT (its wording differs between drivers): send the source. Any other
            # refusal comes back from EVAL too, which settles it.
            return (yield OnNode(node, command("EVAL", _KEY_FACTS.source, *tail)))


def _tally_page(
    tally: Tally, facts: _Facts, node: str | None, page: list[Any], memory_every: int, nth: int
) -> Flow[None]:
    """Count one ``SCAN`` page, :data:`FACTS_BATCH` keys a call.

    Redis runs one command at a time, so a call's length is what another client may wait
    behind it: about 0.4 ms for 250 keys, where a whole page of 1,000 would hold it 1.6 ms.
    """
    for start in range(0, len(page), FACTS_BATCH):
        chunk = page[start : start + FACTS_BATCH]
        yield from _tally_chunk(tally, facts, node, chunk, memory_every, nth + start)


def _tally_chunk(
    tally: Tally, facts: _Facts, node: str | None, page: list[Any], memory_every: int, nth: int
) -> Flow[None]:
    """Count some keys of a page: ``TYPE``, ``PTTL`` and sampled ``MEMORY USAGE`` of each."""
    scripted = yield from facts.read(node, page, memory_every, nth)
    if scripted is not None:
        kinds: dict[Any, str] = {}  # a handful of types: each reply decoded once a page
        for index, key in enumerate(page):
            kind, pttl, memory = scripted[3 * index : 3 * index + 3]
            name = kinds.get(kind)
            if name is None:
                name = kinds[kind] = as_text(kind)
            size = as_int(memory)
            tally.add(_key_bytes(key), name, as_int(pttl), None if size < 0 else size)
        return
    ops: list[Command] = []
    sampled: list[bool] = []
    alone: dict[int, Any] = {}
    for index, key in enumerate(page, start=nth + 1):
        ops += [command("TYPE", key), command("PTTL", key)]
        sample = memory_every > 0 and index % memory_every == 0
        if sample and node is not None and not _is_text(key):
            # redis-py's cluster client routes MEMORY USAGE of a non-UTF-8 key to the wrong
            # slot; the node that SCAN named holds the key, so ask it directly.
            alone[index] = yield OnNode(node, _memory_usage(key))
            sample = False
        elif sample:
            ops.append(_memory_usage(key))
        sampled.append(sample)
    replies = iter((yield Pipeline(tuple(ops))))
    for index, (key, sample) in enumerate(zip(page, sampled, strict=True), start=nth + 1):
        kind, pttl = next(replies), next(replies)
        memory = next(replies) if sample else alone.get(index)
        for reply in (kind, pttl):
            if isinstance(reply, BackendError):
                raise reply
        if isinstance(memory, CommandError):
            # Refused (an ACL, a REST API without it): the report goes on without memory.
            tally.memory_refused = f"MEMORY USAGE failed: {memory}"
        elif isinstance(memory, BackendError):
            raise memory
        usable = memory is not None and tally.memory_refused is None
        tally.add(_key_bytes(key), as_text(kind), as_int(pttl), as_int(memory) if usable else None)


def _memory_usage(key: Any) -> Command:
    return command("MEMORY", "USAGE", key, "SAMPLES", _MEMORY_SAMPLES)


def keyspace_flow(
    *,
    match: str | None = None,
    count: int = 1000,
    pause: float = 0.001,
    sample_memory: int = 10,
    separator: str = ":",
    depth: int = 3,
    width: int = 20,
    top: int = 20,
    progress: Progress | None = None,
) -> Flow[KeyspaceReport]:
    """The keyspace report as a flow; see :func:`scan_keyspace` for the arguments.

    The arguments are checked here, before any round trip.
    """
    _check_match(match)
    _check(count, pause, sample_memory, separator, depth, width, top)
    return _keyspace(match, count, pause, sample_memory, separator, depth, width, top, progress)


def _keyspace(
    match: str | None,
    count: int,
    pause: float,
    sample_memory: int,
    separator: str,
    depth: int,
    width: int,
    top: int,
    progress: Progress | None,
) -> Flow[KeyspaceReport]:
    started = time.monotonic()
    tally = Tally(separator=separator.encode(), depth=depth, width=width, top=top)
    facts = _Facts()
    nodes = list((yield Masters()))
    sizes: list[int] = []
    for node in nodes:
        sizes.append(as_int((yield OnNode(node, command("DBSIZE")))))
    estimated = sum(sizes)
    unavailable = None if sample_memory else "memory sampling is off (sample_memory=0)"
    memory_every = sample_memory
    scan_tail: tuple[Arg, ...] = ("COUNT", count)
    if match is not None:
        scan_tail = ("MATCH", match, *scan_tail)
    masters: list[MasterCount] = []
    scanned = 0
    for node, size in zip(nodes, sizes, strict=True):
        cursor = 0
        on_node = 0
        while True:
            cursor_reply, found = yield OnNode(node, command("SCAN", cursor, *scan_tail))
            cursor = as_int(cursor_reply)
            page = list(found)  # sent back as they came: bytes over RESP, text over REST
            if page:
                yield from _tally_page(tally, facts, node, page, memory_every, scanned)
                if memory_every and tally.memory_refused is not None:
                    unavailable, memory_every = tally.memory_refused, 0
                scanned += len(page)
                on_node += len(page)
                if progress is not None:
                    yield Call(progress, (scanned, max(estimated, scanned)))
            if cursor == 0:
                break
            if pause:
                yield Sleep(pause)
        masters.append(MasterCount(_node_name(node), size, on_node))
    return tally.report(
        masters=tuple(masters),
        match=match,
        memory_unavailable=unavailable,
        seconds=time.monotonic() - started,
    )


class KeyspaceOptions(TypedDict, total=False):
    """The keyword arguments of :func:`scan_keyspace` and :func:`ascan_keyspace`."""

    match: str | None
    count: int
    pause: float
    sample_memory: int
    separator: str
    depth: int
    width: int
    top: int
    progress: Progress | None


def scan_keyspace(redis: object, **options: Unpack[KeyspaceOptions]) -> KeyspaceReport:
    """Scan the whole keyspace of ``redis`` (every master of a cluster) and report on it.

    Args:
        redis: a redkit connection, a Redis URL or a redis-py client.
        **options: any of these keywords (defaults in brackets):
            ``match``: a ``SCAN MATCH`` glob, to report on part of the keyspace only (its
            wildcards are yours; :func:`redkit.core.keys.glob_escape` makes a part literal).
            ``count`` (1000): ``SCAN``'s ``COUNT``, keys asked for per batch (1 to 100000).
            ``pause`` (0.001): seconds to sleep between batches, so others are served.
            ``sample_memory`` (10): read ``MEMORY USAGE`` of every Nth key (1: all; 0: none).
            ``separator`` (``":"``): what splits a key into prefixes.
            ``depth`` (3): prefix levels in the tree.
            ``width`` (20): children shown per prefix; the rest are summed as ``(other)``.
            ``top`` (20): how many of the biggest keys to keep.
            ``progress``: called after each batch with (keys scanned, estimated total).

    Returns:
        The :class:`~redkit.ops.report.KeyspaceReport`.

    Raises:
        InvalidArgumentError: for an argument out of range.
        BackendError: when Redis fails (``MEMORY USAGE`` refused is reported, not raised).

    """
    flow = keyspace_flow(**options)
    with owned(redis) as backend:
        return run_sync(flow, backend.sync_driver())


async def ascan_keyspace(redis: object, **options: Unpack[KeyspaceOptions]) -> KeyspaceReport:
    """:func:`scan_keyspace` in asyncio (``progress`` may be an ``async def`` function)."""
    flow = keyspace_flow(**options)
    async with aowned(redis) as backend:
        return await run_async(flow, backend.async_driver())
