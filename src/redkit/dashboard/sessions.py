"""The sessions page: how many sessions live under a store's prefix, and who holds them.

Read from the layout of :mod:`redkit.sessions.flows`: a record ``<prefix>:{<handle>}`` per
session and a per-user index ``<prefix>:user:{<user id as JSON>}``. Both are found by bounded
``SCAN`` pages; a user's count is their live sessions (the index read as the store reads it).
"""

from __future__ import annotations

import json
from typing import Any

from redkit.core import keys
from redkit.core.errors import BackendError
from redkit.core.flow import Flow
from redkit.core.ops import Pipeline, command
from redkit.core.replies import as_int
from redkit.dashboard.scan import find_keys
from redkit.sessions.flows import SessionFlows

__all__ = ["session_report", "user_of_index"]

#: The most session records counted, and user indexes read, per page view.
MAX_RECORDS = 100_000
MAX_USERS = 1000


def user_of_index(prefix: str, key: str) -> str | int | None:
    """The user id of an index key ``<prefix>:user:{<escaped JSON>}``; ``None`` if not one."""
    start = prefix + ":user:{"
    if not (key.startswith(start) and key.endswith("}")):
        return None
    try:
        # Escaped twice: SessionFlows.user_key escapes the JSON, and hash_tag escapes again.
        user = json.loads(keys.unescape(keys.unescape(key[len(start) : -1])))
    except ValueError:
        return None
    return user if isinstance(user, (str, int)) and not isinstance(user, bool) else None


def session_report(prefix: str, top: int) -> Flow[dict[str, Any]]:
    """Active sessions under ``prefix`` and the ``top`` users by live session count."""
    flows = SessionFlows(prefix=prefix, idle_ms=1, absolute_ms=None, max_per_user=None)
    pattern = keys.glob_escape(prefix)
    records = yield from find_keys(pattern + r":\{*\}", MAX_RECORDS)
    indexes = yield from find_keys(pattern + r":user:\{*\}", MAX_USERS)
    users: list[tuple[str, str | int]] = []
    for key in indexes:
        user = user_of_index(prefix, key)
        if user is not None:
            users.append((key, user))
    sizes = (yield Pipeline(tuple(command("ZCARD", key) for key, _ in users))) if users else []
    ranked = sorted(
        ((user, as_int(size)) for (_, user), size in zip(users, sizes, strict=True)
         if not isinstance(size, BackendError)),
        key=lambda pair: -pair[1],
    )[:top]  # fmt: skip
    rows: list[dict[str, Any]] = []
    for user, _indexed in ranked:
        live = yield from flows.list_user_sessions(user)  # drops ended sessions from the index
        if live:
            rows.append(
                {
                    "user": user,
                    "user_json": json.dumps(user, ensure_ascii=False),
                    "sessions": len(live),
                    "last_seen": max(s.last_seen_at for s in live),
                }
            )
    rows.sort(key=lambda row: (-row["sessions"], str(row["user"])))
    return {
        "prefix": prefix,
        "active": len(records),
        "active_complete": records.complete,
        "users_indexed": len(users),
        "users": rows,
    }
