"""Clocks, reply readers and script resources (no server)."""

from __future__ import annotations

import hashlib
import time

import pytest

from redkit.core.clock import ClientClock, ServerClock, VirtualClock, current_ms, resolve_clock
from redkit.core.flow import run_sync
from redkit.core.ops import Command, RedisOp
from redkit.core.replies import as_float, as_int, as_optional_int, as_text, is_ok, server_time_ms
from redkit.core.scripts import Script, load_script


def test_virtual_clock_moves_only_forward_when_told() -> None:
    clock = VirtualClock(1000.0)
    assert clock.now_ms() == 1000.0
    assert clock.advance(250) == 1250.0
    clock.set(2000)
    assert clock.now_ms() == 2000.0
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="forward"):
        clock.set(1999)


def test_client_clock_reads_wall_time() -> None:
    assert abs(ClientClock().now_ms() - time.time() * 1000) < 1000


def test_resolve_clock() -> None:
    default = ClientClock()
    assert resolve_clock(None, default=default) is default
    assert resolve_clock("server", default=default).server
    assert not resolve_clock("client", default=ServerClock()).server
    virtual = VirtualClock()
    assert resolve_clock(virtual, default=default) is virtual
    with pytest.raises(ValueError, match="clock must be"):
        resolve_clock("local", default=default)  # type: ignore[arg-type]


def test_current_ms_asks_redis_only_for_server_time() -> None:
    class TimeDriver:
        def __init__(self) -> None:
            self.seen: list[RedisOp] = []

        def execute(self, op: RedisOp) -> object:
            self.seen.append(op)
            return [b"1700000000", b"123456"]

        def close(self) -> None:
            pass

    driver = TimeDriver()
    assert run_sync(current_ms(ServerClock()), driver) == 1_700_000_000_123.456
    assert driver.seen == [Command(("TIME",))]
    assert run_sync(current_ms(VirtualClock(5.0)), driver) == 5.0
    assert len(driver.seen) == 1
    with pytest.raises(RuntimeError, match="inside Redis"):
        ServerClock().now_ms()


def test_reply_readers_accept_every_shape() -> None:
    assert as_text(b"abc") == "abc"
    assert as_text("abc") == "abc"
    assert as_int(b"12") == 12
    assert as_int("12") == 12
    assert as_int(12) == 12
    assert as_optional_int(None) is None
    assert as_optional_int(b"3") == 3
    assert as_float(b"1.5") == 1.5
    assert as_float(2) == 2.0
    assert is_ok(True)
    assert is_ok(b"OK")
    assert is_ok("OK")
    assert not is_ok(None)
    assert not is_ok(b"QUEUED")
    assert server_time_ms((1, 500)) == 1000.5
    assert server_time_ms([b"2", b"0"]) == 2000.0


def test_scripts_are_named_by_their_sha1() -> None:
    script = Script("x", "return 1")
    assert script.sha == hashlib.sha1(b"return 1").hexdigest()


def test_load_script_reads_package_resources_once() -> None:
    first = load_script("redkit.ratelimit", "add")
    assert "INCRBY" in first.source
    assert load_script("redkit.ratelimit", "add") is first
