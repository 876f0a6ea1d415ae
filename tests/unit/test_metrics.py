"""redkit.metrics fed by Telemetry directly: series, values, bounds, validation, spans."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import prometheus_client
import pytest

from redkit.core.breaker import Breaker
from redkit.core.errors import BackendTimeout, ConfigurationError, InvalidArgumentError
from redkit.core.telemetry import Telemetry, observers
from redkit.drivers.observed import DriverTelemetry
from redkit.metrics import OpenTelemetryMetrics, PrometheusMetrics
from support.metrics import Otel, samples, value


@pytest.fixture
def prom() -> PrometheusMetrics:
    return PrometheusMetrics(
        registry=prometheus_client.CollectorRegistry(),
        durations=("cache.load", "ratelimit.decision"),
    )


def test_cache_events_and_load_histogram(prom: PrometheusMetrics) -> None:
    cache = Telemetry("cache", "users", own=(prom,))
    for _ in range(3):
        cache.count("hits")
    cache.count("misses", 2)
    cache.timing("load", 0.003)
    cache.timing("load", 0.2)
    assert value(prom, "redkit_cache_events_total", namespace="users", event="hits") == 3
    assert value(prom, "redkit_cache_events_total", namespace="users", event="misses") == 2
    assert value(prom, "redkit_cache_load_seconds_count", namespace="users") == 2
    assert value(prom, "redkit_cache_load_seconds_sum", namespace="users") == pytest.approx(0.203)
    assert value(prom, "redkit_cache_load_seconds_bucket", namespace="users", le="0.005") == 1


def test_ratelimit_sessions_concurrency(prom: PrometheusMetrics) -> None:
    Telemetry("ratelimit", "api", own=(prom,)).count("allowed", 4)
    Telemetry("ratelimit", "api", own=(prom,)).count("cache_block")
    Telemetry("ratelimit", "api", own=(prom,)).timing("decision", 0.0002)
    Telemetry("sessions", "sess", own=(prom,)).count("rotated")
    Telemetry("concurrency", "jobs", own=(prom,)).count("refused", 2)
    assert value(prom, "redkit_ratelimit_decisions_total", prefix="api", outcome="allowed") == 4
    assert value(prom, "redkit_ratelimit_decisions_total", prefix="api", outcome="cache_block") == 1
    assert value(prom, "redkit_ratelimit_decision_seconds_count", prefix="api") == 1
    assert value(prom, "redkit_sessions_events_total", prefix="sess", event="rotated") == 1
    assert value(prom, "redkit_concurrency_events_total", prefix="jobs", event="refused") == 2


def test_driver_counts_and_the_breakers_gauge(prom: PrometheusMetrics) -> None:
    driver = DriverTelemetry("standalone")
    driver.add(prom)
    driver.sent(3)
    driver.sent(1)
    driver.failed(BackendTimeout("slow"))
    breaker = Breaker(threshold=2, cooldown=0.0)
    breaker.telemetry = driver
    breaker.failed(BackendTimeout("1"))
    breaker.failed(BackendTimeout("2"))  # opens
    breaker.failed(BackendTimeout("3"))  # still open: not a second opening
    assert value(prom, "redkit_driver_open_circuits", driver="standalone") == 1
    breaker.succeeded()
    assert value(prom, "redkit_driver_round_trips_total", driver="standalone") == 2
    assert value(prom, "redkit_driver_commands_total", driver="standalone") == 4
    assert value(prom, "redkit_driver_timeouts_total", driver="standalone") == 1
    assert value(prom, "redkit_driver_errors_total", driver="standalone") == 0
    assert value(prom, "redkit_driver_circuit_openings_total", driver="standalone") == 1
    assert value(prom, "redkit_driver_open_circuits", driver="standalone") == 0


def test_words_outside_the_vocabulary_add_no_series(prom: PrometheusMetrics) -> None:
    cache = Telemetry("cache", "users", own=(prom,))
    cache.count("hits")
    before = len(samples(prom))
    for n in range(1000):
        cache.count(f"user:{n}")  # a bug that put an identifier in a counter's word
        cache.timing(f"what:{n}", 0.001)
        Telemetry(f"feature{n}", "x", own=(prom,)).count("hits")
    after = samples(prom)
    assert len(after) == before + 1  # one "other" series, nothing else
    assert value(prom, "redkit_cache_events_total", namespace="users", event="other") == 1000


def test_enable_registers_process_wide_and_disable_stops() -> None:
    prom = PrometheusMetrics(registry=prometheus_client.CollectorRegistry())
    assert prom.enable() is prom
    try:
        assert prom in observers()
        Telemetry("cache", "ns").count("hits")
    finally:
        prom.disable()
    Telemetry("cache", "ns").count("hits")
    assert prom not in observers()
    assert value(prom, "redkit_cache_events_total", namespace="ns", event="hits") == 1


def test_bad_arguments_are_refused_at_construction() -> None:
    registry = prometheus_client.CollectorRegistry()
    with pytest.raises(InvalidArgumentError, match="metric name"):
        PrometheusMetrics(registry=registry, namespace="red-kit")
    with pytest.raises(InvalidArgumentError, match="increasing"):
        PrometheusMetrics(registry=registry, buckets=[0.5, 0.1])
    with pytest.raises(InvalidArgumentError, match="positive"):
        PrometheusMetrics(registry=registry, buckets=[])
    PrometheusMetrics(registry=registry)
    with pytest.raises(ConfigurationError, match="one PrometheusMetrics per registry"):
        PrometheusMetrics(registry=registry)
    PrometheusMetrics(registry=registry, namespace="other")  # another namespace fits beside
    with pytest.raises(InvalidArgumentError, match=r"choose among cache\.load"):
        OpenTelemetryMetrics(spans=["cache.get"])


# -- OpenTelemetry through the real SDK --------------------------------------------------------


@pytest.fixture
def otel() -> Iterator[Otel]:
    made = Otel()
    yield made
    made.close()


def test_otel_counts_and_histograms(otel: Otel) -> None:
    cache = Telemetry("cache", "users", own=(otel.observer,))
    cache.count("hits", 3)
    cache.count("misses")
    cache.timing("load", 0.004)
    limiter = Telemetry("ratelimit", "api", own=(otel.observer,))
    limiter.count("blocked", 2)
    limiter.timing("decision", 0.0001)
    driver = DriverTelemetry("cluster")
    driver.add(otel.observer)
    driver.sent(5)
    driver.count("circuit_opened")
    points = otel.points()
    hits = points[
        (
            "redkit.cache.events",
            frozenset({("redkit.namespace", "users"), ("redkit.event", "hits")}),
        )
    ]
    assert hits.value == 3  # type: ignore[attr-defined]
    blocked = points[
        (
            "redkit.ratelimit.decisions",
            frozenset({("redkit.prefix", "api"), ("redkit.outcome", "blocked")}),
        )
    ]
    assert blocked.value == 2  # type: ignore[attr-defined]
    load = points[("redkit.cache.load.duration", frozenset({("redkit.namespace", "users")}))]
    assert load.count == 1  # type: ignore[attr-defined]
    assert load.sum == pytest.approx(0.004)  # type: ignore[attr-defined]
    cluster = frozenset({("redkit.driver", "cluster")})
    assert points[("redkit.driver.round_trips", cluster)].value == 1  # type: ignore[attr-defined]
    assert points[("redkit.driver.commands", cluster)].value == 5  # type: ignore[attr-defined]
    assert points[("redkit.driver.open_circuits", cluster)].value == 1  # type: ignore[attr-defined]
    # Only the loads are spans by default: a decision is not.
    assert [span.name for span in otel.exporter.get_finished_spans()] == ["redkit.cache.load"]


def test_a_timings_span_has_the_callers_span_as_parent_and_its_own_times(otel: Otel) -> None:
    tracer = otel.tracers.get_tracer("test")
    cache = Telemetry("cache", "users", own=(otel.observer,))
    with tracer.start_as_current_span("GET /users/1") as handler:
        cache.timing("load", 0.25)
    spans = {span.name: span for span in otel.exporter.get_finished_spans()}
    load = spans["redkit.cache.load"]
    assert load.parent is not None
    assert load.parent.span_id == handler.get_span_context().span_id
    assert load.context.trace_id == handler.get_span_context().trace_id
    assert load.end_time - load.start_time == 250_000_000
    assert dict(load.attributes) == {"redkit.namespace": "users"}


def test_spans_can_be_chosen_or_turned_off() -> None:
    every = Otel(spans=("cache.load", "ratelimit.decision"))
    none = Otel(spans=())
    try:
        for made in (every, none):
            Telemetry("ratelimit", "api", own=(made.observer,)).timing("decision", 0.001)
        assert [s.name for s in every.exporter.get_finished_spans()] == [
            "redkit.ratelimit.decision"
        ]
        assert none.exporter.get_finished_spans() == ()
    finally:
        every.close()
        none.close()


# -- the optional dependencies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked", "name", "extra"),
    [
        ("prometheus_client", "PrometheusMetrics", "prometheus"),
        ("opentelemetry", "OpenTelemetryMetrics", "opentelemetry"),
    ],
)
def test_a_missing_library_names_the_extra(blocked: str, name: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "import redkit.metrics\n"  # the package itself needs neither library
        "try:\n"
        f"    redkit.metrics.{name}\n"
        "except ModuleNotFoundError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert f"pip install 'redkit[{extra}]'" in done.stdout


def test_durations_are_chosen_and_checked() -> None:
    default, chosen = Otel(), Otel(durations=("ratelimit.decision",))
    try:
        for made in (default, chosen):
            limiter = Telemetry("ratelimit", "api", own=(made.observer,))
            limiter.count("allowed")
            limiter.timing("decision", 0.001)
        api = frozenset({("redkit.prefix", "api")})
        assert ("redkit.ratelimit.decision.duration", api) not in default.points()
        point: Any = chosen.points()[("redkit.ratelimit.decision.duration", api)]
        assert point.count == 1
    finally:
        default.close()
        chosen.close()
    with pytest.raises(InvalidArgumentError, match=r"durations: no feature times 'cache\.get'"):
        OpenTelemetryMetrics(durations=["cache.get"])


def test_counts_from_many_threads_are_exact(otel: Otel) -> None:
    prom = PrometheusMetrics(registry=prometheus_client.CollectorRegistry())
    cache = Telemetry("cache", "users", own=(otel.observer, prom))

    def bump() -> None:
        for _ in range(5000):
            cache.count("hits")

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    users = frozenset({("redkit.namespace", "users"), ("redkit.event", "hits")})
    hits: Any = otel.points()[("redkit.cache.events", users)]
    assert hits.value == 40_000
    assert value(prom, "redkit_cache_events_total", namespace="users", event="hits") == 40_000


def test_decision_durations_are_opt_in() -> None:
    default = PrometheusMetrics(registry=prometheus_client.CollectorRegistry())
    limiter = Telemetry("ratelimit", "api", own=(default,))
    limiter.count("allowed")
    limiter.timing("decision", 0.001)
    names = {name for name, _ in samples(default)}
    assert "redkit_ratelimit_decisions_total" in names
    assert not any(name.startswith("redkit_ratelimit_decision_seconds") for name in names)
    with pytest.raises(InvalidArgumentError, match=r"durations: no feature times 'x\.y'"):
        PrometheusMetrics(registry=prometheus_client.CollectorRegistry(), durations=["x.y"])
