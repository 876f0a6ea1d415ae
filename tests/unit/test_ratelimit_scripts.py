"""The rate-limit scripts as files: what a flow sends is what ``python -m ...scripts`` prints."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import typing
from importlib import resources
from pathlib import Path

import pytest

import redkit
from redkit.core.clock import ServerClock, VirtualClock
from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import ScriptCall
from redkit.core.scripts import SERVER_TIME, clock_ms, load_script
from redkit.ratelimit import limiters
from redkit.ratelimit.analytics import Analytics
from redkit.ratelimit.flows import RatelimitFlows
from redkit.ratelimit.limiters import Limiter
from redkit.ratelimit.multi import MultiLimit
from redkit.ratelimit.scripts import (
    ALGORITHMS,
    ARGV_BUILDERS,
    ratelimit_script,
    script_head,
    script_named,
)

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


# -- ARGV: what the Python side builds is what the Lua side reads -------------------------------

#: ``local <name> = ARGV[<n>]`` (or ``tonumber(ARGV[<n>])``): a script reading one argument.
_READ = re.compile(r"^local (\w+) = (?:tonumber\()?ARGV\[(\d+)\]\)?$", re.MULTILINE)


def _markers(builder: typing.Callable[..., tuple[object, ...]]) -> dict[str, object]:
    """A distinct value for each parameter of ``builder`` (sequences get two, or one call)."""
    hints = typing.get_type_hints(builder)
    values: dict[str, object] = {}
    for position, name in enumerate(inspect.signature(builder).parameters, start=1):
        marker = 1000 * position
        hint = str(hints[name])
        if "ScriptCall" in hint:
            sub = ScriptCall(ratelimit_script("fixed_window"), ("k",), (marker, marker + 1))
            values[name] = (sub,)
        elif "Sequence" in hint:
            values[name] = (marker, marker + 1)
        else:
            values[name] = marker
    return values


def test_every_script_file_has_an_argv_builder() -> None:
    files = resources.files("redkit.ratelimit") / "lua"
    names = {path.name.removesuffix(".lua") for path in files.iterdir()}
    assert set(ARGV_BUILDERS) == names


@pytest.mark.parametrize("name", sorted(ARGV_BUILDERS))
def test_each_argument_lands_where_its_script_reads_it(name: str) -> None:
    builder = ARGV_BUILDERS[name]
    values = _markers(builder)
    built = builder(**values)
    reads = [
        (local, int(n)) for local, n in _READ.findall(load_script("redkit.ratelimit", name).source)
    ]
    for local, n in reads:
        counted = local.removesuffix("_count")
        if counted != local and isinstance(values.get(counted), tuple):
            # ``<xs>_count`` reads how many items the sequence ``xs`` has.
            assert built[n - 1] == len(values[counted]), (local, n)  # type: ignore[arg-type]
        else:
            assert local in values, f"{name}.lua reads {local}, {builder.__name__} has no such"
            assert built[n - 1] == values[local], f"{name}.lua reads {local} from ARGV[{n}]"
    read = {local.removesuffix("_count") for local, _ in reads}
    scalars = {key for key, value in values.items() if not isinstance(value, tuple)}
    assert scalars - {"now", "clock"} <= read, "an argument that the script never reads by name"
    # The clock comes first, where the head reads it: builders take ms and send µs.
    if "now" in values:
        assert built[0] == 1000 * values["now"]  # type: ignore[operator]
    elif "clock" in values:
        assert built[0] == values["clock"]  # composed around a call that has it already
    else:
        assert name in ("add", "multiregion", "multiregion_merge")  # the scripts with no clock
        assert "NOW" not in load_script("redkit.ratelimit", name).source


def test_the_clock_head_reads_the_first_argument() -> None:
    assert _READ.findall(script_head()) == [("NOW_US", "1")]
    assert limiters.SERVER_TIME == SERVER_TIME == clock_ms(SERVER_TIME)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_every_algorithm_reads_its_rate_second_and_its_limit_third(name: str) -> None:
    # The composed scripts rely on it: multi.lua sets ARGV[2], guarded.lua replaces ARGV[3].
    parameters = list(inspect.signature(ARGV_BUILDERS[name]).parameters)
    assert parameters[:2] == ["now", "rate"]
    assert parameters[2] in ("limit", "max_tokens", "burst")
