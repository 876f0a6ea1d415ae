"""The rate-limit scripts as files: what a flow sends is what ``python -m ...scripts`` prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import redkit
from redkit.core.clock import ServerClock, VirtualClock
from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import ScriptCall
from redkit.ratelimit.analytics import Analytics
from redkit.ratelimit.flows import RatelimitFlows
from redkit.ratelimit.limiters import Limiter
from redkit.ratelimit.multi import MultiLimit
from redkit.ratelimit.scripts import script_named

SRC = Path(redkit.__file__).resolve().parent.parent


def _printed(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "redkit.ratelimit.scripts", *args],
        capture_output=True,
        env=env,
        check=False,
        timeout=60,
    )


def _first_call(limiter: Limiter, **options: object) -> ScriptCall:
    flows = RatelimitFlows(
        limiter,
        prefix="p",
        cluster=False,
        clock=options.pop("clock", ServerClock()),  # type: ignore[arg-type]
        ephemeral_cache=None,
        on_timeout="deny",
        **options,  # type: ignore[arg-type]
    )
    steps = flows.limit("id", ip="1.2.3.4")
    call = next(steps)
    steps.close()
    assert isinstance(call, ScriptCall)
    return call


CONFIGURATIONS = {
    "plain": (redkit.SlidingWindow(5, "10 s"), {}),
    "guarded": (
        redkit.TokenBucket(1, "1 s", 5),
        {"dynamic_limits": True, "protection": True, "analytics": Analytics("p")},
    ),
    "guarded, caller's clock": (
        redkit.GCRA(10, "1 s", 3),
        {"dynamic_limits": True, "clock": VirtualClock()},
    ),
    "several limits": (
        MultiLimit(
            (
                redkit.SlidingLog(3, "1 s"),
                redkit.FixedWindow(10, "1 m"),
                redkit.SlidingLog(30, "1 h"),
            )
        ),
        {},
    ),
}


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_the_printed_script_is_the_one_the_flow_sends(configuration: str) -> None:
    limiter, options = CONFIGURATIONS[configuration]
    call = _first_call(limiter, **dict(options))
    printed = _printed(call.script.name)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout == call.script.source.encode("utf-8")
    assert script_named(call.script.name) is call.script


def test_the_composed_names_say_what_they_hold() -> None:
    guarded = _first_call(redkit.FixedWindow(5, "1 s"), dynamic_limits=True)
    assert guarded.script.name == "guarded:fixed_window"
    several = _first_call(MultiLimit((redkit.SlidingWindow(1, "1 s"), redkit.GCRA(1, "1 s", 1))))
    assert several.script.name == "multi:sliding_window+gcra"


def test_without_a_name_the_names_are_listed() -> None:
    printed = _printed()
    assert printed.returncode == 0
    names = printed.stdout.decode().split()
    assert "fixed_window" in names
    assert "guarded:sliding_log" in names


@pytest.mark.parametrize("name", ["nope", "guarded:", "guarded:reset", "multi:gcra+nope"])
def test_an_unknown_name_is_a_clear_error(name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="give one of"):
        script_named(name)
    printed = _printed(name)
    assert printed.returncode == 2
    assert b"give one of" in printed.stderr
    assert not printed.stdout
