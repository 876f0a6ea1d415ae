"""Reading the fleet statistics back: one flow, run blocking or in asyncio."""

from __future__ import annotations

import json
from typing import Any

from redkit.core.clock import ClientClock, Clock
from redkit.core.driver import as_backend
from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import InvalidArgumentError
from redkit.core.fleet import HOUR_TTL_S, INDEX_KEY, bucket_key
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Command, Pipeline, command
from redkit.core.replies import as_text
from redkit.stats.model import FleetStats, NameStats, Value

__all__ = ["aread", "read", "read_flow"]

FEATURES = ("cache", "ratelimit", "concurrency", "sessions")
_STEPS = {"minute": (60, "m", "pm"), "hour": (3600, "h", "ph")}
#: How far back each resolution's buckets are kept (their TTL, less its margin).
_KEPT_S = {"minute": 86_400, "hour": 30 * 86_400}
#: At most this many buckets in one read (a day of minutes, 30 days of hours).
MAX_BUCKETS = 1_441


def _value(raw: Any) -> Value:
    text = as_text(raw)
    try:
        return int(text)
    except ValueError:
        return float(text)


def read_flow(
    *,
    feature: str | None,
    name: str | None,
    since: Duration,
    resolution: str,
    clock: Clock | None,
) -> Flow[FleetStats]:
    """The flow of :func:`read`."""
    if feature is not None and feature not in FEATURES:
        raise InvalidArgumentError(f"feature must be one of {FEATURES} or None, got {feature!r}")
    if resolution not in _STEPS:
        raise InvalidArgumentError(f'resolution must be "minute" or "hour", got {resolution!r}')
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidArgumentError(
            f"name must be a non-empty str (a namespace or prefix) or None, got {name!r}"
        )
    step, counts_kind, processes_kind = _STEPS[resolution]
    span_s = duration_ms(since, name="since") // 1000
    # Longer than the buckets are kept would read a range cut short, or hours all empty.
    if span_s > _KEPT_S[resolution]:
        raise InvalidArgumentError(
            f"since={since!r} is longer than {resolution} buckets are kept "
            + (
                '(1 day): use resolution="hour" (kept 30 days)'
                if resolution == "minute"
                else "(30 days)"
            )
        )
    now_s = int((clock or ClientClock()).now_ms() // 1000)
    end = now_s // step * step
    start = max(end - span_s // step * step, end - (MAX_BUCKETS - 1) * step)
    stamps = range(start // step, end // step + 1)
    members = yield command("ZRANGEBYSCORE", INDEX_KEY, max(start, now_s - HOUR_TTL_S), "+inf")
    wanted: list[tuple[str, str]] = []
    for member in members:
        seen_feature, seen_name = json.loads(as_text(member))
        if feature in (None, seen_feature) and name in (None, seen_name):
            wanted.append((seen_feature, seen_name))
    ops: list[Command] = []
    for f, n in wanted:
        ops.extend(command("HGETALL", bucket_key(f, n, counts_kind, s)) for s in stamps)
        ops.extend(command("SMEMBERS", bucket_key(f, n, processes_kind, s)) for s in stamps)
    replies = (yield Pipeline(tuple(ops))) if ops else []
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    entries: list[NameStats] = []
    per_name = 2 * len(stamps)
    for index, (f, n) in enumerate(wanted):
        mine = replies[index * per_name : (index + 1) * per_name]
        hashes, sets = mine[: len(stamps)], mine[len(stamps) :]
        buckets = tuple(
            (s * step, tuple(sorted((as_text(k), _value(v)) for k, v in _pairs(h))))
            for s, h in zip(stamps, hashes, strict=True)
        )
        processes = {as_text(p) for members_ in sets for p in members_}
        entries.append(NameStats(f, n, buckets, len(processes)))
    return FleetStats(resolution, step, start, end, tuple(entries))


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    """HGETALL's reply as pairs: redis-py gives a dict, REST a flat list."""
    if isinstance(reply, dict):
        return list(reply.items())
    return list(zip(reply[::2], reply[1::2], strict=True))


def read(
    redis: object,
    *,
    feature: str | None = None,
    name: str | None = None,
    since: Duration = "1 h",
    resolution: str = "minute",
    clock: Clock | None = None,
) -> FleetStats:
    """The fleet statistics (``stats=``) of the last ``since``, summed over every process.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py client.
        feature: only this feature's names (``"cache"``, ``"ratelimit"``, ``"concurrency"``,
            ``"sessions"``); ``None`` for all.
        name: only this namespace or prefix; ``None`` for all.
        since: how far back (``"1 h"``, ``"1 d"``); at most a day of minutes or 30 days of hours
            (longer is refused: the buckets are not kept).
        resolution: ``"minute"`` (kept a day) or ``"hour"`` (kept 30 days) buckets.
        clock: where "now" comes from (this machine's clock by default; a virtual one in tests).

    Raises:
        InvalidArgumentError: an unknown feature or resolution, an empty or non-str name, a
            ``since`` that is no duration or longer than its buckets are kept.

    """
    flow = read_flow(feature=feature, name=name, since=since, resolution=resolution, clock=clock)
    backend = as_backend(redis)
    try:
        return run_sync(flow, backend.sync_driver())
    finally:
        if isinstance(redis, str):  # the connection made from the URL is this call's own
            getattr(backend, "close", lambda: None)()


async def aread(
    redis: object,
    *,
    feature: str | None = None,
    name: str | None = None,
    since: Duration = "1 h",
    resolution: str = "minute",
    clock: Clock | None = None,
) -> FleetStats:
    """:func:`read` in asyncio (``redis``: a Connection, a URL, or a redis-py asyncio client)."""
    flow = read_flow(feature=feature, name=name, since=since, resolution=resolution, clock=clock)
    backend = as_backend(redis)
    try:
        return await run_async(flow, backend.async_driver())
    finally:
        if isinstance(redis, str):
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()
