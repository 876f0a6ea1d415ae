"""The keyspace report on a million keys, and what it costs the server's other clients.

Fills an embedded ``redis-server`` (or a 3-master cluster, ``--cluster``) with ``--keys`` keys
under a handful of prefixes with mixed TTLs and types (pipelined ``SET``/``HSET``, 10,000 a
round trip), then runs :func:`redkit.ops.scan_keyspace` with its defaults (``COUNT 1000``,
1 ms pause between batches, ``MEMORY USAGE`` of every 10th key). Meanwhile a *separate
process* (so that this one's GIL does not count) sends ``PING`` and ``GET`` in turn on its own
connection and records each reply's latency; the same probe runs for as long before the scan,
on the idle server, for comparison.

    .venv/bin/python benchmarks/keyspace.py                 # 1,000,000 keys, standalone
    .venv/bin/python benchmarks/keyspace.py --cluster
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import redis
import redis.cluster

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.ops import scan_keyspace

# Prefixes as an app of redkit's would have them: (format, share of the keys, TTL seconds).
LAYOUT = (
    ("cache:g0:product:{}", 0.40, 3600),
    ("session:{}", 0.20, 86_400),
    ("user:{}:profile", 0.25, None),
    ("@upstash/ratelimit:{}:29000000", 0.10, 60),
    ("jobs:{}", 0.05, None),
)
BATCH = 10_000


def _client(url: str, cluster: bool) -> Any:
    if cluster:
        return redis.cluster.RedisCluster.from_url(url.replace("redis+cluster", "redis"))
    return redis.Redis.from_url(url)


def _probe(url: str, cluster: bool) -> None:
    """The other client: PING and GET in turn until stdin closes; latencies (ms) as JSON."""
    import threading

    client = _client(url, cluster)
    client.set("probe:key", "x")
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    latencies: list[float] = []
    clock = time.perf_counter
    while not stop.is_set():
        start = clock()
        client.ping()
        latencies.append((clock() - start) * 1000)
        start = clock()
        client.get("probe:key")
        latencies.append((clock() - start) * 1000)
        time.sleep(0.0005)
    client.close()
    print(json.dumps(latencies))


def _fill(client: Any, keys: int) -> None:
    made = 0
    for form, share, ttl in LAYOUT:
        count = int(keys * share)
        for start in range(0, count, BATCH):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + BATCH, count)):
                name = form.format(i)
                if form.startswith("user:"):
                    pipe.hset(name, mapping={"name": f"user {i}", "plan": "pro"})
                else:
                    pipe.set(name, "v" * (20 + i % 200), ex=ttl)
            pipe.execute()
        made += count
    print(f"filled {made:,} keys", file=sys.stderr)


def _measure(url: str, cluster: bool, work: Any) -> tuple[list[float], Any]:
    """Run ``work()`` while the probe process runs: (its latencies in ms, what work returned)."""
    probe = subprocess.Popen(
        [sys.executable, __file__, "--probe", url, *(["--cluster"] if cluster else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdout is not None
    assert probe.stdin is not None
    assert probe.stdout.readline().strip() == "ready"
    result = work()
    probe.stdin.close()
    latencies: list[float] = json.loads(probe.stdout.readline())
    probe.wait(timeout=30)
    probe.stdout.close()
    return latencies, result


def _server_stats(client: Any, *, reset: bool) -> dict[str, tuple[int, float, int]]:
    """The report's commands as the server timed them: calls, mean and slowest (SLOWLOG).

    The slowest of them bounds what the report adds to another client's wait: Redis runs one
    command at a time, so a reply waits at most for the command running when it arrived.
    """
    nodes = (
        {"target_nodes": redis.cluster.RedisCluster.PRIMARIES}
        if isinstance(client, redis.cluster.RedisCluster)
        else {}
    )
    if reset:
        client.config_set("slowlog-log-slower-than", 500, **nodes)  # log only the slow
        client.config_set("slowlog-max-len", 100_000, **nodes)
        client.slowlog_reset(**nodes)
        client.config_resetstat(**nodes)
        return {}
    stats = client.info("commandstats", **nodes)
    per_node = list(stats.values()) if nodes else [stats]
    logs = client.slowlog_get(100_000, **nodes)
    if nodes and isinstance(logs, dict):
        entries = [entry for node in logs.values() for entry in node]
    else:
        entries = logs
    client.config_set("slowlog-log-slower-than", 10_000, **nodes)
    found: dict[str, tuple[int, float, int]] = {}
    for name in ("scan", "evalsha", "eval", "type", "pttl", "memory|usage", "memory", "dbsize"):
        calls = sum(int(node.get(f"cmdstat_{name}", {}).get("calls", 0)) for node in per_node)
        if not calls:
            continue
        usec = sum(int(node.get(f"cmdstat_{name}", {}).get("usec", 0)) for node in per_node)
        slowest = max((int(e["duration"]) for e in entries if _command_name(e) == name), default=0)
        found[name] = (calls, usec / calls, slowest)
    return found


def _command_name(entry: dict[str, Any]) -> str:
    first = entry["command"].split()[0]
    return (first.decode() if isinstance(first, bytes) else str(first)).lower()


def _row(label: str, latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p99 = ordered[int(len(ordered) * 0.99)]
    return (
        f"| {label} | {len(ordered):,} | {statistics.median(ordered):.3f} | {p99:.3f} "
        f"| {ordered[-1]:.3f} |"
    )


def main() -> None:
    """Fill, probe the idle server, run the report while probing, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--cluster", action="store_true", help="a 3-master cluster")
    parser.add_argument("--count", type=int, default=1000, help="SCAN COUNT (default 1000)")
    parser.add_argument("--pause", type=float, default=0.001, help="seconds between batches")
    parser.add_argument("--probe", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        _probe(args.probe, args.cluster)
        return
    server: Any = EmbeddedCluster(3) if args.cluster else EmbeddedRedis()
    with server:
        client = _client(server.url, args.cluster)
        try:
            _fill(client, args.keys)
        finally:
            client.close()
        with server.connect() as conn:

            def report() -> Any:
                start = time.perf_counter()
                done = scan_keyspace(conn, count=args.count, pause=args.pause)
                return done, time.perf_counter() - start

            admin = _client(server.url, args.cluster)
            _server_stats(admin, reset=True)

            during, (done, seconds) = _measure(server.url, args.cluster, report)
            busiest = _server_stats(admin, reset=False)
            idle, _ = _measure(server.url, args.cluster, lambda: time.sleep(seconds))
            admin.close()
    topology = "3-master cluster" if args.cluster else "standalone"
    print(f"# keyspace report, {topology}, {done.scanned:,} keys scanned of {done.total_keys:,}")
    print(f"# python {platform.python_version()}, {platform.machine()}")
    print(f"report: {seconds:.2f} s; memory sampled {done.memory_sampled:,} keys, estimated "
          f"{(done.memory_bytes or 0) / 2**20:.0f} MiB")  # fmt: skip
    print("| the other client | replies | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    print(_row("idle server", idle))
    print(_row("during the report", during))
    print()
    print("| the report's commands, server side | calls | mean us | slowest us |")
    print("|---|---:|---:|---:|")
    for name, (calls, mean, slowest) in sorted(busiest.items()):
        print(f"| {name} | {calls:,} | {mean:.0f} | {slowest:,} |")


if __name__ == "__main__":
    main()
