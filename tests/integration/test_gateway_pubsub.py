"""The gateway's pub/sub: ``/subscribe`` and ``/psubscribe`` streamed as server-sent events.

Every test runs on a standalone Redis and on a 3-master cluster (the ``server`` fixture),
behind a gateway served by uvicorn on loopback, and reads the stream over real HTTP with
httpx. Messages are published through the gateway or straight to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis as redis_py

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.gateway import Gateway
from support.probes import closed_port
from support.web import serve_asgi

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

    def rest(self) -> str:
        """What is left of the response, read to its end (a read times out if it does not end)."""
        for chunk in self._chunks:
            self._buffer += chunk
        rest, self._buffer = self._buffer, b""
        return rest.decode("utf-8")


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


def test_several_channels_each_a_percent_decoded_path_segment(url: str) -> None:
    with stream(url, "/subscribe/a/b%2Fc/%C3%A9t%C3%A9%2C%20y") as events:
        assert events.take(3) == [
            "data: subscribe,a,1\n\n",
            "data: subscribe,b/c,2\n\n",
            "data: subscribe,été, y,3\n\n",
        ]
        publish(url, "b/c", "x")
        publish(url, "été, y", "y")
        publish(url, "elsewhere", "z")
        publish(url, "a", "w")
        assert events.take(3) == [
            "data: message,b/c,x\n\n",
            "data: message,été, y,y\n\n",
            "data: message,a,w\n\n",
        ]


def test_psubscribe_streams_pattern_messages(url: str, server: Server) -> None:
    # %3F: a ? would start the query.
    with stream(url, "/psubscribe/news.*/chat:%3F") as events:
        assert events.take(2) == [
            "data: psubscribe,news.*,1\n\n",
            "data: psubscribe,chat:?,2\n\n",
        ]
        publish(url, "news.tech", "a, b ✓")
        publish(url, "other", "not this")
        publish(url, "chat:1", "c")
        assert events.take(2) == [
            "data: pmessage,news.*,news.tech,a, b ✓\n\n",
            "data: pmessage,chat:?,chat:1,c\n\n",
        ]


def test_line_breaks_in_a_payload_become_data_lines(url: str) -> None:
    with stream(url, "/subscribe/lines") as events:
        events.take()
        publish(url, "lines", "one\ntwo\r\nthree\rfour\n")
        assert events.take() == [
            "data: message,lines,one\ndata: two\ndata: three\ndata: four\ndata: \n\n"
        ]
        # An SSE parser (httpx's line splitting, as EventSource's) joins them with LF.
        publish(url, "lines", "a\nb")
        (raw,) = events.take()
        data = "\n".join(line[len("data: ") :] for line in raw.splitlines() if line)
        assert data == "message,lines,a\nb"


def test_upstash_encoding_does_not_apply_to_streams(url: str) -> None:
    # The official SDK sends Upstash-Encoding: base64 with its subscriptions and reads the
    # events as text.
    headers = {**SSE, "Upstash-Encoding": "base64"}
    with stream(url, "/subscribe/b64", headers) as events:
        assert events.take() == ["data: subscribe,b64,1\n\n"]
        publish(url, "b64", "plain ✓")
        assert events.take() == ["data: message,b64,plain ✓\n\n"]


def test_get_and_the_token_in_the_query_open_a_stream(url: str) -> None:
    # What a browser's EventSource sends: GET, Accept: text/event-stream, no header for a token.
    timeout = httpx.Timeout(30.0, read=READ_TIMEOUT)
    with httpx.stream(
        "GET",
        f"{url}/subscribe/browser?_token={READ_ONLY}",
        headers={"Accept": "text/event-stream"},
        timeout=timeout,
    ) as response:
        events = Events(response)
        assert events.take() == ["data: subscribe,browser,1\n\n"]
        publish(url, "browser", "hi")
        assert events.take() == ["data: message,browser,hi\n\n"]


def test_read_only_tokens_may_subscribe(url: str) -> None:
    headers = {"Authorization": f"Bearer {READ_ONLY}", "Accept": "text/event-stream"}
    with stream(url, "/subscribe/ro", headers) as events:
        assert events.take() == ["data: subscribe,ro,1\n\n"]
        publish(url, "ro", "seen")
        assert events.take() == ["data: message,ro,seen\n\n"]
    # Publishing stays a write.
    refused = httpx.post(
        url, json=["PUBLISH", "ro", "x"], headers={"Authorization": f"Bearer {READ_ONLY}"}
    )
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("NOPERM")


def test_refused_subscriptions(url: str) -> None:
    def post(path: str, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
        return httpx.post(url + path, headers=headers, timeout=30, **kwargs)

    missing = post("/subscribe/c", {"Accept": "text/event-stream"})
    assert (missing.status_code, missing.json()) == (401, {"error": "Unauthorized"})
    wrong = post("/subscribe/c", {"Authorization": "Bearer nope", "Accept": "text/event-stream"})
    assert (wrong.status_code, wrong.json()) == (401, {"error": "WRONGPASS invalid password"})
    for accept in ({}, {"Accept": "application/json"}):
        plain = post("/subscribe/c", {**AUTH, **accept})
        assert plain.status_code == 400
        assert "Accept: text/event-stream" in plain.json()["error"]
    # A list of media types that names it is fine.
    listed = {**AUTH, "Accept": "application/json, text/event-stream;q=0.9"}
    with stream(url, "/psubscribe/x*", listed) as events:
        assert events.take() == ["data: psubscribe,x*,1\n\n"]
    for path in ("/subscribe", "/subscribe/", "/psubscribe//"):
        nothing = post(path, SSE)
        assert nothing.status_code == 400
        assert "no " in nothing.json()["error"]
        assert "to subscribe to" in nothing.json()["error"]
    body = post("/subscribe/c", SSE, json=["SUBSCRIBE", "c"])
    assert body.status_code == 400
    assert "go in the path" in body.json()["error"]
    head = httpx.head(url + "/subscribe/c", headers=SSE)
    assert head.status_code == 405
    assert head.headers["allow"] == "GET, POST, PUT"
    # As a command, SUBSCRIBE is still refused, and the error names the route.
    command = post("/", AUTH, json=["SUBSCRIBE", "c"])
    assert command.status_code == 400
    assert "/subscribe/<channel>" in command.json()["error"]


# -- resources -----------------------------------------------------------------------------


def test_a_client_going_away_releases_the_redis_connection(
    gateway: tuple[Gateway, str], server: Server
) -> None:
    app, url = gateway
    with stream(url, "/subscribe/leave") as events:
        assert events.take() == ["data: subscribe,leave,1\n\n"]
        assert numsub(server, "leave") == 1
        assert len(app.streams) == 1
    # The client closed its connection: the gateway notices, unsubscribes and closes its own.
    wait_until(lambda: numsub(server, "leave") == 0, "unsubscribed")
    wait_until(lambda: len(app.streams) == 0, "released")
    # Its pool was never involved: ordinary requests still work.
    publish(url, "leave", "nobody")


def test_max_streams_refuses_one_more(server: Server) -> None:
    app = Gateway.for_redis(server.url, TOKEN, max_streams=2)
    with serve_asgi(app) as url:
        with stream(url, "/subscribe/one") as first, stream(url, "/psubscribe/two*") as second:
            first.take()
            second.take()
            refused = httpx.post(url + "/subscribe/three", headers=SSE, timeout=30)
            assert refused.status_code == 503
            error = refused.json()["error"]
            assert "at most 2 streams" in error
            assert "--max-streams" in error
            assert numsub(server, "three") == 0
        # Their places are given back when they end.
        wait_until(lambda: len(app.streams) == 0, "released")
        with stream(url, "/subscribe/three") as third:
            assert third.take() == ["data: subscribe,three,1\n\n"]


def test_an_unreachable_redis_is_a_503_and_holds_no_place() -> None:
    app = Gateway.for_redis(f"redis://127.0.0.1:{closed_port()}", TOKEN, max_streams=1)
    with serve_asgi(app) as url:
        for _ in range(2):  # the second would be refused for the limit if the first kept its place
            refused = httpx.post(url + "/subscribe/c", headers=SSE, timeout=30)
            assert refused.status_code == 503
            assert refused.json() == {"error": "ERR the database is not reachable from the gateway"}
        assert len(app.streams) == 0


def test_redis_dropping_the_connection_ends_the_stream(
    gateway: tuple[Gateway, str], server: Server
) -> None:
    app, url = gateway
    with stream(url, "/subscribe/dropped") as events:
        events.take()
        for client in nodes(server):
            with client:
                client.client_kill_filter(_type="pubsub")
        assert events.rest() == ""
    wait_until(lambda: len(app.streams) == 0, "released")


def test_aclose_ends_every_stream(server: Server) -> None:
    app = Gateway.for_redis(server.url, TOKEN)
    loops: list[asyncio.AbstractEventLoop] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        # The gateway runs in uvicorn's loop, in its thread: aclose() must run there.
        if not loops:
            loops.append(asyncio.get_running_loop())
        await app(scope, receive, send)

    with serve_asgi(recording) as url:
        with stream(url, "/subscribe/a") as first, stream(url, "/psubscribe/b*") as second:
            first.take()
            second.take()
            assert len(app.streams) == 2
            asyncio.run_coroutine_threadsafe(app.aclose(), loops[0]).result(30)
            assert len(app.streams) == 0
            assert first.rest() == ""
            assert second.rest() == ""
        wait_until(lambda: numsub(server, "a") == 0, "unsubscribed")


def test_keepalive_comments_on_a_quiet_stream(server: Server) -> None:
    app = Gateway.for_redis(server.url, TOKEN, stream_keepalive=0.2)
    with serve_asgi(app) as url, stream(url, "/subscribe/quiet") as events:
        assert events.take() == ["data: subscribe,quiet,1\n\n"]
        assert events.take(2) == [": keepalive\n\n", ": keepalive\n\n"]
        # The PINGs' answers are not events; messages still come.
        publish(url, "quiet", "at last")
        assert events.data() == ["data: message,quiet,at last\n\n"]


@pytest.mark.slow
def test_the_command_takes_max_streams_and_ends_the_streams_when_stopped(
    redis_server: EmbeddedRedis,
) -> None:
    port = closed_port()
    env = {**os.environ, "REDKIT_GATEWAY_TOKEN": TOKEN, "REDKIT_GATEWAY_MAX_STREAMS": "1"}
    command = [sys.executable, "-m", "redkit", "gateway", "--redis", redis_server.url]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert f":{port}/" in process.stdout.readline()
        url = f"http://127.0.0.1:{port}"

        def answering() -> bool:
            with contextlib.suppress(httpx.TransportError):
                return httpx.post(url, json=["PING"], headers=AUTH, timeout=5).status_code == 200
            return False

        wait_until(answering, "serving")
        with stream(url, "/subscribe/stopping") as events:
            assert events.take() == ["data: subscribe,stopping,1\n\n"]
            refused = httpx.post(url + "/subscribe/more", headers=SSE, timeout=30)
            assert refused.status_code == 503
            assert "at most 1 streams" in refused.json()["error"]
            # Ctrl-C: uvicorn waits for every connection to close; the stream must end first.
            process.send_signal(signal.SIGINT)
            assert events.rest() == ""
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # 130: uvicorn raises the Ctrl-C again once it has stopped (older versions exit with 0).
    assert process.returncode in (0, 130), err
    assert "Application shutdown complete" in err
    wait_until(lambda: numsub(redis_server, "stopping") == 0, "unsubscribed")
