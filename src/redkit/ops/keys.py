"""Counting and deleting keys by pattern: ``SCAN MATCH`` on every master, ``UNLINK`` in batches.

Never ``KEYS``. The pattern is a ``SCAN MATCH`` glob and its wildcards are the caller's: to
match a part literally (an id a user typed), escape it with
:func:`redkit.core.keys.glob_escape`. An empty pattern is refused, and so is a deletion whose
pattern has only wildcards (``*``, ``?*``, ``[a-z]*``: no character of its own, so it may match
every key) unless ``everything=True`` says that is meant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from redkit.core.errors import BackendError, InvalidArgumentError
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Call, Masters, OnNode, Pipeline, Sleep, command
from redkit.core.replies import as_int
from redkit.ops.backends import aowned, owned
from redkit.ops.report import display_key

if TYPE_CHECKING:
    # Annotations only (never evaluated): typing has Unpack from Python 3.11.
    from typing_extensions import Unpack

__all__ = [
    "DeleteOptions",
    "KeyDeletion",
    "acount_keys",
    "adelete_keys",
    "check_pause",
    "count_keys",
    "delete_keys",
    "match_flow",
]

#: ``progress(matched, deleted)``, called after each batch.
DeleteProgress = Callable[[int, int], Any]

# Keys a dry run lists, so the user sees what the pattern catches.
_EXAMPLES = 20


@dataclass(frozen=True)
class KeyDeletion:
    """What :func:`delete_keys` did, or would do in a dry run.

    Attributes:
        pattern: the ``SCAN MATCH`` pattern.
        matched: keys the scan matched.
        deleted: keys ``UNLINK`` removed (0 in a dry run; fewer than ``matched`` when some
            expired meanwhile).
        dry_run: whether nothing was deleted.
        examples: the first matched keys (non-UTF-8 bytes escaped).

    """

    pattern: str
    matched: int
    deleted: int
    dry_run: bool
    examples: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "pattern": self.pattern,
            "matched": self.matched,
            "deleted": self.deleted,
            "dry_run": self.dry_run,
            "examples": list(self.examples),
        }


def check_pause(pause: object) -> None:
    """Refuse a pause between batches that is not a number of seconds from 0 to 60."""
    if isinstance(pause, bool) or not isinstance(pause, (int, float)) or not 0 <= pause <= 60:
        raise InvalidArgumentError(f"pause must be seconds from 0 to 60, got {pause!r}")


def _has_literal(pattern: str) -> bool:
    """Whether the glob names at least one character itself (not ``*``, ``?`` nor a ``[set]``)."""
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            return i + 1 < len(pattern)
        if char == "[":
            i += 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif char not in "*?":
            return True
        i += 1
    return False


def _checked(pattern: object, *, deleting: bool, everything: bool, batch: int) -> str:
    if not isinstance(pattern, str):
        raise InvalidArgumentError(
            f"the pattern must be a string, a SCAN MATCH glob such as 'session:*'; got "
            f"{type(pattern).__name__}"
        )
    if not pattern:
        raise InvalidArgumentError(
            "the pattern is empty: give a SCAN MATCH glob such as 'session:*'"
        )
    # Wildcards alone ("*", "?*", "[a-z]*") may match every key: only on purpose.
    if deleting and not everything and not _has_literal(pattern):
        raise InvalidArgumentError(
            f"the pattern {pattern!r} has only wildcards, so it may match every key: name a "
            "part of the keys ('tmp:*') or pass everything=True (--all) to delete them all"
        )
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 100_000:
        raise InvalidArgumentError(f"batch must be an int from 1 to 100000, got {batch!r}")
    return pattern


def match_flow(
    pattern: str,
    *,
    delete: bool,
    batch: int = 1000,
    pause: float = 0.0,
    progress: DeleteProgress | None = None,
) -> Flow[KeyDeletion]:
    """Scan every master for ``pattern``; ``UNLINK`` each page's keys when ``delete``."""
    matched = deleted = 0
    examples: list[str] = []
    for node in (yield Masters()):
        cursor = 0
        while True:
            cursor_reply, found = yield OnNode(
                node, command("SCAN", cursor, "MATCH", pattern, "COUNT", batch)
            )
            cursor = as_int(cursor_reply)
            matched += len(found)
            examples += [display_key(key) for key in found[: _EXAMPLES - len(examples)]]
            if found and delete:
                # One UNLINK per key: on a cluster, one node's keys span many slots.
                replies = yield Pipeline(tuple(command("UNLINK", key) for key in found))
                for reply in replies:
                    if isinstance(reply, BackendError):
                        raise reply
                deleted += sum(as_int(reply) for reply in replies)
            if found and progress is not None:
                yield Call(progress, (matched, deleted))
            if cursor == 0:
                break
            if pause:
                yield Sleep(pause)
    return KeyDeletion(pattern, matched, deleted, not delete, tuple(examples))


def count_keys(redis: object, pattern: str, *, batch: int = 1000) -> int:
    """How many keys match ``pattern`` (a ``SCAN MATCH`` glob), over every master.

    Raises:
        InvalidArgumentError: for an empty pattern.

    """
    _checked(pattern, deleting=False, everything=False, batch=batch)
    with owned(redis) as backend:
        return run_sync(
            match_flow(pattern, delete=False, batch=batch), backend.sync_driver()
        ).matched


async def acount_keys(redis: object, pattern: str, *, batch: int = 1000) -> int:
    """:func:`count_keys` in asyncio."""
    _checked(pattern, deleting=False, everything=False, batch=batch)
    flow = match_flow(pattern, delete=False, batch=batch)
    async with aowned(redis) as backend:
        return (await run_async(flow, backend.async_driver())).matched


class DeleteOptions(TypedDict, total=False):
    """The keyword arguments of :func:`delete_keys` and :func:`adelete_keys`."""

    dry_run: bool
    everything: bool
    batch: int
    pause: float
    progress: DeleteProgress | None


def _delete_flow(pattern: str, options: DeleteOptions) -> Flow[KeyDeletion]:
    dry_run = options.get("dry_run", True)
    everything = options.get("everything", False)
    # A truthy string ("no") must not mean yes: these two decide what is deleted.
    for flag, value in (("dry_run", dry_run), ("everything", everything)):
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"{flag} must be True or False, got {value!r}")
    batch = options.get("batch", 1000)
    _checked(pattern, deleting=True, everything=everything, batch=batch)
    check_pause(options.get("pause", 0.0))
    return match_flow(
        pattern,
        delete=not dry_run,
        batch=batch,
        pause=options.get("pause", 0.0),
        progress=options.get("progress"),
    )


def delete_keys(redis: object, pattern: str, **options: Unpack[DeleteOptions]) -> KeyDeletion:
    """Delete the keys matching ``pattern`` on every master, a ``SCAN`` page at a time.

    Args:
        redis: a redkit connection, a Redis URL or a redis-py client.
        pattern: a ``SCAN MATCH`` glob; its wildcards are yours (see
            :func:`redkit.core.keys.glob_escape` for literal parts).
        **options: any of these keywords (defaults in brackets):
            ``dry_run`` (True): only count and list what would go.
            ``everything`` (False): allow a pattern of wildcards alone (``*``, ``?*``), which
            may match every key.
            ``batch`` (1000): ``SCAN``'s ``COUNT``, the most keys one pipelined ``UNLINK``
            removes.
            ``pause`` (0): seconds to sleep between batches.
            ``progress``: called after each batch with (matched, deleted).

    Raises:
        InvalidArgumentError: for an empty pattern, or one of wildcards alone (``*``,
            ``?*``) without ``everything=True``.

    """
    flow = _delete_flow(pattern, options)
    with owned(redis) as backend:
        return run_sync(flow, backend.sync_driver())


async def adelete_keys(
    redis: object, pattern: str, **options: Unpack[DeleteOptions]
) -> KeyDeletion:
    """:func:`delete_keys` in asyncio."""
    flow = _delete_flow(pattern, options)
    async with aowned(redis) as backend:
        return await run_async(flow, backend.async_driver())
