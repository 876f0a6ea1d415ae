"""The gateway's pub/sub: ``/subscribe`` and ``/psubscribe`` streamed as server-sent events.

Every test runs on a standalone Redis and on a 3-master cluster (the ``server`` fixture),
behind a gateway served by uvicorn on loopback, and reads the stream over real HTTP with
httpx. Messages are published through the gateway or straight to Redis.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis as redis_py

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.gateway import Gateway
from web_support import serve_asgi

TOKEN = "test-token-0123456789"
READ_ONLY = "test-read-only-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SSE = {**AUTH, "Accept": "text/event-stream"}
#: Reads wait this long for an event before the test fails (not a speed assertion: a bound).
READ_TIMEOUT = 30.0

Server = EmbeddedRedis | EmbeddedCluster


@pytest.fixture
def gateway(server: Server) -> Iterator[tuple[Gateway, str]]:
    app = Gateway.for_redis(server.url, TOKEN, read_only_token=READ_ONLY)
    with serve_asgi(app) as base:
        yield app, base


@pytest.fixture
def url(gateway: tuple[Gateway, str]) -> str:
    return gateway[1]


def nodes(server: Server) -> list[redis_py.Redis]:
    """A client for each primary (the standalone server: itself)."""
    if isinstance(server, EmbeddedCluster):
        return server.node_clients()
    return [server.client()]


def numsub(server: Server, channel: str) -> int:
    """Subscribers of ``channel`` on the whole server (a cluster counts them per node)."""
    total = 0
    for client in nodes(server):
        with client:
            total += int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0))
    return total


def wait_until(condition: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still not {what} after {deadline} s")
        time.sleep(0.05)


def publish(url: str, channel: str, message: str) -> None:
    reply = httpx.post(url, json=["PUBLISH", channel, message], headers=AUTH, timeout=30)
    assert reply.status_code == 200, reply.text


class Events:
    """An SSE response read as it comes: :meth:`take` returns the next events, raw."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._chunks = response.iter_bytes()
        self._buffer = b""

    def take(self, count: int = 1) -> list[str]:
        while self._buffer.count(b"\n\n") < count:
            self._buffer += next(self._chunks)
        *events, self._buffer = self._buffer.split(b"\n\n", count)
        return [event.decode("utf-8") + "\n\n" for event in events]

    def data(self, count: int = 1) -> list[str]:
        """The next ``count`` events that are not keep-alive comments."""
        found: list[str] = []
        while len(found) < count:
            found.extend(e for e in self.take() if not e.startswith(":"))
        return found

    def ended(self) -> bool:
        """Whether the response ended (after what is left of it)."""
        for chunk in self._chunks:
            self._buffer += chunk
        return True


@contextlib.contextmanager
def stream(
    url: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> Iterator[Events]:
    timeout = httpx.Timeout(30.0, read=READ_TIMEOUT)
    with httpx.stream(
        "POST", url + path, headers=SSE if headers is None else headers, timeout=timeout, **kwargs
    ) as response:
        yield Events(response)


# -- streams -------------------------------------------------------------------------------


def test_subscribe_streams_each_message_as_an_event(url: str, server: Server) -> None:
    with stream(url, "/subscribe/news", content=b"[]") as events:
        response = events.response
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert events.take() == ["data: subscribe,news,1\n\n"]
        publish(url, "news", 'hello, wörld ✓ {"a": [1, 2]}')
        assert events.take() == ['data: message,news,hello, wörld ✓ {"a": [1, 2]}\n\n']
        # Published straight to Redis, too; and an empty message.
        for client in nodes(server)[:1]:
            with client:
                client.publish("news", "direct")
                client.publish("news", "")
        assert events.take(2) == ["data: message,news,direct\n\n", "data: message,news,\n\n"]
