"""Rate-limit configuration, results and the ephemeral cache (no server)."""

from __future__ import annotations

import ast
import asyncio
import copy
import pickle
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import redkit
from redkit import (
    GCRA,
    AsyncRatelimit,
    CachedFixedWindow,
    EphemeralCache,
    FixedWindow,
    Ratelimit,
    RatelimitResult,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from redkit.core.errors import InvalidArgumentError, InvalidKeyError
from redkit.ratelimit import Limiter, MultiLimit, Pending
from redkit.ratelimit.limiters import MAX_TOKENS
from redkit.ratelimit.result import COMPLETED

URL = "redis://127.0.0.1:1"  # never contacted: configuration errors come first


def test_limiters_take_upstash_durations() -> None:
    assert FixedWindow(10, "10 s").window_ms == 10_000
    assert SlidingWindow(10, timedelta(minutes=1)).window_ms == 60_000
    bucket = TokenBucket(5, 0.5, 20)
    assert (bucket.refill_rate, bucket.interval_ms, bucket.max_tokens, bucket.limit) == (
        5, 500, 20, 20,
    )  # fmt: skip
    assert CachedFixedWindow(3, "1 m").limit == 3
    assert FixedWindow(10, "10 s") == FixedWindow(10, "10 s")  # values, comparable


@pytest.mark.parametrize(
    ("limiter", "policy_ms", "counter_ms", "state"),
    [
        (FixedWindow(10, "10 s"), 10_000, 10_000, [("b", 10_000)]),
        (CachedFixedWindow(10, "1 m"), 60_000, 60_000, [("b", 60_000)]),
        (SlidingWindow(5, "500 ms"), 500, 500, [("b", 500)]),
        # An emptied bucket of 10 takes ceil(10 / 3) = 4 refills of 1 s to fill up.
        (TokenBucket(3, "1 s", 10), 4_000, 0, [("b", 0)]),
        # A burst of 5 comes back in 5 emission intervals of 60 s / 10 = 6 s.
        (GCRA(10, "1 m", 5), 30_000, 0, [("b:gcra", 0)]),
        (GCRA(3, "10 ms", 2), 2 * 3334 / 1000, 0, [("b:gcra", 0)]),
        (SlidingLog(3, "1 h"), 3_600_000, 0, [("b:log", 0)]),
        (MultiLimit.of([FixedWindow(1, "1 s"), GCRA(1, "1 s", 1)]), 0, 0,
         [("b:limit0", 1000), ("b:limit1:gcra", 0)]),
    ],
)  # fmt: skip
def test_each_algorithm_says_its_policy_window_and_the_counters_reset_deletes(
    limiter: Limiter, policy_ms: float, counter_ms: int, state: list[tuple[str, int]]
) -> None:
    assert limiter.policy_window_ms == policy_ms
    assert limiter.counter_window_ms == counter_ms
    assert limiter.state("b") == state


@pytest.mark.parametrize(
    "limiter",
    [
        TokenBucket(1, "1 s", 2),
        GCRA(1, "1 s", 1),
        SlidingLog(1, "1 s"),
        MultiLimit.of([FixedWindow(1, "1 s")]),
    ],
)
def test_window_ms_without_window_counters_is_deprecated_and_still_0(limiter: Limiter) -> None:
    name = type(limiter).__name__
    with pytest.warns(DeprecationWarning, match=rf"{name}\.window_ms is deprecated") as caught:
        assert getattr(limiter, "window_ms") == 0  # noqa: B009  # not on every Limiter
    assert caught[0].filename == __file__  # the warning points at the reader


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: FixedWindow(0, "1 s"), ValueError, "tokens must be between 1"),
        (lambda: FixedWindow(-3, "1 s"), ValueError, "tokens must be between 1"),
        (lambda: FixedWindow(MAX_TOKENS + 1, "1 s"), ValueError, "tokens must be between 1"),
        (lambda: FixedWindow(1.5, "1 s"), TypeError, "tokens must be an int"),
        (lambda: FixedWindow("10", "1 s"), TypeError, "tokens must be an int"),
        (lambda: FixedWindow(True, "1 s"), TypeError, "tokens must be an int"),
        (lambda: SlidingWindow(10, "0 s"), ValueError, "window must be at least 1 ms"),
        (lambda: SlidingWindow(10, "10 years"), ValueError, "window must look like"),
        (lambda: SlidingWindow(10, 10**10), ValueError, "window must be at most 10 years"),
        (lambda: TokenBucket(0, "1 s", 10), ValueError, "refill_rate must be between 1"),
        (lambda: TokenBucket(1, "1 s", 0), ValueError, "max_tokens must be between 1"),
        (lambda: TokenBucket(1, -1, 10), ValueError, "interval must be at least 1 ms"),
    ],
)
def test_bad_limiter_arguments_say_what_is_wrong(
    make: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        make()
    # One typed error, catchable as ValueError and TypeError alike.
    assert isinstance(raised.value, InvalidArgumentError)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, TypeError)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"prefix": ""}, InvalidKeyError, "must not be empty"),
        ({"prefix": "rl:*"}, InvalidKeyError, "must not contain"),
        ({"prefix": "rl{x}"}, InvalidKeyError, "must not contain"),
        ({"on_timeout": "maybe"}, ValueError, "on_timeout must be"),
        ({"timeout": -1}, ValueError, "timeout must be"),
        ({"timeout": "5"}, ValueError, "timeout must be"),
        ({"ephemeral_cache": "yes"}, TypeError, "ephemeral_cache must be"),
        ({"clock": "sundial"}, ValueError, "clock must be"),
    ],
)
def test_bad_facade_options_say_what_is_wrong(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    for facade in (Ratelimit, AsyncRatelimit):
        with pytest.raises(error, match=message):
            facade(URL, FixedWindow(1, "1 s"), **options)


def test_a_limiter_must_be_a_limiter() -> None:
    with pytest.raises(TypeError, match="limiter must be FixedWindow"):
        Ratelimit(URL, "10 per second")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a redkit Connection"):
        Ratelimit(42, FixedWindow(1, "1 s"))


def test_result_is_truthy_when_admitted_and_frozen() -> None:
    admitted = RatelimitResult(True, 10, 9, 1_700_000_000_000)
    refused = RatelimitResult(False, 10, 0, 1_700_000_000_000, 1.5)
    assert admitted
    assert not refused
    assert (admitted.retry_after, admitted.reason) == (0.0, None)
    with pytest.raises(AttributeError):
        admitted.success = False  # type: ignore[misc]


def test_a_results_pending_is_completed_by_default_and_neither_compared_nor_shown() -> None:
    result = RatelimitResult(True, 10, 9, 1_700_000_000_000)
    assert result.pending is COMPLETED
    assert result.pending.done()
    assert result.pending.wait(0)
    asyncio.run(_awaited(result.pending))
    running, _ = Pending.started()
    assert RatelimitResult(True, 10, 9, 1_700_000_000_000, pending=running) == result
    assert "pending" not in repr(result)
    assert pickle.loads(pickle.dumps(result)) == result  # still a plain value when done
    assert pickle.loads(pickle.dumps(result)).pending is COMPLETED
    assert copy.deepcopy(result).pending is COMPLETED


async def _awaited(pending: Pending) -> None:
    await pending


def test_a_pending_handle_completes_when_its_work_is_done_from_any_thread() -> None:
    pending, complete = Pending.started()
    assert not pending.done()
    assert not pending.wait(0.01)
    assert repr(pending) == "<Pending running>"
    with pytest.raises(TypeError, match="running"):
        pickle.dumps(pending)
    assert copy.copy(pending) is pending  # the same work, not another
    threading.Timer(0.05, complete).start()
    assert pending.wait(10)
    assert pending.done()
    assert repr(pending) == "<Pending done>"


def test_a_pending_handle_is_awaited_and_a_cancelled_wait_leaves_it_running() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        pending, complete = Pending.started(loop)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pending, 0.01)  # cancels its own wait, not the work
        with pytest.raises(RuntimeError, match="await it"):
            pending.wait(0)  # the loop doing the work would never finish it
        assert not pending.done()
        loop.call_later(0.01, complete)
        await asyncio.shield(pending)
        assert pending.done()
        assert pending.wait(0)
        await asyncio.gather(pending, pending)  # done: awaited again at once

    asyncio.run(scenario())


def test_waiting_on_a_handle_whose_loop_is_stopped_is_refused_not_hung() -> None:
    loop = asyncio.new_event_loop()
    try:
        pending, complete = Pending.started(loop)
        with pytest.raises(RuntimeError, match="not running"):
            pending.wait()  # nothing would run the work until the loop runs again
        loop.call_soon(complete)
        loop.run_until_complete(pending)  # the way out the error names
        assert pending.wait()
    finally:
        loop.close()


def test_ephemeral_cache_blocks_until_the_deadline_and_evicts_the_oldest() -> None:
    cache = EphemeralCache(max_size=2)
    cache.block("a", until=100.0, reset=5)
    cache.block("b", until=100.0, reset=6)
    assert cache.blocked("a", 99.9) == (100.0, 5, 1)
    assert cache.blocked("a", 100.0) is None  # lazily dropped once over
    assert len(cache) == 1
    cache.block("c", until=200.0, reset=7)
    cache.block("d", until=200.0, reset=8)
    assert cache.blocked("b", 0) is None  # the oldest went when "d" came
    cache.pop("c")
    assert cache.blocked("c", 0) is None
    cache.clear()
    assert len(cache) == 0
    assert "0/2" in repr(cache)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_size"):
            EphemeralCache(max_size=bad)  # type: ignore[arg-type]


def test_the_public_names_are_exported() -> None:
    names = ["Ratelimit", "AsyncRatelimit", "FixedWindow", "SlidingWindow", "TokenBucket",
             "CachedFixedWindow", "EphemeralCache", "RatelimitResult", "Remaining"]  # fmt: skip
    for name in names:
        assert name in redkit.__all__
        assert getattr(redkit, name).__doc__


# -- backends whose scripts must declare every key (Upstash's key locking) ----------------


def test_where_scripts_declare_keys_the_global_keys_stay_out_of_scripts() -> None:
    from redkit.core.clock import ClientClock
    from redkit.core.ops import Command, ScriptCall
    from redkit.ratelimit.analytics import Analytics
    from redkit.ratelimit.flows import RatelimitFlows

    flows = RatelimitFlows(
        redkit.FixedWindow(5, "10 s"),
        prefix="p",
        cluster=False,
        scripts_declare_keys=True,
        clock=ClientClock(),
        ephemeral_cache=None,
        on_timeout="allow",
        dynamic_limits=True,
        protection=True,
        analytics=Analytics("p"),
    )
    steps = flows.limit("id", ip="1.2.3.4")
    deny_read = next(steps)  # the process reads the deny list itself ...
    assert deny_read == Command(("SMEMBERS", "p:denyList:all"))
    global_read = steps.send([])  # ... and the global override
    assert global_read == Command(("GET", "p:dynamic:global"))
    call = steps.send(b"7")
    assert isinstance(call, ScriptCall)
    steps.close()
    # The script gets only the identifier's own keys, in @upstash/ratelimit's layout (no tags).
    assert all(key.startswith("p:id:") or key == "p:id" for key in call.keys)
    # override_from and global_override (see scripts.guarded_args): passed by value.
    assert call.args[5:7] == ("value", 7)
    assert not any(str(arg).startswith("p:events:") for arg in call.args)  # counted locally


def test_where_scripts_declare_keys_the_client_clock_is_the_default() -> None:
    conn = redkit.RestConnection("https://x.example", token="t")
    assert not redkit.Ratelimit(conn, redkit.FixedWindow(5, "10 s"))._flows.clock.server
    # Windows name their counters after the time: the server's clock cannot name them here.
    with pytest.raises(InvalidArgumentError, match="client"):
        redkit.Ratelimit(conn, redkit.SlidingWindow(5, "10 s"), clock="server")
    assert redkit.Ratelimit(
        conn, redkit.TokenBucket(1, "1 s", 5), clock="server"
    )._flows.clock.server
    on_redis = redkit.Ratelimit(redkit.connect("redis://localhost"), redkit.FixedWindow(5, "10 s"))
    assert on_redis._flows.clock.server


# -- rate strings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/minute", (5, "1 m")),
        ("5/Minute", (5, "1 m")),
        ("100 per hour", (100, "1 h")),
        ("100per hour", (100, "1 h")),
        ("10/2 seconds", (10, "2 s")),
        ("10 / 2 secs", (10, "2 s")),
        ("1/d", (1, "1 d")),
        ("7 per 3 days", (7, "3 d")),
        ("  3/sec  ", (3, "1 s")),
        ("4/hr", (4, "1 h")),
    ],
)
def test_a_rate_string_is_a_count_and_a_window(text: str, expected: tuple[int, str]) -> None:
    from redkit.ratelimit import parse_rate

    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "5", "minute", "5/", "5/fortnight", "5/month", "5/year", "-5/minute", "5.5/minute",
     "5/0 minutes", "5 minutes", "5//minute", "5/minute/hour", "5/1.5 minutes"],
)  # fmt: skip
def test_malformed_rate_strings_are_refused_by_name(text: str) -> None:
    from redkit.ratelimit import parse_rate

    with pytest.raises(InvalidArgumentError, match="rate"):
        parse_rate(text)


def test_several_rates_and_the_limiters_they_make() -> None:
    from redkit.ratelimit import limits_from, parse_rates

    assert parse_rates("10/second; 1000/day") == [(10, "1 s"), (1000, "1 d")]
    assert parse_rates("1/s,2/m|3/h") == [(1, "1 s"), (2, "1 m"), (3, "1 h")]
    assert redkit.limits_from("10/second; 1000/day") == [
        FixedWindow(10, "1 s"),
        FixedWindow(1000, "1 d"),
    ]
    assert limits_from("5/2 minutes", SlidingWindow) == [SlidingWindow(5, "2 m")]
    with pytest.raises(InvalidArgumentError, match="tokens"):
        limits_from("0/minute")  # the limiter's own check
    with pytest.raises(InvalidArgumentError, match="rate"):
        parse_rates("10/second;")  # an empty part
    with pytest.raises(InvalidArgumentError, match="must be a str"):
        parse_rates(5)  # type: ignore[arg-type]


def test_the_old_rates_module_still_offers_the_parser() -> None:
    from redkit.ratelimit import rate_strings, rates

    assert (rates.parse_rate, rates.parse_rates) == (
        rate_strings.parse_rate,
        rate_strings.parse_rates,
    )


def _ratelimit_imports() -> dict[str, set[str]]:
    """Each module of ``redkit.ratelimit`` and the package's modules it imports, anywhere in it.

    Imports inside functions count too: a lazy import is how a circle hides.
    """
    package = Path(redkit.ratelimit.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in [*package.glob("*.py"), *package.glob("*/__init__.py")]:
        stem = path.parent.name if path.stem == "__init__" and path.parent != package else path.stem
        name = "redkit.ratelimit" + ("" if stem == "__init__" else f".{stem}")
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "redkit.ratelimit":
                # A submodule by name; any other name comes from the package, which imports
                # every module.
                for alias in node.names:
                    module = (package / alias.name).with_suffix(".py").exists() or (
                        package / alias.name / "__init__.py"
                    ).exists()
                    found.add(f"{node.module}.{alias.name}" if module else node.module)
            elif isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {dep for dep in found if dep.startswith("redkit.ratelimit")}
    return graph


def test_the_rate_limit_modules_import_one_another_without_a_circle() -> None:
    graph = _ratelimit_imports()
    assert graph["redkit.ratelimit.rate_strings"] == set()  # pure text: a leaf
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"an import circle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in graph.get(name, set()):
            visit(dep, (*path, name))
        done.add(name)

    for name in graph:
        visit(name, ())


def test_window_algorithms_parse_one_rate() -> None:
    assert FixedWindow.parse("5/minute") == FixedWindow(5, "1 m")
    assert SlidingWindow.parse("3 per 2 hours") == SlidingWindow(3, "2 h")
    assert CachedFixedWindow.parse("9/s") == CachedFixedWindow(9, "1 s")
    assert SlidingLog.parse("100/min") == SlidingLog(100, "1 m")
    with pytest.raises(InvalidArgumentError, match="rate"):
        FixedWindow.parse("5/minute; 10/hour")  # one rate: several make a list (limits_from)
