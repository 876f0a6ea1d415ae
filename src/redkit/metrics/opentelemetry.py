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
from collections.abc import Iterable
from typing import Any

from redkit import __version__
from redkit.core.errors import InvalidArgumentError
from redkit.metrics.events import DEFAULT_BUCKETS, FEATURES, Feature, Record, Resolving
from redkit.metrics.events import ignore as _ignore
from redkit.web._extras import framework_missing

try:
    from opentelemetry import metrics, trace
except ModuleNotFoundError as missing:  # pragma: no cover - tested in a subprocess
    raise framework_missing(
        "redkit.metrics.opentelemetry", "opentelemetry-api", "opentelemetry", missing
    ) from missing

__all__ = ["DEFAULT_SPANS", "OpenTelemetryMetrics"]

#: The timings that become spans by default: loads are rare and slow, and worth a span; a
#: span per rate-limit decision would cost more than the decision's own Python.
DEFAULT_SPANS = ("cache.load",)

_DRIVER = {
    "round_trips": ("redkit.driver.round_trips", "{round_trip}"),
    "commands": ("redkit.driver.commands", "{command}"),
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


def _timings() -> set[str]:
    return {f"{feature}.{what}" for feature, f in FEATURES.items() for what in f.timings}


class OpenTelemetryMetrics(Resolving):
    """An observer (:mod:`redkit.core.telemetry`) that records OpenTelemetry metrics and spans.

    ``enable()`` registers it process-wide (and returns it), ``disable()`` stops it.

    Args:
        meter_provider: where the instruments come from; ``None`` is the global one.
        tracer_provider: where the spans go; ``None`` is the global one.
        spans: the timings (``"feature.what"``) that also become spans; ``()`` for none.

    Raises:
        InvalidArgumentError: for a span name that no feature times.

    """

    def __init__(
        self,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        spans: Iterable[str] = DEFAULT_SPANS,
    ) -> None:
        super().__init__()
        known = _timings()
        chosen = frozenset([spans] if isinstance(spans, str) else spans)
        unknown = sorted(chosen - known)
        if unknown:
            raise InvalidArgumentError(
                f"spans: no feature times {', '.join(map(repr, unknown))}; "
                f"choose among {', '.join(sorted(known))}"
            )
        self._spans = chosen
        meter = metrics.get_meter("redkit", __version__, meter_provider=meter_provider)
        self._tracer = trace.get_tracer("redkit", __version__, tracer_provider=tracer_provider)
        self._events = {
            feature: meter.create_counter(name, "{event}", f"redkit {feature} events")
            for feature, name in _EVENTS.items()
        }
        self._histograms = {
            (feature, what): meter.create_histogram(
                f"redkit.{feature}.{what}.duration",
                "s",
                f"time a {feature} {what} took",
                explicit_bucket_boundaries_advisory=list(DEFAULT_BUCKETS),
            )
            for feature, f in FEATURES.items()
            for what in f.timings
        }
        self._driver = {
            counter: meter.create_counter(name, unit, f"redkit driver {counter}")
            for counter, (name, unit) in _DRIVER.items()
        }
        self._open_counter = meter.create_up_down_counter(
            "redkit.driver.open_circuits", "{circuit}", "circuit-breaker circuits open now"
        )

    def _driver_record(self, counter: str, name: str) -> Record | None:
        instrument = self._driver.get(counter)
        return None if instrument is None else _adder(instrument, {"redkit.driver": name})

    def _open_circuits(self, name: str, sign: int) -> Record:
        return _adder(self._open_counter, {"redkit.driver": name}, sign)

    def _event_record(self, feature: str, known: Feature, name: str, word: str) -> Record:
        events = self._events.get(feature)
        if events is None:
            return _ignore
        labels = {f"redkit.{known.name_label}": name, f"redkit.{known.event_label}": word}
        return _adder(events, labels)

    def _resolve_timing(self, feature: str, name: str, what: str) -> Record:
        histogram = self._histograms.get((feature, what))
        if histogram is None:
            return _ignore
        attributes = {f"redkit.{FEATURES[feature].name_label}": name}
        record = histogram.record
        if f"{feature}.{what}" not in self._spans:
            return lambda seconds: record(seconds, attributes)
        start_span = self._tracer.start_span
        span_name = f"redkit.{feature}.{what}"

        def record_and_trace(seconds: float) -> None:
            record(seconds, attributes)
            # The timing is reported when the work ends: the span is drawn back to its start,
            # in the caller's context (its parent is whatever span is current there).
            end = time.time_ns()
            span = start_span(span_name, start_time=end - int(seconds * 1e9), attributes=attributes)
            span.end(end_time=end)

        return record_and_trace


def _adder(instrument: Any, attributes: dict[str, str], sign: int = 1) -> Record:
    add = instrument.add

    def record(n: float) -> None:
        add(sign * n, attributes)

    return record
