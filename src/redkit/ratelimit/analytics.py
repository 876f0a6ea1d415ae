"""Analytics: who was allowed, blocked or denied, per hour, in ``@upstash/ratelimit``'s layout.

Each hour has a sorted set ``<prefix>:events:<hour start, epoch ms>`` whose members are the JSON
events ``{"identifier":"...","success":true}`` (``false`` when blocked, ``"denied"`` when on
the deny list) and whose scores count them, exactly as Upstash's SDK and console write and read
them. Unlike there, the sets expire after the retention (90 days by default).

Decisions made in Redis by one script on a standalone server count themselves, in that script.
Answers made without Redis (an ephemeral-cache block, a value remembered as denied) and, on a
cluster, where the hourly set lives in a slot of its own, every decision are counted in the
process and added in the background, many events in one command.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any, Literal

from redkit.core.flow import Flow
from redkit.core.ops import Pipeline, command
from redkit.core.replies import as_float, as_text

__all__ = ["HOUR_MS", "Analytics", "Usage", "event"]

HOUR_MS = 3_600_000
#: How long hourly sets are kept: Upstash's SDK asks for 90 days (and keeps them forever).
DEFAULT_RETENTION_MS = 90 * 24 * HOUR_MS

Outcome = Literal[True, False, "denied"]


def event(identifier: str, success: Outcome) -> str:
    """An event as Upstash's SDK writes it: ``JSON.stringify({identifier, success})``."""
    return json.dumps(
        {"identifier": identifier, "success": success}, separators=(",", ":"), ensure_ascii=False
    )


class Usage(dict[str, dict[str, int]]):
    """Counts per identifier: ``{identifier: {"allowed": n, "blocked": n, "denied": n}}``."""


class Analytics:
    """The analytics of one limiter: the local tally, and the queries."""

    def __init__(self, prefix: str, retention_ms: int = DEFAULT_RETENTION_MS) -> None:
        self.prefix = prefix
        self.retention_ms = retention_ms
        self._pending: Counter[tuple[int, str]] = Counter()
        self._lock = threading.Lock()

    def key(self, hour_ms: int) -> str:
        """The sorted set of the hour starting at ``hour_ms``."""
        return f"{self.prefix}:events:{hour_ms}"

    def count(self, identifier: str, success: Outcome, now_ms: float) -> None:
        """Tally one event in this process (sent later by :meth:`flush`)."""
        hour = int(now_ms) // HOUR_MS * HOUR_MS
        with self._lock:
            self._pending[(hour, event(identifier, success))] += 1

    def has_pending(self) -> bool:
        """Whether tallied events wait to be sent."""
        return bool(self._pending)

    def flush(self, now_ms: float) -> Flow[None]:
        """Send the tallied events: one ``ZINCRBY`` per hour and event, and the expiries."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return
        ops = [command("ZINCRBY", self.key(h), n, member) for (h, member), n in pending.items()]
        for hour in {hour for hour, _ in pending}:
            # Relative to the limiter's clock, which may not be the server's.
            keep = max(1, hour + HOUR_MS + self.retention_ms - int(now_ms))
            ops.append(command("PEXPIRE", self.key(hour), keep))
        try:
            yield Pipeline(tuple(ops))
        except Exception:
            with self._lock:
                self._pending.update(pending)  # put back: sent with the next flush
            raise

    # -- queries -----------------------------------------------------------------------------

    def _hours(self, now_ms: float, hours: int) -> list[int]:
        current = int(now_ms) // HOUR_MS * HOUR_MS
        return [current - n * HOUR_MS for n in range(hours)]

    def _read(self, hours: list[int]) -> Flow[list[dict[str, float]]]:
        replies = yield Pipeline(
            tuple(command("ZRANGE", self.key(h), 0, -1, "WITHSCORES") for h in hours)
        )
        tables = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            tables.append(_pairs(reply))
        return tables

    def usage(self, now_ms: float, hours: int) -> Flow[Usage]:
        """Allowed, blocked and denied counts per identifier over the last ``hours``."""
        usage = Usage()
        for table in (yield from self._read(self._hours(now_ms, hours))):
            for member, score in table.items():
                parsed = _parse(member)
                if parsed is not None:
                    counts = usage.setdefault(parsed[0], {"allowed": 0, "blocked": 0, "denied": 0})
                    counts[parsed[1]] += int(score)
        return usage

    def usage_over_time(self, now_ms: float, hours: int) -> Flow[list[dict[str, int]]]:
        """Counts per hour, oldest first: ``time`` (the hour's start), ``allowed``, ... ."""
        hours_ms = self._hours(now_ms, hours)
        rows = []
        for hour, table in zip(hours_ms, (yield from self._read(hours_ms)), strict=True):
            row = {"time": hour, "allowed": 0, "blocked": 0, "denied": 0}
            for member, score in table.items():
                parsed = _parse(member)
                if parsed is not None:
                    row[parsed[1]] += int(score)
            rows.append(row)
        return rows[::-1]

    def top(self, now_ms: float, hours: int, count: int) -> Flow[dict[str, list[tuple[str, int]]]]:
        """The ``count`` identifiers most allowed, and most blocked, over the last ``hours``."""
        usage = yield from self.usage(now_ms, hours)
        return {
            outcome: sorted(
                ((ident, c[outcome]) for ident, c in usage.items() if c[outcome]),
                key=lambda pair: (-pair[1], pair[0]),
            )[:count]
            for outcome in ("allowed", "blocked")
        }


def _pairs(reply: Any) -> dict[str, float]:
    # ZRANGE WITHSCORES: a flat [member, score, ...] list, or (member, score) pairs in RESP3.
    if reply and isinstance(reply[0], (list, tuple)):
        return {as_text(member): as_float(score) for member, score in reply}
    return {as_text(reply[i]): as_float(reply[i + 1]) for i in range(0, len(reply), 2)}


def _parse(member: str) -> tuple[str, str] | None:
    """(identifier, "allowed" | "blocked" | "denied") of an event; ``None`` if it is none."""
    try:
        data = json.loads(member)
        identifier, success = data["identifier"], data["success"]
    except (ValueError, KeyError, TypeError):
        return None
    outcome = {True: "allowed", False: "blocked", "denied": "denied"}.get(success)
    return None if outcome is None or not isinstance(identifier, str) else (identifier, outcome)
