"""What the benchmark scripts share: timed loops, server command counts, machine facts.

Scripts import it as ``harness`` (they run from this folder: ``python benchmarks/<name>.py``).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import itertools
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import redis
import redis.utils

SYNC_BATCH = 50  # sync loops read the clock once per this many calls

SyncOp = Callable[[str], Any]
AsyncOp = Callable[[str], Awaitable[Any]]
#: Whether an answer counts against the row (a denied decision, a cache miss).
Failed = Callable[[Any], bool]


def run_sync(op: SyncOp, ids: list[str], seconds: float, failed: Failed) -> tuple[float, int, int]:
    """Call ``op`` on identifiers in turn for ``seconds``: (calls/s, calls, failed answers)."""
    chunks = itertools.cycle([ids[k : k + SYNC_BATCH] for k in range(0, len(ids), SYNC_BATCH)])
    calls = failures = 0
    clock = time.perf_counter
    start = clock()
    end = start + seconds
    while True:
        for identifier in next(chunks):
            if failed(op(identifier)):
                failures += 1
        calls += SYNC_BATCH
        now = clock()
        if now >= end:
            return calls / (now - start), calls, failures


async def run_async(
    op: AsyncOp,
    ids: list[str],
    seconds: float,
    tasks: int,
    failed: Failed,
    latencies: list[float] | None = None,
) -> tuple[float, int, int]:
    """``tasks`` tasks calling ``op`` concurrently for ``seconds``: (calls/s, calls, failed).

    With ``latencies``, each call's time from its start to its answer is appended to it.
    """
    clock = time.perf_counter
    count = len(ids)

    async def worker(first: int) -> tuple[int, int]:
        index, calls, failures = first, 0, 0
        while clock() < end:
            if failed(await op(ids[index])):
                failures += 1
            index += 1
            if index == count:
                index = 0
            calls += 1
        return calls, failures

    async def timed_worker(first: int) -> tuple[int, int]:
        assert latencies is not None
        index, calls, failures = first, 0, 0
        while (began := clock()) < end:
            answer = await op(ids[index])
            latencies.append(clock() - began)
            if failed(answer):
                failures += 1
            index += 1
            if index == count:
                index = 0
            calls += 1
        return calls, failures

    if latencies is not None:
        worker = timed_worker

    start = clock()
    end = start + seconds
    results = await asyncio.gather(*(worker(k * count // tasks) for k in range(tasks)))
    elapsed = clock() - start
    calls = sum(c for c, _ in results)
    return calls / elapsed, calls, sum(f for _, f in results)


def run_once(
    op: Any,
    ids: list[str],
    sync: bool,
    seconds: float,
    tasks: int,
    loop: asyncio.AbstractEventLoop,
    failed: Failed,
) -> tuple[float, int]:
    """One timed run of a row's ``op`` after a collection: (calls/s, failed answers)."""
    gc.collect()
    if sync:
        rate, _, failures = run_sync(op, ids, seconds, failed)
    else:
        rate, _, failures = loop.run_until_complete(run_async(op, ids, seconds, tasks, failed))
    return rate, failures


def latency_table(
    rows: Sequence[Any],
    seconds: float,
    tasks: int,
    loop: asyncio.AbstractEventLoop,
    failed: Failed,
) -> str:
    """Per-call latency of every async row, from one more run of each with a clock per call.

    Rows are the rate benchmarks' (``name``, ``mode``, ``op``, ``ids``); the clock per call
    costs every row the same, so these runs are kept apart from the rate rounds.
    """
    lines = ["| async row | calls/s | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        if row.mode != "async" or row.op is None:
            continue
        latencies: list[float] = []
        gc.collect()
        rate, _, _ = loop.run_until_complete(
            run_async(row.op, row.ids, seconds, tasks, failed, latencies)
        )
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000
        lines.append(
            f"| {row.name} | {rate:,.0f} | {p50:.2f} | {p99:.2f} | {latencies[-1] * 1000:.2f} |"
        )
    return "\n".join(lines)


class Measured(Protocol):
    """A benchmark row as :func:`bracketed_rounds` sees it."""

    mode: str  # rows are compared with the reference row of their own mode
    reference: bool
    ratios: list[float]


def bracketed_rounds(
    rows: Sequence[Measured], rounds: int, run: Callable[[Any], float], label: str
) -> None:
    """Run every row once per round; append to each row's ``ratios`` its ratio this round.

    ``run(row)`` runs a row once and returns its rate. Within a round the rows of one mode run
    in a shuffled order with their reference before each and after the last (R A R B R ...),
    and a row's ratio is to the mean of the reference runs just before and just after it: the
    machine's speed drifts over seconds, and a reference measured many rows away carries that
    drift into the ratio.
    """
    shuffler = random.Random(20261125)
    references = {row.mode: row for row in rows if row.reference}
    unmatched = {row.mode for row in rows} - set(references)
    if unmatched:
        raise ValueError(f"no reference row for mode(s) {sorted(unmatched)}")
    modes = list(references)
    for number in range(1, rounds + 1):
        shuffler.shuffle(modes)
        last: dict[str, float] = {}
        for mode in modes:
            reference = references[mode]
            order = [row for row in rows if row.mode == mode and not row.reference]
            shuffler.shuffle(order)
            before = run(reference)
            for row in order:
                rate = run(row)
                after = run(reference)
                row.ratios.append(rate / ((before + after) / 2))
                before = after
            reference.ratios.append(1.0)
            last[mode] = before
        done = " / ".join(f"{mode} {rate:,.0f}/s" for mode, rate in last.items())
        print(f"round {number}/{rounds} done ({label} {done})", file=sys.stderr, flush=True)


def spread(values: Sequence[float]) -> str:
    """A row's rates as the tables show them: ``median (min, max)``."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}, {max(values):,.0f})"


def sectioned_table(head: str, align: str, lines: Iterable[tuple[str, str | None]]) -> str:
    """A Markdown table: ``head``, ``align`` (``"|---|---:|"``), then each ``(section, line)``.

    A bold row opens each new section; a ``None`` line only opens its section (a row with
    nothing measured).
    """
    empty = " |" * (align.count("|") - 2)
    table = [head, align]
    current = None
    for section, line in lines:
        if section != current:
            current = section
            table.append(f"| **{section}** |{empty}")
        if line is not None:
            table.append(line)
    return "\n".join(table)


def rates_table(
    head: str,
    rows: Sequence[Any],
    failures: Callable[[Any], str],
    skipped: Sequence[tuple[str, str]],
) -> str:
    """The table of a rate benchmark: what, rates, ratio, server commands, notes.

    ``head`` names the first four columns; rows have ``section``, ``name``, ``rates``,
    ``ratios``, ``commands`` and ``note``; ``failures(row)`` words what went wrong in a row
    (``"**3 misses**"``), or ``""``; ``skipped`` rows close the table.
    """

    def line(row: Any) -> str | None:
        if not row.rates:
            return None
        wrong = failures(row)
        note = row.note + (f"; {wrong}" if wrong else "")
        ratio = statistics.median(row.ratios)
        return f"| {row.name} | {spread(row.rates)} | {ratio:.2f} | {row.commands} | {note} |"

    body = sectioned_table(
        head + " | notes |", "|---|---:|---:|---|---|", ((row.section, line(row)) for row in rows)
    )
    return "\n".join([body, *(f"| {name} | | | | skipped: {why} |" for name, why in skipped)])


def command_stats(client: redis.Redis) -> dict[str, int]:
    """Calls per server command since the last ``CONFIG RESETSTAT`` (the harness's own left out)."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.removeprefix("cmdstat_") not in ("info", "config")
    }


def format_commands(stats: dict[str, int], calls: int) -> str:
    """Server commands per call, most first: ``"evalsha 1, incrby 1"``."""
    per_call = sorted(((n / calls, name) for name, n in stats.items()), key=lambda p: (-p[0], p[1]))

    def number(value: float) -> str:
        if value >= 10:
            return f"{value:,.0f}"
        return "<0.01" if value < 0.005 else f"{value:.2f}".rstrip("0").rstrip(".")

    return ", ".join(f"{name} {number(value)}" for value, name in per_call) or "none"


def versions(binary: str, dists: Iterable[str]) -> dict[str, str]:
    """The facts a result needs: the server, Python, the platform and the packages' versions."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    facts = {
        "redis-server": out.stdout.strip(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "hiredis in use": str(redis.utils.HIREDIS_AVAILABLE),
    }
    for dist in ("redkit", "redis", "hiredis", *dists):
        try:
            facts[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            facts[dist] = "not installed"
    return facts


def cpu_stall_us() -> int | None:
    """Linux PSI: microseconds that some runnable task waited for a CPU, since boot."""
    try:
        with open("/proc/pressure/cpu", encoding="ascii") as pressure:
            first = pressure.readline().split()
    except OSError:
        return None
    return int(first[-1].removeprefix("total="))
