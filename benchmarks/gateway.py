"""The REST gateway and the REST clients, side by side with Redis itself.

One embedded ``redis-server``, and ``redkit gateway`` in front of it in a process of its own
(uvicorn, as users run it). Every row reads small values (GET of a 100-byte value, or a
pipeline of 10 GETs) for a fixed time, once per round, in a shuffled order; rounds repeat.
Each row reports the median requests/s over the rounds and the median of its per-round ratios
to redis-py talking to Redis directly in the same mode (sync rows against sync redis-py, async
rows against redis.asyncio). Sync rows use one client in one thread; async rows run 20 tasks on
one event loop.

Rows:

- redis-py straight to Redis (the reference rows);
- bare HTTP/1.1 on a keep-alive socket to the gateway (sync only): the gateway's own cost;
- raw HTTP to the gateway with httpx (one JSON array per request): httpx's cost on top;
- the official ``upstash-redis`` client through the gateway;
- redkit's REST driver through the gateway (``redkit.connect(url, token=...)``).

    .venv/bin/python benchmarks/gateway.py            # the full run (about 3 minutes)
    .venv/bin/python benchmarks/gateway.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
import redis.asyncio
from harness import cpu_stall_us, run_async, run_sync, sectioned_table, spread, versions

from redkit import EmbeddedRedis
from redkit.core.ops import Pipeline, command

SYNC, ASYNC = "sync", "async"
TASKS = 20
KEYS = 200
PIPELINE = 10
TOKEN = "bench-token-0123456789"
VALUE = b"v" * 100


@dataclass
class Row:
    """One measured row: how to build its operation, and what it measured."""

    group: str
    name: str
    mode: str
    build: Callable[..., Any]
    notes: str = ""
    rates: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def start_gateway(redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    """``redkit gateway`` in a process of its own; its URL once it answers."""
    port = free_port()
    env = {**os.environ, "REDKIT_GATEWAY_TOKEN": TOKEN}
    process = subprocess.Popen(
        [sys.executable, "-m", "redkit", "gateway", "--redis", redis_url, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json=["PING"], headers=auth()).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gateway did not start")


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


# -- operations: (env) -> op(key) -------------------------------------------------------------


def direct_sync(env: dict[str, Any], pipelined: bool) -> Callable[[str], Any]:
    client = redis.Redis.from_url(env["redis"])
    env["closers"].append(client.close)
    if not pipelined:
        return client.get

    def batch(key: str) -> Any:
        pipe = client.pipeline(transaction=False)
        for k in env["batches"][key]:
            pipe.get(k)
        return pipe.execute()

    return batch


async def direct_async(env: dict[str, Any], pipelined: bool) -> Callable[[str], Awaitable[Any]]:
    client = redis.asyncio.Redis.from_url(env["redis"], max_connections=TASKS)
    env["async_closers"].append(client.aclose)
    if not pipelined:
        return client.get

    async def batch(key: str) -> Any:
        pipe = client.pipeline(transaction=False)
        for k in env["batches"][key]:
            pipe.get(k)
        return await pipe.execute()

    return batch


def socket_sync(env: dict[str, Any], pipelined: bool) -> Callable[[str], Any]:
    """A bare HTTP/1.1 keep-alive client on a socket: what the gateway itself can serve."""
    import json
    from urllib.parse import urlsplit

    where = urlsplit(env["gateway"])
    sock = socket.create_connection((where.hostname, where.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    env["closers"].append(sock.close)
    requests = {}
    for key, batch in env["batches"].items():
        body = json.dumps([["GET", k] for k in batch] if pipelined else ["GET", key]).encode()
        path = "/pipeline" if pipelined else "/"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {TOKEN}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests[key] = head.encode() + body
    buffer = bytearray()

    def one(key: str) -> bytes:
        sock.sendall(requests[key])
        while b"\r\n\r\n" not in buffer:
            buffer.extend(sock.recv(65536))
        end = buffer.index(b"\r\n\r\n") + 4
        length = int(buffer[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(buffer) < end + length:
            buffer.extend(sock.recv(65536))
        body = bytes(buffer[end : end + length])
        del buffer[: end + length]
        return body

    return one


def http_sync(env: dict[str, Any], pipelined: bool) -> Callable[[str], Any]:
    client = httpx.Client(base_url=env["gateway"], headers=auth())
    env["closers"].append(client.close)
    if not pipelined:
        return lambda key: client.post("/", json=["GET", key]).json()
    return lambda key: client.post(
        "/pipeline", json=[["GET", k] for k in env["batches"][key]]
    ).json()


async def http_async(env: dict[str, Any], pipelined: bool) -> Callable[[str], Awaitable[Any]]:
    client = httpx.AsyncClient(base_url=env["gateway"], headers=auth())
    env["async_closers"].append(client.aclose)

    async def one(key: str) -> Any:
        return (await client.post("/", json=["GET", key])).json()

    async def batch(key: str) -> Any:
        body = [["GET", k] for k in env["batches"][key]]
        return (await client.post("/pipeline", json=body)).json()

    return batch if pipelined else one


def upstash_sync(env: dict[str, Any], pipelined: bool) -> Callable[[str], Any]:
    from upstash_redis import Redis

    client = Redis(url=env["gateway"], token=TOKEN, allow_telemetry=False)
    env["closers"].append(client.close)
    if not pipelined:
        return client.get

    def batch(key: str) -> Any:
        pipe = client.pipeline()
        for k in env["batches"][key]:
            pipe.get(k)
        return pipe.exec()

    return batch


async def upstash_async(env: dict[str, Any], pipelined: bool) -> Callable[[str], Awaitable[Any]]:
    from upstash_redis.asyncio import Redis

    client = Redis(url=env["gateway"], token=TOKEN, allow_telemetry=False)
    env["async_closers"].append(client.close)
    if not pipelined:
        return client.get

    async def batch(key: str) -> Any:
        pipe = client.pipeline()
        for k in env["batches"][key]:
            pipe.get(k)
        return await pipe.exec()

    return batch


def redkit_reads(env: dict[str, Any], driver: Any, pipelined: bool) -> Callable[[str], Any]:
    """One GET per call, or (pipelined) the batch named by the key; sync or async ``driver``."""
    if not pipelined:
        return lambda key: driver.execute(command("GET", key))
    ops = {
        key: Pipeline(tuple(command("GET", k) for k in ks)) for key, ks in env["batches"].items()
    }
    return lambda key: driver.execute(ops[key])


def redkit_sync(env: dict[str, Any], pipelined: bool) -> Callable[[str], Any]:
    import redkit

    conn = redkit.connect(env["gateway"], token=TOKEN)
    env["closers"].append(conn.close)
    return redkit_reads(env, conn.sync_driver(), pipelined)


async def redkit_async(env: dict[str, Any], pipelined: bool) -> Callable[[str], Awaitable[Any]]:
    import redkit

    conn = redkit.connect(env["gateway"], token=TOKEN)
    env["async_closers"].append(conn.aclose)
    return redkit_reads(env, conn.async_driver(), pipelined)


def build_rows() -> list[Row]:
    rows: list[Row] = []
    for pipelined, what in ((False, "GET"), (True, f"pipeline of {PIPELINE} GETs")):
        names = (
            "redis-py, straight to Redis",
            "bare HTTP/1.1 on a socket to the gateway",
            "raw HTTP (httpx) to the gateway",
            "upstash-redis through the gateway",
            "redkit REST driver through the gateway",
        )
        notes = (
            "reference row",
            "the gateway's own cost: no client library",
            "httpx alone",
            "official client",
            "",
        )
        for mode, makers in (
            (SYNC, (direct_sync, socket_sync, http_sync, upstash_sync, redkit_sync)),
            (ASYNC, (direct_async, None, http_async, upstash_async, redkit_async)),
        ):
            group = f"{what} ({mode}: {'1 client' if mode == SYNC else f'{TASKS} tasks'})"
            for maker, name, note in zip(makers, names, notes, strict=True):
                if maker is None:
                    continue
                rows.append(
                    Row(group, name, mode, lambda env, m=maker, p=pipelined: m(env, p), note)
                )
    return rows


def measure(rows: list[Row], env: dict[str, Any], seconds: float, rounds: int) -> None:
    ids = list(env["batches"])
    loop = asyncio.new_event_loop()
    try:
        for number in range(rounds):
            order = rows[:]
            random.shuffle(order)
            rates: dict[int, float] = {}
            for row in order:
                if row.mode == SYNC:
                    op = row.build(env)
                    rate, _, _ = run_sync(op, ids, seconds, lambda _: False)
                else:

                    async def timed(row: Row = row) -> float:
                        op = await row.build(env)
                        rate, _, _ = await run_async(op, ids, seconds, TASKS, lambda _: False)
                        return rate

                    rate = loop.run_until_complete(timed())
                rates[id(row)] = rate
                row.rates.append(rate)
                for close in env["closers"]:
                    close()
                env["closers"].clear()
                for aclose in env["async_closers"]:
                    loop.run_until_complete(aclose())
                env["async_closers"].clear()
            for row in rows:
                reference = next(r for r in rows if r.group == row.group)
                row.ratios.append(rates[id(row)] / rates[id(reference)])
            print(f"round {number + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        loop.close()


def table(rows: list[Row]) -> str:
    return sectioned_table(
        "| what | requests/s: median (min, max) | ratio to redis-py straight to Redis, same "
        "mode (median of per-round ratios) | notes |",
        "|---|---:|---:|---|",
        (
            (
                row.group,
                f"| {row.name} | {spread(row.rates)} | "
                f"{statistics.median(row.ratios):.2f} | {row.notes} |",
            )
            for row in rows
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    args = parser.parse_args(argv)
    seconds, rounds = (0.3, 2) if args.quick else (1.0, 7)
    rows = build_rows()
    with EmbeddedRedis() as server:
        with server.client() as admin:
            for n in range(KEYS):
                admin.set(f"k{n}", VALUE)
        process, gateway = start_gateway(server.url)
        try:
            keys = [f"k{n}" for n in range(KEYS)]
            env: dict[str, Any] = {
                "redis": server.url,
                "gateway": gateway,
                "batches": {k: random.sample(keys, PIPELINE) for k in keys},
                "closers": [],
                "async_closers": [],
            }
            stall_before = cpu_stall_us()
            measure(rows, env, seconds, rounds)
            stall_after = cpu_stall_us()
        finally:
            process.terminate()
            process.wait(10)
        facts = versions(server.binary, ("httpx", "upstash-redis", "uvicorn"))
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(table(rows))
    print(f"\n<!-- python benchmarks/gateway.py{' --quick' if args.quick else ''} | {now} -->")
    for name, value in facts.items():
        print(f"- {name}: {value}")
    if stall_before is not None and stall_after is not None:
        print(f"- CPU stall while measuring: {(stall_after - stall_before) / 1e6:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
