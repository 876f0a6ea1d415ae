"""The cost of redkit.metrics: a decision and a cache hit without metrics, with Prometheus,
with OpenTelemetry.

One process, one embedded ``redis-server`` on loopback. Four groups of rows, each with its
reference, the same operation with no observer (``harness.bracketed_rounds``: a row's ratio is
to the reference runs just before and after it, in shuffled rounds):

- ``FixedWindow`` decisions, blocking (1 thread) and asyncio (``--tasks`` tasks, 50 by default,
  on the auto-pipelined driver);
- ``Cache.get`` hits, blocking and asyncio.

The Prometheus rows count into a ``PrometheusMetrics`` of their own registry (the decision
groups also with ``durations=`` naming the decisions: their latency histogram); the OpenTelemetry
rows into the SDK (a ``MeterProvider`` with an in-memory reader, a ``TracerProvider`` whose
exporter drops the spans: its default spans are the loads, which a hit never makes). Each
observer is enabled just for its row's runs. Allow path only; every read hits. Besides the
wall-clock ratio, each row shows its calls per second of this process's CPU time (the client's
own cost; the server's is in another process), which a busy machine disturbs less.

    .venv/bin/python benchmarks/metrics.py            # 10 rounds of 0.5 s a row
    .venv/bin/python benchmarks/metrics.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
from harness import bracketed_rounds, run_once, spread, versions
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from redkit import AsyncCache, AsyncRatelimit, Cache, EmbeddedRedis, FixedWindow, Ratelimit
from redkit.core.telemetry import Telemetry
from redkit.drivers.observed import DriverTelemetry
from redkit.metrics import OpenTelemetryMetrics, PrometheusMetrics


class _Dropped(SpanExporter):
    """An exporter that sends nowhere: the SDK's own cost, without a collector's."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass
class Row:
    mode: str
    label: str
    op: Any
    sync: bool
    failed: Callable[[Any], bool]
    observer: Any = None
    reference: bool = False
    ratios: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    #: Calls per second of this process's CPU time: the client's own cost, which the other
    #: processes of a busy machine disturb far less than the wall clock.
    cpu_rates: list[float] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 0.2 s")
    args = parser.parse_args()
    rounds, seconds = (2, 0.2) if args.quick else (args.rounds, args.seconds)

    prom = PrometheusMetrics(registry=prometheus_client.CollectorRegistry())
    # The same with the decisions' latency histogram too (durations= opts in).
    prom_timed = PrometheusMetrics(
        registry=prometheus_client.CollectorRegistry(),
        durations=("cache.load", "ratelimit.decision"),
    )
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(_Dropped()))
    otel = OpenTelemetryMetrics(meters, tracers)
    ids = [f"id{n}" for n in range(1000)]
    loop = asyncio.new_event_loop()

    with EmbeddedRedis() as server:
        conn = server.connect()
        limiter = Ratelimit(conn, FixedWindow(10**9, "60 s"), prefix="bench")
        alimiter = AsyncRatelimit(conn, FixedWindow(10**9, "60 s"), prefix="abench")
        cache = Cache(conn, namespace="bench")
        acache = AsyncCache(conn, namespace="bench")
        cache.set_many(dict.fromkeys(ids, 1))
        denied: Callable[[Any], bool] = lambda result: not result.success  # noqa: E731
        missed: Callable[[Any], bool] = lambda value: value != 1  # noqa: E731
        kinds = [
            ("decision, sync 1 thread", limiter.limit, True, denied),
            (f"decision, async {args.tasks} tasks", alimiter.limit, False, denied),
            ("cache hit, sync 1 thread", cache.get, True, missed),
            (f"cache hit, async {args.tasks} tasks", acache.get, False, missed),
        ]
        rows: list[Row] = []
        for mode, op, sync, failed in kinds:
            rows.append(Row(mode, "no metrics", op, sync, failed, reference=True))
            rows.append(Row(mode, "Prometheus", op, sync, failed, observer=prom))
            rows.append(Row(mode, "OpenTelemetry", op, sync, failed, observer=otel))
            if mode.startswith("decision"):
                label = "Prometheus + decision histogram"
                rows.append(Row(mode, label, op, sync, failed, observer=prom_timed))
            run_once(op, ids, sync, 0.2, args.tasks, loop, failed)  # warm: scripts, connections

        def run(row: Row) -> float:
            if row.observer is not None:
                row.observer.enable()
            try:
                cpu = time.process_time()
                rate, failures = run_once(
                    row.op, ids, row.sync, seconds, args.tasks, loop, row.failed
                )
                cpu = time.process_time() - cpu
            finally:
                if row.observer is not None:
                    row.observer.disable()
            assert failures == 0, f"{row.mode} / {row.label}: {failures} failed answers"
            row.rates.append(rate)
            row.cpu_rates.append(rate * seconds / cpu)
            return rate

        bracketed_rounds(rows, rounds, run, "metrics")
        loop.run_until_complete(conn.aclose())
        conn.close()
        facts = versions(server.binary, ["redis", "prometheus-client", "opentelemetry-sdk"])
    loop.close()
    event_costs(prom, otel)
    meters.shutdown()
    tracers.shutdown()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"\ncommit {commit}; {rounds} rounds x {seconds} s a row; "
        + ", ".join(f"{k} {v}" for k, v in facts.items())
    )
    print(
        "\n| operation | metrics | ops/s, median (min, max) | ratio to no metrics | cost "
        "| ops per CPU s, median | CPU cost |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    references = {row.mode: row for row in rows if row.reference}
    for row in rows:
        ratio = statistics.median(row.ratios)
        cpu_rate = statistics.median(row.cpu_rates)
        cpu_ratio = cpu_rate / statistics.median(references[row.mode].cpu_rates)
        cost = "" if row.reference else f"{(1 - ratio) * 100:+.1f} %"
        cpu_cost = "" if row.reference else f"{(1 - cpu_ratio) * 100:+.1f} %"
        print(
            f"| {row.mode} | {row.label} | {spread(row.rates)} | {ratio:.3f} | {cost} "
            f"| {cpu_rate:,.0f} | {cpu_cost} |"
        )


def event_costs(prom: PrometheusMetrics, otel: OpenTelemetryMetrics) -> None:
    """Each event's own cost, by ``timeit``: what the rows above pay per operation."""
    number = 200_000
    events: list[tuple[str, Callable[[tuple[Any, ...]], Callable[[], None]]]] = [
        ('cache `count("hits")`', _hit),
        ('decision `timing("decision", s)`', _decision_time),
        ("driver `sent(1)`", _driver_sent),
    ]
    print("\n| event | no observer, us | Prometheus, us | OpenTelemetry, us |")
    print("|---|---:|---:|---:|")
    for label, make in events:
        costs = [
            timeit.timeit(make(() if observer is None else (observer,)), number=number)
            / number
            * 1e6
            for observer in (None, prom, otel)
        ]
        print(f"| {label} | " + " | ".join(f"{cost:.2f}" for cost in costs) + " |")


def _hit(own: tuple[Any, ...]) -> Callable[[], None]:
    telemetry = Telemetry("cache", "users", own)
    return lambda: telemetry.count("hits")


def _decision_time(own: tuple[Any, ...]) -> Callable[[], None]:
    telemetry = Telemetry("ratelimit", "api", own)
    return lambda: telemetry.timing("decision", 0.0001)


def _driver_sent(own: tuple[Any, ...]) -> Callable[[], None]:
    driver = DriverTelemetry("standalone")
    for observer in own:
        driver.add(observer)
    return lambda: driver.sent(1)


if __name__ == "__main__":
    main()
