"""The caches page: a namespace's fleet figures, its generations, and its keys.

The fleet figures (hit ratio, loads, stale values served, errors, over time) come from
:mod:`redkit.stats`; the generations from ``<namespace>[:<version>]#generation`` (see
:mod:`redkit.cache.generations`); the keys, their memory and TTLs from a keyspace scan
limited to the namespace's prefix (:mod:`redkit.ops.keyspace`).
"""

from __future__ import annotations

from typing import Any

from redkit.core import keys
from redkit.core.driver import Backend
from redkit.core.errors import BackendError
from redkit.core.flow import Flow, run_async
from redkit.core.ops import Pipeline, command
from redkit.core.replies import as_int
from redkit.dashboard.scan import find_keys
from redkit.dashboard.sources import keyspace_scanner

__all__ = ["SERIES", "generations", "namespace_report"]

#: The counters charted over time.
SERIES = ("hits", "misses", "loads", "stale_served", "errors")
#: The most generation keys (one per version) listed.
MAX_VERSIONS = 100


def generations(namespace: str) -> Flow[list[dict[str, Any]]]:
    """Each version's current generation: ``[{"version": v or None, "generation": n}]``."""
    found = yield from find_keys(keys.glob_escape(namespace) + "*#generation", MAX_VERSIONS)
    rows: list[dict[str, Any]] = []
    if found:
        replies = yield Pipeline(tuple(command("GET", key) for key in found))
        for key, reply in zip(found, replies, strict=True):
            middle = key[len(namespace) : -len("#generation")]
            if reply is None or isinstance(reply, BackendError):
                continue
            if middle == "" or middle.startswith(":"):
                version = keys.unescape(middle[1:]) if middle else None
                rows.append({"version": version, "generation": as_int(reply)})
    rows.sort(key=lambda row: (row["version"] is not None, row["version"] or ""))
    return rows


async def namespace_report(
    backend: Backend, fleet: Any, namespace: str, timeout: float
) -> dict[str, Any]:
    """What the caches page shows of ``namespace``."""
    driver = backend.async_driver(timeout=timeout)
    report: dict[str, Any] = {
        "namespace": namespace,
        "generations": await run_async(generations(namespace), driver),
        "totals": None,
        "hit_ratio": None,
        "series": {},
        "keyspace": None,
    }
    if fleet is not None and namespace in fleet.names("cache"):
        report["totals"] = fleet.totals("cache", namespace)
        report["hit_ratio"] = fleet.hit_ratio(namespace)
        report["series"] = {c: fleet.series("cache", namespace, c) for c in SERIES}
    ascan_keyspace = keyspace_scanner()
    if ascan_keyspace is None:
        return report
    scanned = await ascan_keyspace(backend, match=keys.glob_escape(namespace) + "[:#]*")
    report["keyspace"] = scanned.to_dict()
    return report
