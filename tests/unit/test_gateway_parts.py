"""The gateway's sans-I/O parts: request parsing, reply encoding, policy, scripts, tokens."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from redis.exceptions import NoScriptError, ResponseError

from redkit.core.errors import ConfigurationError, InvalidArgumentError, RedkitError
from redkit.gateway import Gateway, TokenRule
from redkit.gateway.auth import TokenTable, fingerprint, presented_token
from redkit.gateway.policy import CommandPolicy
from redkit.gateway.protocol import (
    ProtocolError,
    encode_reply,
    error_message,
    item,
    json_body,
    parse_batch,
    parse_command,
    parse_path,
    reply_size,
)
from redkit.gateway.pubsub import check_body, event, is_route, require_event_stream, route
from redkit.gateway.scripts import ScriptMap, sha1_hex, strip_key_locking
from redkit.gateway.server import build

# -- protocol ----------------------------------------------------------------------------------


def test_parse_command() -> None:
    assert parse_command(b'["SET", "k", "v\xc3\xa9", "EX", 100]') == [
        b"SET",
        b"k",
        "vé".encode(),
        b"EX",
        b"100",
    ]
    assert parse_command(b'["INCRBYFLOAT", "k", 0.5, -2]') == [b"INCRBYFLOAT", b"k", b"0.5", b"-2"]


@pytest.mark.parametrize(
    "body",
    [b"", b"  ", b"nope", b"{}", b'"GET"', b"[]", b"[null]", b'["A", [1]]'],
)
def test_parse_command_refuses(body: bytes) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_command(body)
    assert caught.value.status == 400
    assert caught.value.message.startswith("ERR ")
    assert isinstance(caught.value, RedkitError)


def test_parse_command_refuses_infinite_numbers() -> None:
    with pytest.raises(ProtocolError, match="finite"):
        parse_command(b'["SET", "k", Infinity]')


def test_parse_batch() -> None:
    assert parse_batch(b'[["GET", "a"], ["INCR", "b"]]') == [[b"GET", b"a"], [b"INCR", b"b"]]
    for body in (b"[]", b'["GET", "a"]', b'[["GET"], []]', b'[["GET"], {"a": 1}]'):
        with pytest.raises(ProtocolError):
            parse_batch(body)


def test_parse_path() -> None:
    assert parse_path(b"/set/foo/bar", b"", None) == [b"set", b"foo", b"bar"]
    assert parse_path(b"/set/foo", b"EX=100&_token=secret", b"\x00\xff") == [
        b"set",
        b"foo",
        b"\x00\xff",
        b"EX",
        b"100",
    ]
    assert parse_path(b"/set/a%2Fb/%E2%9C%93", b"NX", b"") == [b"set", b"a/b", "✓".encode(), b"NX"]
    with pytest.raises(ProtocolError):
        parse_path(b"/", b"", None)


def test_encode_reply_plain() -> None:
    reply = [b"caf\xc3\xa9", 3, None, [b"\xff", b"OK"], ResponseError("boom")]
    assert encode_reply(reply, b64=False) == ["café", 3, None, ["\ufffd", "OK"], "ERR boom"]


def test_encode_reply_base64() -> None:
    def enc(data: bytes) -> str:
        return base64.b64encode(data).decode()

    reply = [b"v", b"OK", 7, None, [b"\xff\x00", b"PONG"]]
    assert encode_reply(reply, b64=True) == [
        enc(b"v"),
        "OK",
        7,
        None,
        [enc(b"\xff\x00"), enc(b"PONG")],
    ]
    assert encode_reply(b"OK", b64=True) == "OK"


def test_items_and_errors() -> None:
    assert item(b"x", b64=False) == {"result": "x"}
    assert item(NoScriptError("No matching script.", status_code="NOSCRIPT"), b64=True) == {
        "error": "NOSCRIPT No matching script."
    }
    assert error_message(ResponseError("WRONGTYPE Operation against a key")).startswith("WRONGTYPE")
    assert error_message(ResponseError("wrong number of arguments")) == (
        "ERR wrong number of arguments"
    )
    assert json.loads(json_body({"result": "é"})) == {"result": "é"}


# -- policy ------------------------------------------------------------------------------------


def test_policy() -> None:
    policy = CommandPolicy()
    assert policy.refusal([b"get", b"k"], read_only=False) is None
    assert "not allowed" in (policy.refusal([b"flushall"], read_only=False) or "")
    assert "blocking" in (policy.refusal([b"blpop", b"l", b"0"], read_only=False) or "")
    assert "blocking" in (
        policy.refusal([b"XREADGROUP", b"GROUP", b"g", b"c", b"BLOCK", b"0"], read_only=False) or ""
    )
    # "block" after STREAMS is a key name, not the option.
    assert policy.refusal([b"XREAD", b"STREAMS", b"block", b"0"], read_only=False) is None
    assert "/multi-exec" in (policy.refusal([b"MULTI"], read_only=False) or "")
    assert "not supported" in (policy.refusal([b"select", b"1"], read_only=False) or "")
    assert policy.refusal([b"GET", b"k"], read_only=True) is None
    for write in ([b"SET", b"k", b"v"], [b"SCAN", b"0"], [b"KEYS", b"*"], [b"EVAL", b"", b"0"]):
        assert (policy.refusal(write, read_only=True) or "").startswith("NOPERM")
    assert CommandPolicy(["flushall", " config "]).refusal([b"FLUSHALL"], read_only=False) is None
    with pytest.raises(InvalidArgumentError, match="cannot allow"):
        CommandPolicy(["SELECT"])


def test_policy_keeps_pooled_connections_and_databases_apart() -> None:
    policy = CommandPolicy(["CLIENT"])
    # Subcommands that would change the state of a pooled connection never run, allowed or not.
    for command in ([b"script", b"debug", b"yes"], [b"CLIENT", b"REPLY", b"OFF"]):
        assert "not supported" in (policy.refusal(command, read_only=False) or "")
    assert policy.refusal([b"SCRIPT", b"LOAD", b"return 1"], read_only=False) is None
    assert policy.refusal([b"CLIENT", b"LIST"], read_only=False) is None
    # Other databases of the same server stay out of reach of direct commands.
    assert "not allowed" in (CommandPolicy().refusal([b"MOVE", b"k", b"1"], read_only=False) or "")
    assert "not allowed" in (
        CommandPolicy().refusal([b"COPY", b"a", b"b", b"db", b"2"], read_only=False) or ""
    )
    assert CommandPolicy().refusal([b"COPY", b"a", b"b", b"REPLACE"], read_only=False) is None
    # FUNCTION and FCALL run, as on Upstash; FUNCTION FLUSH (every library) only if allowed.
    assert "not allowed" in (
        CommandPolicy().refusal([b"FUNCTION", b"FLUSH"], read_only=False) or ""
    )
    assert CommandPolicy(["FUNCTION"]).refusal([b"FUNCTION", b"FLUSH"], read_only=False) is None
    assert CommandPolicy().refusal([b"FUNCTION", b"LOAD", b"#!lua name=l"], read_only=False) is None
    assert CommandPolicy().refusal([b"FCALL", b"f", b"0"], read_only=False) is None
    # Read-only tokens: FCALL_RO and FUNCTION LIST of them.
    assert CommandPolicy().refusal([b"FCALL_RO", b"f", b"0"], read_only=True) is None
    assert CommandPolicy().refusal([b"FUNCTION", b"LIST"], read_only=True) is None
    for writes in ([b"FCALL", b"f", b"0"], [b"FUNCTION", b"LOAD", b"x"], [b"FUNCTION", b"DELETE"]):
        assert (CommandPolicy().refusal(writes, read_only=True) or "").startswith("NOPERM")
    # Read-only tokens: the reading subcommands of MEMORY and OBJECT only.
    assert CommandPolicy().refusal([b"MEMORY", b"USAGE", b"k"], read_only=True) is None
    assert (CommandPolicy().refusal([b"MEMORY", b"PURGE"], read_only=True) or "").startswith(
        "NOPERM"
    )
    assert CommandPolicy().refusal([b"OBJECT", b"ENCODING", b"k"], read_only=True) is None


# -- scripts -----------------------------------------------------------------------------------


def test_strip_key_locking() -> None:
    assert strip_key_locking(b"#!lua flags=allow-key-locking\nreturn 1") == b"\nreturn 1"
    assert strip_key_locking(b"#!lua flags=allow-key-locking\r\nreturn 1") == b"\nreturn 1"
    assert strip_key_locking(b"#!lua flags=no-writes,allow-key-locking\nreturn 1") == (
        b"#!lua flags=no-writes\nreturn 1"
    )
    assert strip_key_locking(b"#!lua flags=no-writes\nreturn 1") is None
    assert strip_key_locking(b"return 1") is None
    assert strip_key_locking(b"#!luajit flags=allow-key-locking\n") is None


def test_script_map() -> None:
    scripts = ScriptMap()
    source = b"#!lua flags=allow-key-locking\nreturn 1"
    sent_sha = hashlib.sha1(source).hexdigest().encode()
    stripped = b"\nreturn 1"

    evaluated = scripts.translate([b"EVAL", source, b"0"])
    assert evaluated.command == [b"EVAL", stripped, b"0"]
    by_sha = scripts.translate([b"evalsha", sent_sha.upper(), b"0"])
    assert by_sha.command == [b"evalsha", sha1_hex(stripped), b"0"]
    assert by_sha.fallback == [b"EVAL", stripped, b"0"]
    assert scripts.translate([b"EVALSHA", sent_sha, b"0"], inline=True).command == [
        b"EVAL",
        stripped,
        b"0",
    ]
    loaded = scripts.translate([b"SCRIPT", b"LOAD", source])
    assert loaded.command == [b"SCRIPT", b"LOAD", stripped]
    assert loaded.reply_sha == sent_sha
    exists = scripts.translate([b"SCRIPT", b"EXISTS", sent_sha, b"f" * 40])
    assert exists.command == [b"SCRIPT", b"EXISTS", sha1_hex(stripped), b"f" * 40]
    # Unknown shas and plain scripts pass through untouched.
    assert scripts.translate([b"EVALSHA", b"a" * 40, b"0"]).command == [b"EVALSHA", b"a" * 40, b"0"]
    assert scripts.translate([b"EVAL", b"return 2", b"0"]).command == [b"EVAL", b"return 2", b"0"]


def test_script_map_is_bounded() -> None:
    scripts = ScriptMap(capacity=2)
    shas = [scripts.remember(f"s{i}".encode(), b"x") for i in range(3)]
    assert scripts.source(shas[0]) is None
    assert scripts.source(shas[2]) == b"x"


# -- tokens ------------------------------------------------------------------------------------


def test_token_table() -> None:
    rw, ro = TokenRule("redis://a"), TokenRule("redis://a", read_only=True)
    table = TokenTable({"alpha": rw, "beta": ro})
    assert table.lookup(b"alpha") is rw
    assert table.lookup(b"beta") is ro
    assert table.lookup(b"alph") is None
    assert table.lookup(b"") is None
    for bad in ({}, {"": rw}, {" padded ": rw}):
        with pytest.raises(InvalidArgumentError, match="token"):
            TokenTable(bad)


def test_presented_token() -> None:
    assert presented_token([(b"authorization", b"Bearer abc")], b"") == b"abc"
    assert presented_token([(b"Authorization", b"bearer  abc ")], b"_token=zzz") == b"abc"
    assert presented_token([(b"authorization", b"Basic abc")], b"") is None
    assert presented_token([], b"x=1&_token=a%2Bb") == b"a+b"
    assert presented_token([], b"_token=") is None


def test_fingerprint_hides_the_token() -> None:
    label = fingerprint("super-secret-token")
    assert "secret" not in label
    assert label == fingerprint(b"super-secret-token")
    assert label != fingerprint("another")


# -- pub/sub -----------------------------------------------------------------------------------


def test_stream_routes() -> None:
    assert route(b"/subscribe/a") == [b"SUBSCRIBE", b"a"]
    assert route(b"/SUBSCRIBE/a/b%2Fc/") == [b"SUBSCRIBE", b"a", b"b/c"]
    assert route(b"/psubscribe/news.%2A/%E2%9C%93") == [b"PSUBSCRIBE", b"news.*", "✓".encode()]
    assert route(b"/subscriber/a") is None
    assert route(b"/get/subscribe") is None
    assert is_route(b"/psubscribe")
    assert not is_route(b"/")
    with pytest.raises(ProtocolError, match="no pattern"):
        route(b"/psubscribe/")
    with pytest.raises(ProtocolError, match="no channel"):
        route(b"/subscribe")


def test_stream_requests() -> None:
    require_event_stream([(b"Accept", b"text/event-stream")])
    require_event_stream([(b"accept", b"text/html, TEXT/EVENT-STREAM; q=0.5")])
    for headers in ([], [(b"accept", b"*/*")], [(b"content-type", b"text/event-stream")]):
        with pytest.raises(ProtocolError, match="Accept: text/event-stream"):
            require_event_stream(headers)
    for body in (b"", b"  ", b"[]", b"[ ]\n"):
        check_body(body)
    for body in (b'["ch"]', b"{}", b"[", b"null"):
        with pytest.raises(ProtocolError, match="go in the path"):
            check_body(body)


def test_events() -> None:
    assert event([b"subscribe", b"ch", 1]) == b"data: subscribe,ch,1\n\n"
    assert event([b"message", b"ch", "é, ✓".encode()]) == "data: message,ch,é, ✓\n\n".encode()
    assert event([b"pmessage", b"c*", b"cat", b"x"]) == b"data: pmessage,c*,cat,x\n\n"
    # Every line break ends a data: line; the text goes on in the next one.
    assert event([b"message", b"c", b"a\nb\r\nc\rd"]) == (
        b"data: message,c,a\ndata: b\ndata: c\ndata: d\n\n"
    )
    assert event([b"message", b"c", b"\xff"]) == "data: message,c,\ufffd\n\n".encode()


# -- configuration -----------------------------------------------------------------------------


def test_gateway_validates_its_settings() -> None:
    with pytest.raises(ConfigurationError):
        Gateway({"t": TokenRule("http://nope")})
    with pytest.raises(InvalidArgumentError, match="differ"):
        Gateway.for_redis("redis://localhost", "same", read_only_token="same")
    app = Gateway({"t": "redis://localhost:1"}, allow=["FLUSHDB"])
    assert "FLUSHDB" in repr(app)
    with pytest.raises(InvalidArgumentError, match="max_streams"):
        Gateway({"t": "redis://localhost:1"}, max_streams=0)
    with pytest.raises(InvalidArgumentError, match="keep-alive"):
        Gateway({"t": "redis://localhost:1"}, stream_keepalive=0)


def test_build_from_the_environment() -> None:
    env = {
        "REDKIT_GATEWAY_REDIS": "redis://localhost:1",
        "REDKIT_GATEWAY_TOKEN": "rw",
        "REDKIT_GATEWAY_READ_ONLY_TOKEN": "ro",
        "REDKIT_GATEWAY_ALLOW": "flushdb, config",
        "REDKIT_GATEWAY_MAX_BODY": "1234",
        "REDKIT_GATEWAY_MAX_STREAMS": "7",
    }
    app = build(environ=env)
    assert app.max_body == 1234
    assert app.streams.limit == 7
    assert build(environ=env, max_streams=3).streams.limit == 3
    assert build(environ={**env, "REDKIT_GATEWAY_MAX_STREAMS": ""}).streams.limit == 100
    assert app.policy.allow == {"FLUSHDB", "CONFIG"}
    # --allow-command adds to the variable's list; it does not replace it.
    assert build(environ=env, allow=["SWAPDB"]).policy.allow == {"FLUSHDB", "CONFIG", "SWAPDB"}
    with pytest.raises(ConfigurationError, match="no token"):
        build(environ={"REDIS_URL": "redis://localhost:1"})
    with pytest.raises(ConfigurationError, match="no Redis"):
        build(environ={"REDKIT_GATEWAY_TOKEN": "rw"})
    with pytest.raises(ConfigurationError, match="MAX_BODY"):
        build(environ={**env, "REDKIT_GATEWAY_MAX_BODY": "ten"})
    with pytest.raises(ConfigurationError, match="MAX_STREAMS must be a number"):
        build(environ={**env, "REDKIT_GATEWAY_MAX_STREAMS": "many"})
    with pytest.raises(ConfigurationError, match="--max-streams"):
        build(environ=env, max_streams=0)


def test_build_reads_the_limits() -> None:
    env = {"REDKIT_GATEWAY_REDIS": "redis://localhost:1", "REDKIT_GATEWAY_TOKEN": "rw"}
    default = build(environ=env)
    assert default.max_response == 16 * 1024 * 1024
    assert default.script_timeout == 5.0
    app = build(
        environ={
            **env,
            "REDKIT_GATEWAY_MAX_RESPONSE": "5000",
            "REDKIT_GATEWAY_SCRIPT_TIMEOUT": "0.5",
        }
    )
    assert (app.max_response, app.script_timeout) == (5000, 0.5)
    # The flags win over the variables; 0 turns the script limit off.
    flagged = build(environ={**env, "REDKIT_GATEWAY_SCRIPT_TIMEOUT": "9"}, script_timeout=0)
    assert flagged.script_timeout is None
    for variable, value in (
        ("REDKIT_GATEWAY_MAX_RESPONSE", "big"),
        ("REDKIT_GATEWAY_MAX_RESPONSE", "0"),
        ("REDKIT_GATEWAY_SCRIPT_TIMEOUT", "soon"),
        ("REDKIT_GATEWAY_SCRIPT_TIMEOUT", "-1"),
    ):
        with pytest.raises(ConfigurationError, match=variable):
            build(environ={**env, variable: value})
    with pytest.raises(InvalidArgumentError, match="positive"):
        Gateway({"t": "redis://localhost:1"}, script_timeout=0)
    with pytest.raises(InvalidArgumentError, match="positive"):
        Gateway({"t": "redis://localhost:1"}, max_response=0)


def test_reply_size_is_about_the_size_of_the_json() -> None:
    replies: list[object] = [
        b"OK",
        b"",
        12345,
        None,
        [b"a", [b"nested", -1, None], []],
        b"x" * 3000,
        ResponseError("ERR boom"),
    ]
    for reply in replies:
        exact = len(json_body(encode_reply(reply, b64=False)))
        # At most one byte more per element: a comma counted after the last one too.
        assert exact <= reply_size(reply, b64=False) <= exact + 8
    # Base64 takes four bytes for three.
    assert reply_size(b"y" * 3000, b64=True) == 4000 + 3


def test_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(
        json.dumps(
            {
                "one": {"redis": "redis://localhost:1"},
                "two": {"redis": "redis+cluster://localhost:2", "read_only": True},
            }
        )
    )
    assert isinstance(build(tokens_file=str(path), environ={}), Gateway)
    path.write_text(json.dumps({"one": {"url": "redis://x"}}))
    with pytest.raises(ConfigurationError, match="'redis'"):
        build(tokens_file=str(path), environ={})


def test_cli_reports_a_missing_token(capsys: pytest.CaptureFixture[str]) -> None:
    from redkit.cli import main

    assert main(["gateway", "--redis", "redis://localhost:1"]) == 2  # a missing setting: exit 2
    assert "no token" in capsys.readouterr().err
