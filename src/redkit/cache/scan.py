"""Deleting by pattern: ``SCAN`` on every master, one page and one pipelined ``UNLINK`` a step.

Never ``KEYS``: each step is one ``SCAN`` page, so Redis stays responsive however many keys
match. A pattern's own wildcards (``*``, ``?``, ``[...]``) are the developer's; the parts put
into it, which may come from users, are matched literally and can never widen it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redkit.core import keys
from redkit.core.errors import BackendError, InvalidArgumentError
from redkit.core.flow import Flow
from redkit.core.ops import Call, Masters, OnNode, Pipeline, command
from redkit.core.replies import as_int

__all__ = ["delete_matching", "scan_pattern"]


def scan_pattern(pattern: str, parts: tuple[str | int, ...], namespace: str, max_bytes: int) -> str:
    """The ``SCAN MATCH`` pattern of a cache-key pattern: each ``{}`` takes one part, escaped.

    ``namespace`` is the start of every key of the cache (matched literally); each part is a
    cache key part of at most ``max_bytes``.
    """
    literal = [keys.glob_escape(keys.verbatim(p, max_bytes=max_bytes)) for p in parts]
    try:
        filled = pattern.format(*literal)
    except (IndexError, KeyError, ValueError) as exc:
        raise InvalidArgumentError(
            f"pattern {pattern!r} needs one {{}} per part ({len(parts)} given): {exc}"
        ) from exc
    return keys.glob_escape(namespace) + filled


def delete_matching(
    match: str, batch: int, progress: Callable[[int], Any] | None = None
) -> Flow[int]:
    """Delete every key that ``match`` (a ``SCAN MATCH`` pattern) matches, on every master.

    ``progress`` is called with the running count after each batch. Returns how many keys
    were deleted.
    """
    deleted = 0
    for node in (yield Masters()):
        cursor = 0
        while True:
            cursor_reply, found = yield OnNode(
                node, command("SCAN", cursor, "MATCH", match, "COUNT", batch)
            )
            cursor = as_int(cursor_reply)
            if found:
                # One UNLINK per key: on a cluster the keys of one node span many slots.
                replies = yield Pipeline(tuple(command("UNLINK", k) for k in found))
                for reply in replies:
                    if isinstance(reply, BackendError):
                        raise reply
                deleted += sum(as_int(reply) for reply in replies)
                if progress is not None:
                    yield Call(progress, (deleted,))
            if cursor == 0:
                break
    return deleted
