"""The REST driver's pure parts, and its drivers over a mock transport (no server)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from redkit.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
    InvalidArgumentError,
)
from redkit.core.ops import Masters, OnNode, Pipeline, ScriptCall, command
from redkit.core.scripts import Script
from redkit.drivers.rest import RestConnection
from redkit.drivers.rest_protocol import (
    KEY_LOCKING_LINE,
    BatchedReply,
    HttpReply,
    Reply,
    Request,
    decode_value,
    encode_args,
    error_for_status,
    merge,
    mergeable,
    plan,
    shape,
    split,
    with_key_locking,
)

URL = "https://db.example"
SCRIPT = Script("t", "return 1")


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def ok(result: Any) -> HttpReply:
    return HttpReply(200, json.dumps({"result": result}).encode())


def fail(message: str, status: int = 400) -> HttpReply:
    return HttpReply(status, json.dumps({"error": message}).encode())


def drive(op: Any, replies: list[Reply], *, key_locking: bool = False) -> tuple[Any, list]:
    """Run a plan against canned replies; return its result and the requests it made."""
    steps = plan(op, url=URL, token_name="token", key_locking=key_locking)
    sent: list[Request] = []
    answers = iter(replies)
    try:
        request = next(steps)
        while True:
            sent.append(request)
            request = steps.send(next(answers))
    except StopIteration as stop:
        return stop.value, [(r.path, json.loads(r.body)) for r in sent]


# -- encoding --------------------------------------------------------------------------------


def test_arguments_travel_as_json_strings() -> None:
    assert encode_args(("SET", "k", b"v\xc3\xa9", 10, 1.5, -(2**63))) == [
        "SET", "k", "vé", "10", "1.5", str(-(2**63)),
    ]  # fmt: skip
    assert encode_args(("CONFIG GET", "maxmemory")) == ["CONFIG", "GET", "maxmemory"]


@pytest.mark.parametrize("bad", [b"\xffrk", True, None, [1]])
def test_arguments_json_cannot_carry_are_refused_before_sending(bad: object) -> None:
    with pytest.raises(InvalidArgumentError):
        encode_args(("SET", "k", bad))  # type: ignore[arg-type]


def test_non_utf8_bytes_are_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidArgumentError, match="not UTF-8"):
        drive(command("SET", "k", b"\x80"), [])


# -- decoding --------------------------------------------------------------------------------


def test_replies_decode_to_redis_py_shapes() -> None:
    assert decode_value(b64(b"\x00\xff")) == b"\x00\xff"
    assert decode_value("OK") == b"OK"
    assert decode_value([b64("a"), 3, None, [b64("b")]]) == [b"a", 3, None, [b"b"]]
    with pytest.raises(BackendError, match="not base64"):
        decode_value("not base64!")
    # An error inside a script's array reply comes as plain text: an error in its place.
    [one, error, x] = decode_value([1, "ERR boom!", b64("x")])
    assert (one, x) == (1, b"x")
    assert isinstance(error, CommandError)
    assert str(error) == "ERR boom!"


def test_redis_py_callbacks_shape_replies() -> None:
    assert shape(("SET", "k", "v"), b"OK") is True
    assert shape(("set", "k", "v", "NX"), None) is None
    assert shape(("HGETALL", "h"), [b"f", b"v"]) == {b"f": b"v"}
    assert shape(("TIME",), [b"1700000000", b"5"]) == (1700000000, 5)
    assert shape(("PING",), b"PONG") is True
    assert shape(("GET", "k"), b"x") == b"x"
    assert shape(("ZSCORE", "z", "m"), b"1.5") == 1.5
    assert shape(("SCAN", 0), [b"0", [b"k"]]) == (0, [b"k"])
    assert shape(("ZRANGE", "z", 0, -1), [b"a"]) == [b"a"]
    scored = shape(("ZRANGE", "z", 0, -1, "withscores"), [b"a", b"1.5"])
    assert scored in ([[b"a", 1.5]], [b"a", b"1.5"])  # as redis-py's default protocol gives it


@pytest.mark.parametrize(
    ("status", "error", "match"),
    [
        (400, CommandError, "ERR wrong"),
        (401, ConfigurationError, "refused the token"),
        (404, ConfigurationError, "REST URL"),
        (405, ConfigurationError, "REST URL"),
        (413, CommandError, "ERR wrong"),
        (429, BackendUnavailable, "429"),
        (500, BackendUnavailable, "500"),
        (502, BackendUnavailable, "502"),
        (418, BackendError, "418"),
    ],
)
def test_http_statuses_map_to_typed_errors(status: int, error: type, match: str) -> None:
    body = b'{"error":"ERR wrong number of arguments"}'
    found = error_for_status(status, body, url=URL, token_name="TOKEN_VAR")
    assert type(found) is error
    assert match in str(found)
    assert error_for_status(200, b"{}", url=URL, token_name="t") is None


def test_a_refused_token_names_the_variable() -> None:
    found = error_for_status(401, b"Unauthorized", url=URL, token_name="UPSTASH_REDIS_REST_TOKEN")
    assert isinstance(found, ConfigurationError)
    assert found.variable == "UPSTASH_REDIS_REST_TOKEN"


# -- plans -----------------------------------------------------------------------------------


def test_a_command_is_one_post_and_its_reply_is_shaped() -> None:
    result, sent = drive(command("SET", "k", "v"), [ok("OK")])
    assert result is True
    assert sent == [("", ["SET", "k", "v"])]
    with pytest.raises(CommandError, match="WRONGTYPE"):
        drive(command("INCR", "k"), [fail("WRONGTYPE Operation against a key")])


def test_a_script_is_resent_with_eval_on_noscript() -> None:
    call = ScriptCall(SCRIPT, ("a",), (1,))
    result, sent = drive(call, [fail("NOSCRIPT No matching script"), ok(7)])
    assert result == 7
    assert sent == [
        ("", ["EVALSHA", SCRIPT.sha, "1", "a", "1"]),
        ("", ["EVAL", "return 1", "1", "a", "1"]),
    ]
    with pytest.raises(CommandError, match="boom"):
        drive(call, [fail("ERR boom")])


def test_key_locking_prefixes_scripts_and_names_them_by_the_prefixed_text() -> None:
    locked = with_key_locking(SCRIPT)
    assert locked.source == f"{KEY_LOCKING_LINE}\nreturn 1"
    assert locked.sha != SCRIPT.sha
    call = ScriptCall(SCRIPT, (), ())
    _, sent = drive(call, [fail("NOSCRIPT x"), ok(1)], key_locking=True)
    assert sent[0][1][1] == locked.sha
    assert sent[1][1][1] == locked.source


def test_a_pipeline_keeps_per_item_errors_and_reruns_unknown_scripts() -> None:
    op = Pipeline((command("SET", "a", "1"), command("INCR", "h"), ScriptCall(SCRIPT, (), ())))
    pipeline_reply = HttpReply(
        200,
        json.dumps([{"result": "OK"}, {"error": "WRONGTYPE no"}, {"error": "NOSCRIPT x"}]).encode(),
    )
    result, sent = drive(op, [pipeline_reply, ok(1)])
    assert result[0] is True
    assert isinstance(result[1], CommandError)
    assert "WRONGTYPE" in str(result[1])
    assert result[2] == 1
    assert sent[0] == (
        "/pipeline",
        [["SET", "a", "1"], ["INCR", "h"], ["EVALSHA", SCRIPT.sha, "0"]],
    )
    assert sent[1] == ("", ["EVAL", "return 1", "0"])


def test_a_transaction_sends_scripts_with_eval_and_raises_when_discarded() -> None:
    op = Pipeline((command("INCR", "a"), ScriptCall(SCRIPT, (), ())), transaction=True)
    result, sent = drive(op, [HttpReply(200, b'[{"result":1},{"result":1}]')])
    assert result == [1, 1]
    assert sent == [("/multi-exec", [["INCR", "a"], ["EVAL", "return 1", "0"]])]
    with pytest.raises(CommandError, match="EXECABORT"):
        drive(op, [HttpReply(200, b'{"error":"EXECABORT Transaction discarded"}')])
    with pytest.raises(CommandError, match="ERR unknown"):
        drive(op, [fail("ERR unknown command")])


def test_masters_is_the_one_server_and_on_node_runs_there() -> None:
    assert drive(Masters(), []) == ([None], [])
    result, sent = drive(OnNode(None, command("SCAN", 0)), [ok([b64("0"), [b64("k")]])])
    assert result == (0, [b"k"])
    assert sent == [("", ["SCAN", "0"])]


def test_malformed_replies_are_backend_errors() -> None:
    with pytest.raises(BackendError, match="not JSON"):
        drive(command("GET", "k"), [HttpReply(200, b"<html>")])
    with pytest.raises(BackendError, match="2 commands"):
        drive(Pipeline((command("GET", "a"), command("GET", "b"))), [HttpReply(200, b"[]")])


# -- batches (auto-pipelining) ---------------------------------------------------------------


def first_request(op: Any) -> Request:
    return next(plan(op, url=URL, token_name="token", key_locking=False))


def test_merge_splices_commands_and_pipelines_into_one_pipeline_request() -> None:
    one = first_request(command("SET", "k", "é"))
    two = first_request(Pipeline((command("GET", "a"), command("INCR", "b"))))
    merged = merge([one, two, one])
    assert merged.path == "/pipeline"
    assert merged.command_count == 4
    assert json.loads(merged.body) == [
        ["SET", "k", "é"],
        ["GET", "a"],
        ["INCR", "b"],
        ["SET", "k", "é"],
    ]
    transaction = first_request(Pipeline((command("INCR", "a"),), transaction=True))
    assert not mergeable(transaction)
    assert mergeable(one)
    assert mergeable(two)
    with pytest.raises(ValueError, match="alone"):
        merge([one, transaction])


def test_split_gives_each_request_its_entries_and_plans_read_them_as_their_own() -> None:
    requests = [
        first_request(command("INCR", "h")),
        first_request(Pipeline((command("GET", "a"), command("SET", "b", "1")))),
    ]
    body = json.dumps([{"error": "WRONGTYPE no"}, {"result": b64("x")}, {"result": "OK"}])
    replies = split(HttpReply(200, body.encode()), requests)
    assert replies == [
        BatchedReply([{"error": "WRONGTYPE no"}]),
        BatchedReply([{"result": b64("x")}, {"result": "OK"}]),
    ]
    assert replies is not None
    with pytest.raises(CommandError, match="WRONGTYPE"):
        drive(command("INCR", "h"), [replies[0]])
    result, _ = drive(Pipeline((command("GET", "a"), command("SET", "b", "1"))), [replies[1]])
    assert result == [b"x", True]
    # Refused as a whole (before it ran): each request may go alone. Other statuses are
    # every request's own reply.
    assert split(HttpReply(400, b'{"error":"ERR max request size"}'), requests) is None
    assert split(HttpReply(413, b""), requests) is None
    down = HttpReply(503, b"down")
    assert split(down, requests) == [down, down]
    with pytest.raises(BackendError, match="3 commands"):
        split(HttpReply(200, b"[]"), requests)


# -- drivers over a mock transport -----------------------------------------------------------


class Recorder:
    """A mock server: answers from a list, records what it was sent."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def rest(handler: Recorder, **options: Any) -> RestConnection:
    options.setdefault("retry_backoff", 0.001)
    return RestConnection(URL, token="tok", transport=httpx.MockTransport(handler), **options)


def test_every_request_carries_the_token_and_asks_for_base64() -> None:
    server = Recorder(httpx.Response(200, json={"result": b64("v")}))
    with rest(server) as conn:
        assert conn.sync_driver().execute(command("GET", "k")) == b"v"
    request = server.requests[0]
    assert request.method == "POST"
    assert request.url.path == "/"
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["upstash-encoding"] == "base64"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == ["GET", "k"]


def test_the_sync_token_is_carried_between_requests_and_drivers() -> None:
    server = Recorder(
        httpx.Response(200, json={"result": 1}, headers={"upstash-sync-token": "s1"}),
        httpx.Response(200, json={"result": 2}, headers={"upstash-sync-token": "s2"}),
        httpx.Response(200, json={"result": 3}),
    )
    with rest(server) as conn:
        conn.sync_driver().execute(command("INCR", "k"))
        conn.sync_driver(timeout=1.0).execute(command("INCR", "k"))  # another driver
        conn.sync_driver().execute(command("INCR", "k"))
        assert conn.sync_token == "s2"
    assert "upstash-sync-token" not in server.requests[0].headers
    assert server.requests[1].headers["upstash-sync-token"] == "s1"
    assert server.requests[2].headers["upstash-sync-token"] == "s2"


def test_read_your_writes_can_be_turned_off() -> None:
    server = Recorder(
        httpx.Response(200, json={"result": 1}, headers={"upstash-sync-token": "s1"}),
        httpx.Response(200, json={"result": 2}),
    )
    with rest(server, read_your_writes=False) as conn:
        conn.sync_driver().execute(command("INCR", "k"))
        conn.sync_driver().execute(command("INCR", "k"))
    assert "upstash-sync-token" not in server.requests[1].headers


def test_connect_errors_are_retried_then_unavailable() -> None:
    refused = httpx.ConnectError("refused")
    server = Recorder(refused, refused, httpx.Response(200, json={"result": 1}))
    with rest(server, retries=2) as conn:
        assert conn.sync_driver().execute(command("INCR", "k")) == 1
    assert len(server.requests) == 3
    server = Recorder(refused, refused, refused)
    with rest(server, retries=2) as conn, pytest.raises(BackendUnavailable, match="3 times"):
        conn.sync_driver().execute(command("INCR", "k"))


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (httpx.ReadTimeout("slow"), BackendTimeout),
        (httpx.ConnectTimeout("slow"), BackendTimeout),
        (httpx.PoolTimeout("busy"), BackendTimeout),
        (httpx.RemoteProtocolError("dropped"), BackendUnavailable),
        (httpx.ReadError("reset"), BackendUnavailable),
    ],
)
def test_nothing_but_connect_errors_is_retried(error: Exception, raised: type) -> None:
    server = Recorder(error, httpx.Response(200, json={"result": 1}))
    with rest(server, retries=3) as conn, pytest.raises(raised):
        conn.sync_driver().execute(command("INCR", "k"))
    assert len(server.requests) == 1  # a request that may have been applied is never resent


def test_the_async_driver_speaks_the_same_protocol() -> None:
    server = Recorder(
        httpx.ConnectError("refused"),
        httpx.Response(200, json=[{"result": "OK"}, {"error": "ERR x"}]),
        httpx.Response(401, json={"error": "Unauthorized"}),
    )

    async def main() -> list[Any]:
        async with rest(server) as conn:
            driver = conn.async_driver()
            assert conn.async_driver() is driver
            replies = await driver.execute(Pipeline((command("SET", "a", "1"), command("X"))))
            with pytest.raises(ConfigurationError, match="token"):
                await driver.execute(command("GET", "a"))
            return list(replies)

    first, second = asyncio.run(main())
    assert first is True
    assert isinstance(second, CommandError)
    assert server.requests[1].url.path == "/pipeline"
