"""Keys matching a pattern, on every master, by ``SCAN`` pages: bounded, never ``KEYS``."""

from __future__ import annotations

from redkit.core.flow import Flow
from redkit.core.ops import Masters, OnNode, command
from redkit.core.replies import as_int, as_text

__all__ = ["Found", "find_keys", "is_cluster"]

#: Keys asked of each ``SCAN`` page.
PAGE = 500


class Found(list[str]):
    """Matching keys; ``complete`` is ``False`` when the limit stopped the walk early."""

    complete: bool = True


def is_cluster() -> Flow[bool]:
    """Whether the keyspace is spread over several masters (a cluster)."""
    masters = yield Masters()
    return bool(masters != [None])


def find_keys(match: str, limit: int) -> Flow[Found]:
    """Up to ``limit`` keys that ``match`` (a ``SCAN MATCH`` pattern), from every master."""
    found = Found()
    for node in (yield Masters()):
        cursor = 0
        while True:
            cursor_reply, keys = yield OnNode(
                node, command("SCAN", cursor, "MATCH", match, "COUNT", PAGE)
            )
            cursor = as_int(cursor_reply)
            found.extend(as_text(key) for key in keys)
            if len(found) >= limit:
                del found[limit:]
                found.complete = False
                return found
            if cursor == 0:
                break
    return found
