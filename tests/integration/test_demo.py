"""``redkit demo``: the README's first command."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from support import process_alive


def test_demo_runs_on_its_own_embedded_redis_and_stops_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "redkit", "demo"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    pid = int(re.search(r"\(pid (\d+)\)", out).group(1))  # type: ignore[union-attr]
    assert not process_alive(pid)
    # Five of seven requests pass the 5-per-window limit, in each runner...
    assert out.count("allowed") == 10
    assert out.count("limited") == 4
    # ...and the cache misses once, then hits.
    assert out.count(": miss") == 2
    assert out.count(": hit") == 4
    assert "Stopped the embedded redis-server" in out


def test_demo_uses_redis_url_and_removes_only_its_keys(
    redis_server: EmbeddedRedis, redis_cluster: EmbeddedCluster
) -> None:
    from redkit.demo.walkthrough import main

    for url, clients in (
        (redis_server.url, [redis_server.client()]),
        (redis_cluster.url, redis_cluster.node_clients()),
    ):
        clients[0].set("someone-else:key", "kept")
        out = io.StringIO()
        assert main(out, {"REDIS_URL": url}) == 0
        assert "Using the Redis at REDIS_URL" in out.getvalue()
        assert re.search(r"Removed the demo's (\d+) keys", out.getvalue())
        keys = [key for client in clients for key in client.keys("*")]
        assert keys == [b"someone-else:key"]
        for client in clients:
            client.flushall()
            client.close()
