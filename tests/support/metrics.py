"""Reading what redkit's metrics hold: Prometheus samples as scraped, OpenTelemetry points."""

from __future__ import annotations

from collections.abc import Iterator

import prometheus_client
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from redkit.metrics import OpenTelemetryMetrics, PrometheusMetrics

__all__ = ["Otel", "Samples", "parse", "prom", "samples", "value"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def prom() -> Iterator[PrometheusMetrics]:
    """A PrometheusMetrics of a registry of its own, enabled for the test (the decisions'
    histogram too); a test module imports this fixture to use it."""
    metrics = PrometheusMetrics(
        registry=prometheus_client.CollectorRegistry(),
        durations=("cache.load", "ratelimit.decision"),
    ).enable()
    yield metrics
    metrics.disable()


def parse(text: str) -> Samples:
    """Every sample of an exposition (``/metrics``), but the ``_created`` timestamps that
    prometheus-client adds to each series."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def samples(metrics: PrometheusMetrics) -> Samples:
    """Every sample of ``metrics``' registry, as ``/metrics`` would answer."""
    return parse(metrics.latest().decode())


def value(metrics: PrometheusMetrics | Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    found = samples(metrics) if isinstance(metrics, PrometheusMetrics) else metrics
    return found.get((name, frozenset(labels.items())), 0.0)


class Otel:
    """The real SDK with in-memory readers: a meter provider, a tracer provider, the observer."""

    def __init__(
        self, spans: tuple[str, ...] = ("cache.load",), durations: tuple[str, ...] = ("cache.load",)
    ) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemorySpanExporter()
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.observer = OpenTelemetryMetrics(
            self.meters, self.tracers, spans=spans, durations=durations
        )

    def points(self) -> dict[tuple[str, frozenset[tuple[str, str]]], object]:
        """Every data point the reader collects now, by instrument name and attributes."""
        data = self.reader.get_metrics_data()
        found: dict[tuple[str, frozenset[tuple[str, str]]], object] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        attributes = frozenset((k, str(v)) for k, v in point.attributes.items())
                        found[(metric.name, attributes)] = point
        return found

    def close(self) -> None:
        self.meters.shutdown()
        self.tracers.shutdown()
