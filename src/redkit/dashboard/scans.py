"""The keyspace page's scan: one background task at a time, its progress polled by the page."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redkit.core.driver import Backend
from redkit.dashboard.sources import keyspace_scanner

__all__ = ["KeyspaceScans", "ScanState"]

log = logging.getLogger(__name__)


@dataclass
class ScanState:
    """Where the scan stands: keys scanned of an estimated total, and the report once done."""

    running: bool = False
    scanned: int = 0
    total: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    report: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON."""
        return {
            "running": self.running,
            "scanned": self.scanned,
            "total": self.total,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
            "report": self.report,
        }


class KeyspaceScans:
    """Runs :func:`redkit.ops.keyspace.ascan_keyspace` in the background, one at a time."""

    def __init__(self, backend: Backend, count: int) -> None:
        self._backend = backend
        self._count = count
        self.state = ScanState()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> bool:
        """Start a scan; ``False`` when one is running already."""
        if self._task is not None and not self._task.done():
            return False
        self.state = ScanState(running=True, started_at=time.time())
        self._task = asyncio.get_running_loop().create_task(self._run(self.state))
        return True

    async def _run(self, state: ScanState) -> None:
        ascan_keyspace = keyspace_scanner()
        if ascan_keyspace is None:
            state.error = "the keyspace report (redkit.ops.keyspace) is not installed"
            state.running, state.finished_at = False, time.time()
            return

        def progress(scanned: int, total: int) -> None:
            state.scanned, state.total = scanned, total

        try:
            report = await ascan_keyspace(self._backend, count=self._count, progress=progress)
            state.report = report.to_dict()
        except Exception as exc:
            log.exception("dashboard: the keyspace scan failed")
            state.error = f"{type(exc).__name__}: {exc}"
        finally:
            state.running = False
            state.finished_at = time.time()

    async def stop(self) -> None:
        """Cancel a running scan and wait for it to end."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
