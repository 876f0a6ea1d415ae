"""Fleet statistics: every process's counts, added to Redis at an interval (``stats="10 s"``).

A :class:`Recorder` watches one instance's :class:`~redkit.core.telemetry.Telemetry`: the
telemetry keeps the counts itself, one addition under a lock (``keep_totals``), and the
recorder takes them at each flush; timings reach it as an observer's calls. Every interval a
reporter (:class:`ThreadReporter` for the blocking facades, :class:`AsyncReporter` for the
asyncio ones) runs :meth:`Recorder.flush_flow`, one pipelined round trip, never on the request
path. A flush that fails keeps its counts for
the next one, up to :data:`MAX_PENDING_MINUTES`, and logs once per outage.

The layout (docs/stats.md), ``<name>`` escaped, one hash tag per (feature, name) so that the
keys of one name share a slot::

    redkit:stats:{<feature>:<name>}:m:<unix minute>   hash  counter -> n      EXPIRE 1 d
    redkit:stats:{<feature>:<name>}:h:<unix hour>     hash  counter -> n      EXPIRE 30 d
    redkit:stats:{<feature>:<name>}:pm:<unix minute>  set   process ids       EXPIRE 1 d
    redkit:stats:{<feature>:<name>}:ph:<unix hour>    set   process ids       EXPIRE 30 d
    redkit:stats:index                                zset  [feature, name] as JSON -> last flush

Counts land in the minute (and hour) of the flush that sends them. A timing ``what`` adds to
two fields: ``<what>_timed`` (how many) and ``<what>_seconds`` (their sum, a float).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import threading
from datetime import timedelta
from typing import TypeVar

from redkit.core import keys
from redkit.core.clock import ClientClock, Clock
from redkit.core.driver import Backend
from redkit.core.durations import duration_ms
from redkit.core.errors import BackendError, InvalidArgumentError
from redkit.core.flow import Flow, run_async, run_sync
from redkit.core.ops import Command, Pipeline, command
from redkit.core.telemetry import Telemetry

__all__ = [
    "HOUR_TTL_S",
    "INDEX_KEY",
    "MAX_NAMES",
    "MAX_PENDING_MINUTES",
    "MINUTE_TTL_S",
    "AsyncReporter",
    "Recorder",
    "ThreadReporter",
    "bucket_key",
    "index_member",
    "start_reporter",
    "stats_interval",
]

log = logging.getLogger("redkit.stats")

#: Where every key of the fleet statistics starts.
ROOT = "redkit:stats"
#: The names seen, scored by their last flush (unix seconds).
INDEX_KEY = ROOT + ":index"
#: How long minute buckets (and their process sets) live: a day, and the minute under way.
MINUTE_TTL_S = 86_400 + 60
#: How long hour buckets live: 30 days, and the hour under way.
HOUR_TTL_S = 30 * 86_400 + 3_600
#: The index keeps at most this many names (the most recently flushed).
MAX_NAMES = 10_000
#: Minutes of counts a process keeps while Redis is out of reach; older ones are dropped.
MAX_PENDING_MINUTES = 1_440
#: The shortest flush interval accepted, in seconds.
MIN_INTERVAL_S = 1.0

Counts = dict[str, int | float]


def stats_interval(stats: object) -> float | None:
    """``stats=`` checked: ``None`` (off) or the flush interval in seconds (at least 1 s).

    Raises:
        InvalidArgumentError: for anything else, saying what to pass.

    """
    if stats is None:
        return None
    hint = 'stats must be None (off) or a flush interval of at least 1 s: "10 s", 10, timedelta'
    if isinstance(stats, bool) or not isinstance(stats, (str, int, float, timedelta)):
        raise InvalidArgumentError(f"{hint}; got {stats!r}")
    try:
        seconds = duration_ms(stats, name="stats") / 1000
    except (TypeError, InvalidArgumentError):
        raise InvalidArgumentError(f"{hint}; got {stats!r}") from None
    if seconds < MIN_INTERVAL_S:
        raise InvalidArgumentError(f"{hint}; got {stats!r}, which is shorter")
    return seconds


def _tag(feature: str, name: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"a statistics name must be a non-empty str, got {name!r}")
    return "{" + feature + ":" + keys.escape(name) + "}"


def bucket_key(feature: str, name: str, kind: str, stamp: int) -> str:
    """One bucket's key: ``kind`` ``m``/``h`` (counts) or ``pm``/``ph`` (processes).

    ``stamp`` is the unix minute or hour.
    """
    return f"{ROOT}:{_tag(feature, name)}:{kind}:{stamp}"


def index_member(feature: str, name: str) -> str:
    """A name's member in the index: ``[feature, name]`` as JSON (read back as it was)."""
    return json.dumps([feature, name], ensure_ascii=False)


class Recorder:
    """Sums one instance's counts in memory; :meth:`flush_flow` adds them to Redis.

    Args:
        clock: the client clock the buckets are named by (a virtual clock in tests).
        process: this process's id in the process sets (random by default).

    """

    def __init__(self, clock: Clock | None = None, process: str | None = None) -> None:
        self.clock: Clock = clock if clock is not None and not clock.server else ClientClock()
        self.process = process or f"{os.getpid()}-{secrets.token_hex(6)}"
        self._lock = threading.Lock()
        self._current: dict[tuple[str, str], Counts] = {}
        # Counts taken for a flush that failed, by the minute they were taken in.
        self._pending: dict[int, dict[tuple[str, str], Counts]] = {}
        self._failing = False
        self.dropped_minutes = 0
        # The instances whose counts this recorder takes at each flush (Telemetry.keep_totals).
        self._watched: list[Telemetry] = []

    def watch(self, telemetry: Telemetry) -> None:
        """Take ``telemetry``'s counts at each flush; its timings come as observer calls."""
        telemetry.keep_totals(self)
        self._watched.append(telemetry)

    # -- the observer: on the request path, quick and never raising ------------------------

    def count(self, feature: str, name: str, counter: str, n: int) -> None:
        """Add ``n`` to ``counter`` of ``name``."""
        with self._lock:
            counts = self._current.get((feature, name))
            if counts is None:
                counts = self._current[feature, name] = {}
            counts[counter] = counts.get(counter, 0) + n

    def timing(self, feature: str, name: str, what: str, seconds: float) -> None:
        """Add one timing of ``what``: ``<what>_timed`` + 1, ``<what>_seconds`` + ``seconds``."""
        with self._lock:
            counts = self._current.get((feature, name))
            if counts is None:
                counts = self._current[feature, name] = {}
            timed, total = what + "_timed", what + "_seconds"
            counts[timed] = counts.get(timed, 0) + 1
            counts[total] = counts.get(total, 0.0) + seconds

    # -- flushing ---------------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether anything waits to be sent."""
        return bool(self._current or self._pending)

    def _take(self) -> dict[int, dict[tuple[str, str], Counts]]:
        """Everything to send, by minute: the counts since the last take join this minute."""
        minute = int(self.clock.now_ms() // 60_000)
        with self._lock:
            current, self._current = self._current, {}
        for telemetry in self._watched:
            totals = telemetry.take_totals()
            if totals:
                counts = current.setdefault((telemetry.feature, telemetry.name), {})
                for counter, n in totals.items():
                    counts[counter] = counts.get(counter, 0) + n
        batches, self._pending = self._pending, {}
        if current:
            _merge(batches.setdefault(minute, {}), current)
        return batches

    def _keep(self, batches: dict[int, dict[tuple[str, str], Counts]]) -> None:
        """Put the counts of a failed flush back, the newest minutes first, within the bound."""
        for minute, counts in batches.items():
            _merge(self._pending.setdefault(minute, {}), counts)
        while len(self._pending) > MAX_PENDING_MINUTES:
            del self._pending[min(self._pending)]
            self.dropped_minutes += 1

    def flush_flow(self) -> Flow[None]:
        """Send what was counted, in one pipelined round trip; on failure keep it and raise."""
        batches = self._take()
        if not batches:
            return
        ops = _ops(batches, self.process, self.clock.now_ms() / 1000)
        try:
            replies = yield Pipeline(ops)
        except BackendError:
            self._keep(batches)
            raise
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        if failed:  # refused by the server (not an outage): sending again would not help
            log.warning("fleet statistics: %d commands refused: %s", len(failed), failed[0])

    def failed(self, exc: BaseException) -> None:
        """Log a failed flush, once per outage."""
        if not self._failing:
            self._failing = True
            log.warning("fleet statistics not sent to Redis (kept for later): %s", exc)

    def sent(self) -> None:
        """Note a flush that went through (ending an outage, if there was one)."""
        if self._failing:
            self._failing = False
            log.warning("fleet statistics sent to Redis again")


def _merge(into: dict[tuple[str, str], Counts], counts: dict[tuple[str, str], Counts]) -> None:
    for key, fields in counts.items():
        target = into.setdefault(key, {})
        for field, n in fields.items():
            target[field] = target.get(field, 0) + n


def _add(key: str, field: str, n: int | float) -> Command:
    if isinstance(n, float):
        return command("HINCRBYFLOAT", key, field, repr(n))
    return command("HINCRBY", key, field, n)


def _ops(
    batches: dict[int, dict[tuple[str, str], Counts]], process: str, now_s: float
) -> tuple[Command, ...]:
    ops: list[Command] = []
    members: list[str | float] = []
    for minute, counts in sorted(batches.items()):
        hour = minute // 60
        for (feature, name), fields in counts.items():
            if not fields:
                continue
            buckets = (
                (bucket_key(feature, name, "m", minute), bucket_key(feature, name, "pm", minute),
                 MINUTE_TTL_S),
                (bucket_key(feature, name, "h", hour), bucket_key(feature, name, "ph", hour),
                 HOUR_TTL_S),
            )  # fmt: skip
            for counts_key, processes_key, ttl in buckets:
                ops.extend(_add(counts_key, field, n) for field, n in fields.items())
                ops.append(command("EXPIRE", counts_key, ttl))
                ops.append(command("SADD", processes_key, process))
                ops.append(command("EXPIRE", processes_key, ttl))
            members += [now_s, index_member(feature, name)]
    if members:
        ops.append(command("ZADD", INDEX_KEY, *members))
        ops.append(command("ZREMRANGEBYSCORE", INDEX_KEY, "-inf", now_s - HOUR_TTL_S))
        ops.append(command("ZREMRANGEBYRANK", INDEX_KEY, 0, -MAX_NAMES - 1))
        ops.append(command("EXPIRE", INDEX_KEY, HOUR_TTL_S))
    return tuple(ops)


class _Reporter(Recorder):
    """A :class:`Recorder` that sends through a feature's backend every ``interval`` seconds.

    Args:
        backend: the feature's backend.
        interval: seconds between flushes.
        timeout: the feature's timeout for one flush.
        clock: as for :class:`Recorder`.

    """

    def __init__(
        self,
        backend: Backend,
        interval: float,
        timeout: float | None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(clock)
        self._backend = backend
        self._interval = interval
        self._timeout = timeout
        self._begin()

    def _begin(self) -> None:
        """Start sending (a thread at once; a task with the first event, in its loop)."""


class ThreadReporter(_Reporter):
    """A :class:`Recorder` flushed every ``interval`` seconds by a daemon thread.

    The thread starts at once; the arguments are :class:`_Reporter`'s.
    """

    def _begin(self) -> None:
        self._stop = threading.Event()
        self._flushing = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="redkit-stats", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def flush(self) -> None:
        """Send what is pending now (a failure keeps it for the next flush, and is logged)."""
        with self._flushing:
            try:
                run_sync(self.flush_flow(), self._backend.sync_driver(timeout=self._timeout))
            except BackendError as exc:
                self.failed(exc)
            else:
                self.sent()

    def close(self) -> None:
        """Stop the thread and send what is pending."""
        self._stop.set()
        self._thread.join(10)
        self.flush()


class AsyncReporter(_Reporter):
    """A :class:`Recorder` flushed every ``interval`` seconds by an asyncio task.

    The arguments are :class:`_Reporter`'s. The task starts with the first event counted in
    an event loop (a facade may be made before any loop runs) and ends with :meth:`close`.
    """

    _task: asyncio.Task[None] | None = None
    # The flush the task is sending: shielded from the task's cancel, awaited by close().
    _sending: asyncio.Future[None] | None = None

    def count(self, feature: str, name: str, counter: str, n: int) -> None:
        """Add ``n`` to ``counter`` of ``name``; start the flushing task if none runs."""
        super().count(feature, name, counter, n)
        if self._task is None:
            self._start()

    def watch(self, telemetry: Telemetry) -> None:
        """As :meth:`Recorder.watch`; the flushing task starts at the first count."""
        super().watch(telemetry)
        telemetry.on_next_count(self._start)

    def _start(self) -> None:
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # counted outside a loop: the next count in one starts it
            for telemetry in self._watched:
                telemetry.on_next_count(self._start)
            return
        self._task = loop.create_task(self._run(), name="redkit-stats")

    async def _run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self._interval)
                # Shielded: a close() while counts travel must not drop them half-sent.
                self._sending = asyncio.ensure_future(self.flush())
                await asyncio.shield(self._sending)
        finally:
            try:
                ended = self._task is asyncio.current_task()
            except RuntimeError:  # collected after its loop closed: no loop runs this
                ended = self._task is not None and self._task.get_loop().is_closed()
            if ended:  # its loop ended, not close(): the next count, in whichever loop
                self._task = None  # runs then, starts a new task
                for telemetry in self._watched:
                    telemetry.on_next_count(self._start)

    async def flush(self) -> None:
        """Send what is pending now (a failure keeps it for the next flush, and is logged)."""
        try:
            await run_async(self.flush_flow(), self._backend.async_driver(timeout=self._timeout))
        except BackendError as exc:
            self.failed(exc)
        else:
            self.sent()

    async def close(self) -> None:
        """Stop the task and send what is pending."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            if task.get_loop() is asyncio.get_running_loop():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                sending = self._sending
                if sending is not None and not sending.done():
                    await sending  # the flush under way ends first (it never raises)
            else:  # started in another loop: stopped there
                task.get_loop().call_soon_threadsafe(task.cancel)
        await self.flush()


R = TypeVar("R", ThreadReporter, AsyncReporter)


def start_reporter(
    kind: type[R],
    interval: float | None,
    backend: Backend,
    telemetry: Telemetry,
    timeout: float | None,
    clock: Clock | None = None,
) -> R | None:
    """A facade's reporter of ``kind``, added to ``telemetry``; ``None`` with stats off.

    ``interval`` is what :func:`stats_interval` returned.
    """
    if interval is None:
        return None
    reporter = kind(backend, interval, timeout, clock)
    reporter.watch(telemetry)
    return reporter
