"""redkit's events as OpenTelemetry metrics and spans (``pip install 'redkit[opentelemetry]'``).

::

    from redkit.metrics import OpenTelemetryMetrics

    OpenTelemetryMetrics().enable()  # the global meter and tracer providers

Instruments (attributes in brackets): ``redkit.cache.events`` [``redkit.namespace``,
``redkit.event``], ``redkit.ratelimit.decisions`` [``redkit.prefix``, ``redkit.outcome``],
``redkit.concurrency.events`` and ``redkit.sessions.events`` [``redkit.prefix``,
``redkit.event``], counters; ``redkit.cache.load.duration`` [``redkit.namespace``] and
``redkit.ratelimit.decision.duration`` [``redkit.prefix``], histograms in seconds;
``redkit.driver.round_trips``, ``.commands``, ``.timeouts``, ``.errors``,
``.circuit.openings`` [``redkit.driver``], counters, and ``redkit.driver.open_circuits``, an
up-down counter.

Spans: a timing named in ``spans`` (by default ``"cache.load"``) also becomes a span,
``redkit.cache.load``, with the timing's start and end, started in the current context: the
span of the request handler that called the cache is its parent. No other hook is needed.
Attributes are bounded as the Prometheus labels are (:mod:`redkit.metrics.events`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from redkit import __version__
from redkit.metrics.events import (
    DEFAULT_BUCKETS,
    DEFAULT_DURATIONS,
    FEATURES,
    Record,
    Resolving,
    timings_named,
)
from redkit.metrics.events import ignore as _ignore
from redkit.metrics.totals import commands_sent
from redkit.web._extras import framework_missing

try:
    from opentelemetry import metrics, trace
except ModuleNotFoundError as missing:  # pragma: no cover - tested in a subprocess
    raise framework_missing(
        "redkit.metrics.opentelemetry", "opentelemetry-api", "opentelemetry", missing
    ) from missing

__all__ = ["DEFAULT_DURATIONS", "DEFAULT_SPANS", "OpenTelemetryMetrics"]

#: The timings that become spans by default: loads are rare and slow, and worth a span; a
#: span per rate-limit decision would cost more than the decision's own Python.
DEFAULT_SPANS = ("cache.load",)

_DRIVER = {
    "round_trips": ("redkit.driver.round_trips", "{round_trip}"),
    "timeouts": ("redkit.driver.timeouts", "{operation}"),
    "errors": ("redkit.driver.errors", "{operation}"),
    "circuit_opened": ("redkit.driver.circuit.openings", "{circuit}"),
}
_EVENTS = {
    "cache": "redkit.cache.events",
    "ratelimit": "redkit.ratelimit.decisions",
    "concurrency": "redkit.concurrency.events",
    "sessions": "redkit.sessions.events",
}


def _observer(
    read: Callable[[], list[tuple[tuple[str, ...], int]]], names: tuple[str, ...]
) -> Callable[[metrics.CallbackOptions], Iterator[metrics.Observation]]:
    """The callback through which the SDK reads totals (``read()``) at each collection."""

    def observe(_options: metrics.CallbackOptions) -> Iterator[metrics.Observation]:
        for labels, total in read():
            yield metrics.Observation(total, dict(zip(names, labels, strict=True)))

    return observe


class OpenTelemetryMetrics(Resolving):
    """An observer (:mod:`redkit.core.telemetry`) that records OpenTelemetry metrics and spans.

    ``enable()`` registers it process-wide (and returns it), ``disable()`` stops it. The
    counters are observable instruments over exact in-process totals, read at each collection;
    a duration is a histogram record, which costs the SDK's per-measurement work, so only the
    ``durations`` chosen are recorded (by default the loads, which are rare).

    Args:
        meter_provider: where the instruments come from; ``None`` is the global one.
        tracer_provider: where the spans go; ``None`` is the global one.
        spans: the timings (``"feature.what"``) that also become spans; ``()`` for none.
        durations: the timings recorded in histograms (``"feature.what"``); ``()`` for none.

    Raises:
        InvalidArgumentError: for a span or duration name that no feature times.

    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        spans: Iterable[str] = DEFAULT_SPANS,
        durations: Iterable[str] = DEFAULT_DURATIONS,
    ) -> None:
        super().__init__()
        self._spans = timings_named(spans, "spans")
        self._durations = timings_named(durations, "durations")
        meter = metrics.get_meter("redkit", __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer("redkit", __version__, tracer_provider=tracer_provider)
        for feature, name in _EVENTS.items():
            known = FEATURES[feature]
            attributes = (f"redkit.{known.name_label}", f"redkit.{known.event_label}")
            meter.create_observable_counter(
                name,
                [_observer(self._events[feature].values, attributes)],
                "{event}",
                f"redkit {feature} events",
            )
        for counter, (name, unit) in _DRIVER.items():
            meter.create_observable_counter(
                name,
                [_observer(self._driver[counter].values, ("redkit.driver",))],
                unit,
                f"redkit driver {counter}",
            )
        meter.create_observable_counter(
            "redkit.driver.commands",
            [_observer(lambda: commands_sent(self._driver), ("redkit.driver",))],
            "{command}",
            "redkit driver commands",
        )
        meter.create_observable_up_down_counter(
            "redkit.driver.open_circuits",
            [_observer(self._open.values, ("redkit.driver",))],
            "{circuit}",
            "circuit-breaker circuits open now",
        )
        self._histograms = {
            (feature, what): meter.create_histogram(
                f"redkit.{feature}.{what}.duration",
                "s",
                f"time a {feature} {what} took",
                explicit_bucket_boundaries_advisory=list(DEFAULT_BUCKETS),
            )
            for feature, f in FEATURES.items()
            for what in f.timings
            if f"{feature}.{what}" in self._durations
        }

    def _resolve_timing(self, feature: str, name: str, what: str) -> Record:
        histogram = self._histograms.get((feature, what))
        traced = f"{feature}.{what}" in self._spans
        if histogram is None and not traced:
            return _ignore
        attributes = {f"redkit.{FEATURES[feature].name_label}": name}
        record = _ignore if histogram is None else _recorder(histogram, attributes)
        if not traced:
            return record
        start_span = self._tracer.start_span
        span_name = f"redkit.{feature}.{what}"

        def record_and_trace(seconds: float) -> None:
            record(seconds)
            # The timing is reported when the work ends: the span is drawn back to its start,
            # in the caller's context (its parent is whatever span is current there).
            end = time.time_ns()
            span = start_span(span_name, start_time=end - int(seconds * 1e9), attributes=attributes)
            span.end(end_time=end)

        return record_and_trace


def _recorder(histogram: Any, attributes: dict[str, str]) -> Record:
    record = histogram.record

    def observe(seconds: float) -> None:
        record(seconds, attributes)

    return observe
