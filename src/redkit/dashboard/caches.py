"""The caches page: a namespace's fleet figures, its generations, and its keys.

The fleet figures (hit ratio, loads, stale values served, errors, over time) come from
:mod:`redkit.stats`; the generations from ``<namespace>[:<version>]#generation`` (see
:mod:`redkit.cache.generations`); the keys, their memory and TTLs from a keyspace scan
limited to the namespace's prefix (:mod:`redkit.ops.keyspace`).
"""

from __future__ import annotations

import time
from typing import Any

from redkit.core import keys
from redkit.core.driver import Backend
from redkit.core.errors import BackendError
from redkit.core.flow import Flow, run_async
from redkit.core.ops import Pipeline, command
from redkit.core.replies import as_int
from redkit.dashboard.scan import find_keys
from redkit.dashboard.sources import keyspace_scanner
from redkit.stats import FleetStats

__all__ = ["SERIES", "CacheReports", "generations"]

#: The counters charted over time.
SERIES = ("hits", "misses", "loads", "stale_served", "early_refreshes", "errors")
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


class CacheReports:
    """What the caches page shows of each namespace; its key scan is reused for ``max_age_s``.

    The scan walks the whole keyspace (``SCAN MATCH`` filters on the server, after reading),
    so a page view does not start one each time.
    """

    def __init__(self, backend: Backend, timeout: float, count: int, max_age_s: float) -> None:
        self._backend = backend
        self._timeout = timeout
        self._count = count
        self._max_age_s = max_age_s
        self._scans: dict[str, tuple[float, dict[str, Any]]] = {}

    async def report(self, fleet: FleetStats, namespace: str) -> dict[str, Any]:
        """The namespace's fleet figures, generations, and keys."""
        driver = self._backend.async_driver(timeout=self._timeout)
        report: dict[str, Any] = {
            "namespace": namespace,
            "generations": await run_async(generations(namespace), driver),
            "totals": None,
            "hit_ratio": None,
            "series": {},
            "keyspace": None,
            "scanned_at": None,
        }
        if namespace in fleet.names("cache"):
            report["totals"] = fleet.totals("cache", namespace)
            report["hit_ratio"] = fleet.hit_ratio(namespace)
            report["series"] = {c: fleet.series("cache", namespace, c) for c in SERIES}
        scanned = await self._scan(namespace)
        if scanned is not None:
            report["scanned_at"], report["keyspace"] = scanned
        return report

    async def _scan(self, namespace: str) -> tuple[float, dict[str, Any]] | None:
        kept = self._scans.get(namespace)
        if kept is not None and time.time() - kept[0] < self._max_age_s:
            return kept
        ascan_keyspace = keyspace_scanner()
        if ascan_keyspace is None:
            return None
        # The entries (``ns:...``) and the namespace's own keys (``ns#generation``, tags).
        match = keys.glob_escape(namespace) + "[:#]*"
        found = await ascan_keyspace(self._backend, match=match, count=self._count)
        self._scans[namespace] = kept = (time.time(), found.to_dict())
        return kept

    def forget(self, namespace: str) -> None:
        """Scan the namespace again on the next view (after an action changed it)."""
        self._scans.pop(namespace, None)
