"""The rate-limits page: each prefix's decisions per hour, top identifiers, deny list, overrides.

Everything is read from the layout ``@upstash/ratelimit`` shares with redkit (see
:mod:`redkit.ratelimit.analytics` and :mod:`redkit.ratelimit.dynamic`), so limits kept by the
JavaScript SDK show as well.
"""

from __future__ import annotations

import re
from typing import Any

from redkit.core import keys
from redkit.core.errors import BackendError
from redkit.core.flow import Flow
from redkit.core.ops import Pipeline, command
from redkit.core.replies import as_int, as_text
from redkit.dashboard.scan import find_keys, is_cluster
from redkit.ratelimit.analytics import Analytics
from redkit.ratelimit.dynamic import deny_key, global_key
from redkit.ratelimit.flows import identifier_part

__all__ = ["prefix_report", "reset_identifier"]

#: The most per-identifier overrides listed, and the most state keys one reset may find.
MAX_OVERRIDES = 200
MAX_STATE_KEYS = 1000
#: What follows an identifier's base in its state keys: window counters, GCRA's, the log's.
_STATE_SUFFIX = re.compile(r"(:\d+|:gcra|:log)?")


def _identifier_shown(part: str) -> str:
    """An identifier as the keys hold it, readable: hash tag and escaping undone."""
    if part.startswith("{") and part.endswith("}"):
        return keys.unescape(part[1:-1])
    return part


def prefix_report(prefix: str, now_ms: int, hours: int, top: int) -> Flow[dict[str, Any]]:
    """Per hour (oldest first) allowed, blocked and denied; top identifiers; the guards."""
    analytics = Analytics(prefix)
    per_hour = yield from analytics.usage_over_time(now_ms, hours)
    usage = yield from analytics.usage(now_ms, hours)
    denied, override = yield Pipeline(
        (command("SMEMBERS", deny_key(prefix)), command("GET", global_key(prefix)))
    )
    for reply in (denied, override):
        if isinstance(reply, BackendError):
            raise reply
    found = yield from find_keys(keys.glob_escape(prefix) + ":*:dynamic", MAX_OVERRIDES)
    overrides: list[dict[str, Any]] = []
    if found:
        limits = yield Pipeline(tuple(command("GET", key) for key in found))
        for key, limit in zip(found, limits, strict=True):
            if limit is not None and not isinstance(limit, BackendError):
                part = key[len(prefix) + 1 : -len(":dynamic")]
                overrides.append({"identifier": _identifier_shown(part), "limit": as_int(limit)})
    overrides.sort(key=lambda row: row["identifier"])

    def ranked(outcome: str) -> list[dict[str, Any]]:
        rows = [(ident, c[outcome]) for ident, c in usage.items() if c[outcome]]
        rows.sort(key=lambda pair: (-pair[1], pair[0]))
        return [{"identifier": ident, "count": n} for ident, n in rows[:top]]

    totals = {o: sum(row[o] for row in per_hour) for o in ("allowed", "blocked", "denied")}
    return {
        "prefix": prefix,
        "hours": hours,
        "totals": totals,
        "per_hour": per_hour,
        "top": {o: ranked(o) for o in ("allowed", "blocked", "denied")},
        "identifiers": [
            {"identifier": ident, **c}
            for ident, c in sorted(usage.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
        ][:top],
        "deny_list": sorted(as_text(v) for v in denied),
        "global_limit": None if override is None else as_int(override),
        "identifier_limits": overrides,
        "identifier_limits_complete": found.complete,
    }


def reset_identifier(prefix: str, identifier: str) -> Flow[int]:
    """Delete the identifier's rate-limit state under ``prefix``; return how many keys went.

    Whatever the algorithm: its state key, its window counters, GCRA's and the log's keys.
    The identifier's own limit override (``:dynamic``) and the analytics stay.
    """
    base = keys.check_prefix(prefix) + ":" + identifier_part(identifier, (yield from is_cluster()))
    found = yield from find_keys(keys.glob_escape(base) + "*", MAX_STATE_KEYS)
    state = [k for k in found if _STATE_SUFFIX.fullmatch(k[len(base) :])]
    if not state:
        return 0
    # One UNLINK per key keeps each command in one slot (they share one anyway on a cluster).
    replies = yield Pipeline(tuple(command("UNLINK", key) for key in state))
    for reply in replies:
        if isinstance(reply, BackendError):
            raise reply
    return sum(as_int(reply) for reply in replies)
