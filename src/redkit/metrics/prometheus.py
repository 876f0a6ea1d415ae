"""redkit's events as Prometheus counters and histograms (``pip install 'redkit[prometheus]'``).

::

    from redkit.metrics import PrometheusMetrics

    metrics = PrometheusMetrics().enable()  # every cache, limiter, store and driver reports
    app.mount("/metrics", metrics.asgi_app())

The metrics (``redkit`` is the ``namespace`` argument), with their labels:

==========================================  ===========================  ====================
metric                                      labels                       what
==========================================  ===========================  ====================
``redkit_cache_events_total``               ``namespace``, ``event``     hits, misses, loads...
``redkit_cache_load_seconds``               ``namespace``                loader time (histogram)
``redkit_ratelimit_decisions_total``        ``prefix``, ``outcome``      allowed, blocked...
``redkit_ratelimit_decision_seconds``       ``prefix``                   decision time (opt-in)
``redkit_concurrency_events_total``         ``prefix``, ``event``        acquired, refused...
``redkit_sessions_events_total``            ``prefix``, ``event``        created, rotated...
``redkit_driver_round_trips_total``         ``driver``                   requests to Redis
``redkit_driver_commands_total``            ``driver``                   commands they carried
``redkit_driver_timeouts_total``            ``driver``                   operations timed out
``redkit_driver_errors_total``              ``driver``                   no answer, not a timeout
``redkit_driver_circuit_openings_total``    ``driver``                   breaker circuits opened
``redkit_driver_open_circuits``             ``driver``                   circuits open now (gauge)
==========================================  ===========================  ====================

Label values come from fixed vocabularies (:mod:`redkit.metrics.events`) and the instances'
configured namespaces and prefixes, never from an identifier, a key or a session id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from redkit.core.errors import ConfigurationError, InvalidArgumentError
from redkit.metrics.events import (
    DEFAULT_BUCKETS,
    DEFAULT_DURATIONS,
    FEATURES,
    Record,
    Resolving,
    ignore,
    timings_named,
)
from redkit.metrics.totals import Durations
from redkit.metrics.totals import commands_sent as _commands
from redkit.web._extras import framework_missing

try:
    import prometheus_client
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - tested in a subprocess
    raise framework_missing(
        "redkit.metrics.prometheus", "prometheus-client", "prometheus", exc
    ) from exc

__all__ = ["DEFAULT_BUCKETS", "DEFAULT_DURATIONS", "PrometheusMetrics"]

_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

# Each event family: the metric's name after the namespace, and its help text.
_EVENTS = {
    "cache": ("cache_events", "Cache events (hits, misses, loads...) by namespace."),
    "ratelimit": ("ratelimit_decisions", "Rate-limit decisions by prefix and outcome."),
    "concurrency": ("concurrency_events", "Concurrency-limit events by prefix."),
    "sessions": ("sessions_events", "Session store events by prefix."),
}
_TIMINGS = {
    ("cache", "load"): ("cache_load_seconds", "Time the cache's loader took, by namespace."),
    ("ratelimit", "decision"): ("ratelimit_decision_seconds", "Time a decision took."),
}
_DRIVER = {
    "round_trips": ("driver_round_trips", "Requests sent to Redis (a pipeline or a batch is one)."),
    "timeouts": ("driver_timeouts", "Operations that got no answer in time."),
    "errors": ("driver_errors", "Operations that got no answer, other than timeouts."),
    "circuit_opened": ("driver_circuit_openings", "Circuit-breaker circuits that opened."),
}
# Commands sent: one per round trip, and those batched beyond it; added up when scraped.
_COMMANDS = ("driver_commands", "Commands those round trips carried.")
_OPEN = ("driver_open_circuits", "Circuit-breaker circuits open now (opened minus closed).")


class PrometheusMetrics(Resolving):
    """An observer (:mod:`redkit.core.telemetry`) that keeps Prometheus metrics.

    ``enable()`` registers it process-wide (and returns it), ``disable()`` stops it. It is a
    collector of ``registry``: the values are kept in the process as exact totals and bucket
    counts (one locked update an event) and become metric families when scraped.

    Args:
        registry: the ``prometheus_client.CollectorRegistry`` to register in; ``None`` is
            prometheus-client's default ``REGISTRY`` (what ``start_http_server`` and
            ``make_asgi_app()`` serve).
        namespace: the prefix of every metric's name.
        buckets: the histograms' upper bounds, in seconds, increasing.
        durations: the timings (``"feature.what"``) recorded in their histograms; by default
            the loads only: ``("cache.load", "ratelimit.decision")`` adds the decisions' (an
            update on every decision).

    Raises:
        InvalidArgumentError: for a namespace that is not a metric name, or bad buckets.
        ConfigurationError: when ``registry`` holds these metrics already.
        InvalidArgumentError: for a duration that no feature times.

    """

    def __init__(
        self,
        registry: prometheus_client.CollectorRegistry | None = None,
        namespace: str = "redkit",
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        *,
        durations: Iterable[str] = DEFAULT_DURATIONS,
    ) -> None:
        super().__init__()
        chosen = timings_named(durations, "durations")
        if not isinstance(namespace, str) or not _NAME.match(namespace):
            raise InvalidArgumentError(
                f"namespace must be a Prometheus metric name ([a-zA-Z_][a-zA-Z0-9_]*), "
                f"got {namespace!r}"
            )
        bounds = list(buckets)
        if (
            not bounds
            or any(isinstance(b, bool) or not isinstance(b, (int, float)) for b in bounds)
            or any(b <= 0 for b in bounds)
            or bounds != sorted(set(bounds))
        ):
            raise InvalidArgumentError(
                f"buckets must be positive numbers of seconds, increasing, got {buckets!r}"
            )
        self.registry = prometheus_client.REGISTRY if registry is None else registry
        self.namespace = namespace
        # Only the chosen histograms are kept and exposed.
        self._timings = {
            key: Durations(bounds) for key in _TIMINGS if f"{key[0]}.{key[1]}" in chosen
        }
        try:
            self.registry.register(self)
        except ValueError as exc:  # prometheus-client: "Duplicated timeseries"
            raise ConfigurationError(
                f"this registry holds {namespace}_* metrics already ({exc}): make one "
                "PrometheusMetrics per registry, or give another registry= or namespace="
            ) from exc

    # -- the observer's timings -----------------------------------------------------------------

    def _resolve_timing(self, feature: str, name: str, what: str) -> Record:
        durations = self._timings.get((feature, what))
        return ignore if durations is None else durations.recorder((name,))

    # -- the collector -----------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """The metric families, without samples: what the registry checks for duplicates."""
        return list(self._families(empty=True))

    def collect(self) -> Iterator[Metric]:
        """The metric families with every series' value now (called at each scrape)."""
        return self._families(empty=False)

    def _families(self, *, empty: bool) -> Iterator[Metric]:
        ns = self.namespace
        for feature, (name, text) in _EVENTS.items():
            known = FEATURES[feature]
            family = CounterMetricFamily(
                f"{ns}_{name}", text, labels=[known.name_label, known.event_label]
            )
            for labels, total in [] if empty else self._events[feature].values():
                family.add_metric(list(labels), total)
            yield family
        for key, durations in self._timings.items():
            name, text = _TIMINGS[key]
            histogram = HistogramMetricFamily(
                f"{ns}_{name}", text, labels=[FEATURES[key[0]].name_label]
            )
            for labels, counts, seconds in [] if empty else durations.values():
                histogram.add_metric(list(labels), _cumulative(durations.bounds, counts), seconds)
            yield histogram
        for counter, (name, text) in _DRIVER.items():
            family = CounterMetricFamily(f"{ns}_{name}", text, labels=["driver"])
            for labels, total in [] if empty else self._driver[counter].values():
                family.add_metric(list(labels), total)
            yield family
        commands = CounterMetricFamily(f"{ns}_{_COMMANDS[0]}", _COMMANDS[1], labels=["driver"])
        for labels, total in [] if empty else _commands(self._driver):
            commands.add_metric(list(labels), total)
        yield commands
        gauge = GaugeMetricFamily(f"{ns}_{_OPEN[0]}", _OPEN[1], labels=["driver"])
        for labels, total in [] if empty else self._open.values():
            gauge.add_metric(list(labels), total)
        yield gauge

    # -- exposition --------------------------------------------------------------------------

    def asgi_app(self) -> Any:
        """An ASGI app that serves this registry in the text exposition format (``/metrics``)."""
        return prometheus_client.make_asgi_app(registry=self.registry)

    def wsgi_app(self) -> Any:
        """A WSGI app that serves this registry in the text exposition format (``/metrics``)."""
        return prometheus_client.make_wsgi_app(registry=self.registry)

    def latest(self) -> bytes:
        """This registry in the text exposition format, as ``/metrics`` answers."""
        return prometheus_client.generate_latest(self.registry)


def _cumulative(bounds: Sequence[float], counts: list[float]) -> list[tuple[str, float]]:
    """Per-bucket counts as Prometheus' cumulative ``le`` buckets, ``+Inf`` last."""
    buckets: list[tuple[str, float]] = []
    running = 0.0
    for bound, count in zip(bounds, counts, strict=False):
        running += count
        buckets.append((repr(float(bound)), running))  # "0.005", "1.0": as prometheus-client
    buckets.append(("+Inf", running + counts[-1]))
    return buckets
