"""Metrics and traces of what redkit does: Prometheus and OpenTelemetry (docs/metrics.md).

Both exporters are observers of :mod:`redkit.core.telemetry`: ``enable()`` registers one
process-wide, and every cache, limiter, concurrency limit, session store and driver reports
to it. Each is imported on first use, so that ``redkit.metrics`` needs neither library:

- :class:`PrometheusMetrics` (``pip install 'redkit[prometheus]'``);
- :class:`OpenTelemetryMetrics` (``pip install 'redkit[opentelemetry]'``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redkit.metrics.opentelemetry import OpenTelemetryMetrics
    from redkit.metrics.prometheus import PrometheusMetrics

__all__ = ["OpenTelemetryMetrics", "PrometheusMetrics"]

_HOMES = {
    "PrometheusMetrics": "redkit.metrics.prometheus",
    "OpenTelemetryMetrics": "redkit.metrics.opentelemetry",
}


def __getattr__(name: str) -> Any:
    """Import an exporter's module when its name is first used (its library is optional)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'redkit.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
