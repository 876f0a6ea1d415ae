"""The demo's ``/metrics``: the app serves the metrics it is given; ``redkit demo`` gives it
Prometheus metrics whenever prometheus-client is installed."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from redkit.demo.app import create_app
from redkit.demo.db import Database
from redkit.drivers.connect import Connection
from redkit.metrics import PrometheusMetrics
from support.demo import running_demo
from support.metrics import parse, value
from support.metrics import prom as prom  # the fixture
from support.web import serve_asgi

pytestmark = pytest.mark.filterwarnings("ignore::redkit.errors.InsecureCookieWarning")


def test_the_demo_serves_what_its_routes_did(conn: Connection, prom: PrometheusMetrics) -> None:
    with (
        serve_asgi(create_app(conn, Database(), metrics=prom), conn) as url,
        httpx.Client(base_url=url, timeout=30, follow_redirects=True) as client,
    ):
        sources = [client.get("/api/products").json()["source"] for _ in range(3)]
        scraped = parse(client.get("/metrics").text)
    assert sources == ["database", "cache", "cache"]
    prefix = "@upstash/ratelimit"  # the seed's limiter, in its own layout
    allowed = value(scraped, "redkit_ratelimit_decisions_total", prefix=prefix, outcome="allowed")
    assert allowed == 3
    events = "redkit_cache_events_total"
    assert value(scraped, events, namespace="demo", event="misses") == 1
    assert value(scraped, events, namespace="demo", event="hits") == 2


def test_without_metrics_the_demo_has_no_metrics_route(conn: Connection) -> None:
    with serve_asgi(create_app(conn, Database()), conn) as url:
        assert httpx.get(url + "/metrics", timeout=30).status_code == 404


def test_the_command_serves_metrics() -> None:
    with running_demo({k: v for k, v in os.environ.items() if k != "REDIS_URL"}) as demo:
        httpx.get(demo.url + "/api/products", timeout=30)
        scraped = parse(httpx.get(demo.url + "/metrics", timeout=30, follow_redirects=True).text)
    assert demo.returncode == 0, demo.err
    assert value(scraped, "redkit_cache_events_total", namespace="demo", event="misses") == 1


def test_without_prometheus_client_the_command_has_no_metrics() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from redkit.demo.app import installed_metrics\n"
        "print(installed_metrics())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "None"
