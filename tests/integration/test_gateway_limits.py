"""The gateway's two protections: the script time limit and the response size cap.

On a standalone Redis and a 3-master cluster (the ``server`` fixture), behind a gateway served
by uvicorn on loopback. Redis takes ``SCRIPT KILL`` only once a script has run past its
``lua-time-limit``, so the tests lower it (and put it back after: the servers are shared by
every test). A script that has written cannot be killed and would hold its server for the rest
of the run: that test has a Redis of its own, shut down with ``SHUTDOWN NOSAVE``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.gateway import Gateway
from support.web import serve_asgi

TOKEN = "limits-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ENDLESS = "while true do end"


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    return httpx.post(url + path, json=body, headers=headers, timeout=60, **kwargs)


def _nodes(server: EmbeddedRedis | EmbeddedCluster) -> list[redis.Redis]:
    if isinstance(server, EmbeddedCluster):
        return server.node_clients(socket_timeout=30)
    return [server.client(socket_timeout=30)]


@contextlib.contextmanager
def lua_time_limit(server: EmbeddedRedis | EmbeddedCluster, ms: int) -> Iterator[None]:
    """Every node's ``lua-time-limit`` at ``ms`` for the block, then as it was."""
    nodes = _nodes(server)
    before = [node.config_get("lua-time-limit")["lua-time-limit"] for node in nodes]
    try:
        for node in nodes:
            node.config_set("lua-time-limit", ms)
        yield
    finally:
        for node, value in zip(nodes, before, strict=True):
            node.config_set("lua-time-limit", value)
            node.close()


@pytest.mark.parametrize(
    ("limit", "server_ms"),
    [(0.5, 200), (0.2, 800)],
    ids=["gateway-limit-first", "redis-limit-first"],
)
def test_an_endless_script_is_killed_and_others_are_answered(
    server: EmbeddedRedis | EmbeddedCluster, limit: float, server_ms: int
) -> None:
    app = Gateway.for_redis(server.url, TOKEN, script_timeout=limit)
    with lua_time_limit(server, server_ms), serve_asgi(app) as url:
        assert post(url, "/", ["SET", "k", "v"]).json() == {"result": "OK"}
        assert post(url, "/", ["EVAL", "return 1", 0]).json() == {"result": 1}  # watched, fast
        answers: dict[str, httpx.Response] = {}

        def call(name: str, body: list[Any]) -> None:
            answers[name] = post(url, "/", body)

        looping = threading.Thread(target=call, args=("script", ["EVAL", ENDLESS, 0]))
        looping.start()
        time.sleep(0.1)
        # Another client meanwhile is answered: the value, or BUSY while Redis runs the script.
        call("during", ["GET", "k"])
        looping.join(30)
        assert not looping.is_alive()
        killed = answers["script"]
        assert killed.status_code == 400
        error = killed.json()["error"]
        assert f"ran past the gateway's time limit of {limit:g} s and was killed" in error
        assert "--script-timeout" in error
        # When Redis's own limit is the longer one, the message says where the wait came from.
        assert ("lua-time-limit, 0.8 s" in error) == (server_ms == 800)
        during = answers["during"]
        assert during.json() == {"result": "v"} or "BUSY" in during.json()["error"]
        # Redis is free again, and so are the gateway's connections.
        for _ in range(3):
            assert post(url, "/", ["GET", "k"]).json() == {"result": "v"}
        assert post(url, "/", ["EVAL", "return ARGV[1]", 0, "again"]).json() == {"result": "again"}


def test_the_killed_scripts_connection_stays_in_use(redis_server: EmbeddedRedis) -> None:
    # One pooled connection, and CLIENT ID to name it: the same before and after the kill.
    app = Gateway.for_redis(
        redis_server.url, TOKEN, script_timeout=0.2, max_connections=1, allow=["CLIENT"]
    )
    with lua_time_limit(redis_server, 100), serve_asgi(app) as url:
        before = post(url, "/", ["CLIENT", "ID"]).json()["result"]
        assert "was killed" in post(url, "/", ["EVAL", ENDLESS, 0]).json()["error"]
        assert post(url, "/", ["CLIENT", "ID"]).json()["result"] == before


def test_in_a_batch_the_limit_is_on_the_batch(server: EmbeddedRedis | EmbeddedCluster) -> None:
    app = Gateway.for_redis(server.url, TOKEN, script_timeout=0.3)
    with lua_time_limit(server, 100), serve_asgi(app) as url:
        piped = post(url, "/pipeline", [["SET", "a", "1"], ["EVAL", ENDLESS, 0], ["GET", "a"]])
        assert piped.status_code == 200
        items = piped.json()
        assert items[0] == {"result": "OK"}
        assert "was killed" in items[1]["error"]
        assert items[2] == {"result": "1"}
        # In a transaction the killed script's item is the error, the others ran.
        atomic = post(url, "/multi-exec", [["EVAL", ENDLESS, 1, "{t}x"], ["SET", "{t}a", "2"]])
        assert atomic.status_code == 200
        first, second = atomic.json()
        assert "was killed" in first["error"]
        assert second == {"result": "OK"}
        assert post(url, "/", ["GET", "{t}a"]).json() == {"result": "2"}


def test_a_script_that_wrote_is_reported_unkillable(caplog: pytest.LogCaptureFixture) -> None:
    # Its own server: an unkillable script holds Redis until it is shut down.
    with EmbeddedRedis(extra_args=("--lua-time-limit", "100")) as own:
        # No retries: SHUTDOWN NOSAVE closes the connection, which is the answer.
        admin = own.client(socket_timeout=30, retry=Retry(NoBackoff(), 0))
        app = Gateway.for_redis(own.url, TOKEN, script_timeout=0.3)
        try:
            with serve_asgi(app) as url, caplog.at_level(logging.ERROR, "redkit.gateway"):
                wrote = "redis.call('SET', KEYS[1], 'x') " + ENDLESS
                response = post(url, "/", ["EVAL", wrote, 1, "k"])
                assert response.status_code == 400
                error = response.json()["error"]
                assert error.startswith("UNKILLABLE")
                assert "time limit of 0.3 s" in error
                assert "SHUTDOWN NOSAVE" in error
                assert any("cannot be killed" in r.getMessage() for r in caplog.records)
                # The gateway still answers, with Redis's own word for its state.
                busy = post(url, "/", ["GET", "k"])
                assert busy.status_code == 400
                assert busy.json()["error"].startswith("BUSY")
        finally:
            with contextlib.suppress(redis.ConnectionError):
                admin.shutdown(nosave=True)  # what the error names: it does stop the script
            admin.close()


# -- the response size cap -----------------------------------------------------------------------

CAP = 40_000
VALUE = "x" * 1000
#: As JSON a value takes its 1000 bytes, two quotes and a comma.
KEYS = [f"{{v}}key:{i:04}" for i in range(3000)]


@pytest.fixture
def capped(server: EmbeddedRedis | EmbeddedCluster) -> Iterator[str]:
    app = Gateway.for_redis(server.url, TOKEN, max_response=CAP)
    with serve_asgi(app) as url:
        for start in range(0, len(KEYS), 500):
            pairs = [part for key in KEYS[start : start + 500] for part in (key, VALUE)]
            assert post(url, "/", ["MSET", *pairs]).json() == {"result": "OK"}
        yield url


def test_a_reply_over_the_cap_is_an_error(capped: str) -> None:
    keys = post(capped, "/", ["KEYS", "*"])  # 3000 names of 14 bytes as JSON
    assert keys.status_code == 400
    error = keys.json()["error"]
    assert error.startswith("ERR max response size exceeded")
    assert f"the limit is {CAP}" in error
    assert "SCAN" in error
    assert "--max-response" in error
    # Read in parts instead, each part fits.
    page = post(capped, "/", ["SCAN", 0, "COUNT", 100]).json()["result"]
    assert len(page) == 2
    fits = post(capped, "/", ["MGET", *KEYS[:30]])  # 30 * 1003 bytes
    assert fits.status_code == 200
    assert fits.json()["result"] == [VALUE] * 30
    too_many = post(capped, "/", ["MGET", *KEYS[:50]])
    assert too_many.status_code == 400
    assert "the reply is about 50152 bytes" in too_many.json()["error"]
    # Base64 makes each value a third larger: the same 30 values no longer fit.
    b64 = post(capped, "/", ["MGET", *KEYS[:30]], headers={"Upstash-Encoding": "base64"})
    assert b64.status_code == 400
    assert "max response size exceeded" in b64.json()["error"]


def test_in_a_batch_the_cap_is_on_the_whole_response(capped: str) -> None:
    batch = [["MGET", *KEYS[:30]], ["MGET", *KEYS[30:60]], ["GET", KEYS[0]]]
    piped = post(capped, "/pipeline", batch)
    assert piped.status_code == 200
    first, second, third = piped.json()
    assert first == {"result": [VALUE] * 30}
    # With the first one's bytes, the second would pass the cap; the third still fits.
    assert second["error"].startswith("ERR max response size exceeded")
    assert "after 30092 bytes of the replies before it" in second["error"]
    assert third == {"result": VALUE}
    atomic = post(capped, "/multi-exec", batch[:2])
    assert atomic.status_code == 200
    one, two = atomic.json()
    assert one == {"result": [VALUE] * 30}
    assert "max response size exceeded" in two["error"]
