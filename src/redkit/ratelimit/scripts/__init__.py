"""Every rate-limit script: its file, how composed scripts are put together, and their names.

Each script is a file in ``redkit/ratelimit/lua/``. Most run as they are, behind the shared
clock head. Two are composed at run time from an algorithm's file:

- ``guarded:<algorithm>``: the deny list, dynamic limits and analytics around one algorithm
  (``lua/guarded.lua``, see :mod:`redkit.ratelimit.dynamic`);
- ``multi:<algorithm>+<algorithm>...``: several limits, all or none (``lua/multi.lua``, see
  :mod:`redkit.ratelimit.multi`).

An algorithm joins a composed script as a Lua function ``f(KEYS, ARGV)`` whose body is its
file, unchanged, so it decides exactly as it does alone. ``python -m redkit.ratelimit.scripts
NAME`` prints the source that is sent for ``NAME`` (the REST driver adds Upstash's
key-locking line in front of it); without ``NAME`` it lists the names.

**ARGV.** Each script's arguments are built by one function here, ``<script>_args``, whose
keyword parameters are named as the script's Lua locals that read them (a test checks that
each lands where the script reads it). The first argument of every script that reads the
time is the clock (see :mod:`redkit.core.scripts`): builders take ``now`` in epoch ms, or
:data:`~redkit.core.scripts.SERVER_TIME`, and send it in µs. Every algorithm reads ``rate``
second and its limit third: the composed scripts set those two (the rate of each limit; a
dynamic limit's override).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import Arg, ScriptCall
from redkit.core.scripts import Script, clock_head, clock_ms, clocked_script, load_script

__all__ = [
    "ALGORITHMS",
    "ARGV_BUILDERS",
    "SCRIPTS",
    "add_args",
    "as_function",
    "concurrency_acquire_args",
    "concurrency_count_args",
    "concurrency_extend_args",
    "concurrency_release_args",
    "fixed_window_args",
    "gcra_args",
    "guarded_args",
    "guarded_script",
    "multi_args",
    "multi_script",
    "multiregion_args",
    "multiregion_merge_args",
    "ratelimit_script",
    "reset_args",
    "script_head",
    "script_named",
    "sliding_log_args",
    "sliding_window_args",
    "token_bucket_args",
]

_PACKAGE = "redkit.ratelimit"

#: The algorithms' scripts: each decides one limit, alone or inside a composed script.
ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket", "gcra", "sliding_log")
#: Every script that runs as its own file behind the clock head.
SCRIPTS = (
    *ALGORITHMS,
    "reset",
    "concurrency_acquire",
    "concurrency_release",
    "concurrency_extend",
    "concurrency_count",
)


def script_head() -> str:
    """The head of every rate-limit script: the clock (see :mod:`redkit.core.scripts`)."""
    return clock_head()


def as_function(name: str, function: str) -> str:
    """``lua/<name>.lua`` as a Lua function ``function(KEYS, ARGV)``, for composed scripts."""
    return f"local function {function}(KEYS, ARGV)\n{load_script(_PACKAGE, name).source}\nend"


def ratelimit_script(name: str) -> Script:
    """``lua/<name>.lua`` with the clock head in front of it."""
    return clocked_script(_PACKAGE, name)


@functools.cache
def guarded_script(algorithm: str) -> Script:
    """``lua/guarded.lua`` around ``algorithm``: the deny list, dynamic limits, analytics."""
    parts = [script_head(), as_function(algorithm, "algorithm"), _source("guarded")]
    return Script(f"guarded:{algorithm}", "\n".join(parts))


@functools.cache
def multi_script(algorithms: tuple[str, ...]) -> Script:
    """``lua/multi.lua`` over ``algorithms``, in order: every limit admits, or none is charged.

    Each distinct algorithm becomes one function named after it; ``ALGORITHMS[i]`` is the
    function of limit ``i``.
    """
    parts = [script_head(), *(as_function(name, name) for name in dict.fromkeys(algorithms))]
    parts.append(f"local ALGORITHMS = {{{', '.join(algorithms)}}}")
    parts.append(_source("multi"))
    return Script("multi:" + "+".join(algorithms), "\n".join(parts))


def _source(name: str) -> str:
    return load_script(_PACKAGE, name).source


def _algorithm(name: str, whole: str) -> str:
    if name not in ALGORITHMS:
        raise InvalidArgumentError(
            f"{whole!r}: {name!r} is no algorithm; give one of {', '.join(ALGORITHMS)}"
        )
    return name


def script_named(name: str) -> Script:
    """The script called ``name``, as a flow sends it (``ScriptCall.script.name``).

    ``name`` is one of :data:`SCRIPTS`, ``guarded:<algorithm>`` or
    ``multi:<algorithm>+<algorithm>...``.
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"name must be a str, got {type(name).__name__}")
    kind, _, rest = name.partition(":")
    if kind == "guarded" and rest:
        return guarded_script(_algorithm(rest, name))
    if kind == "multi" and rest:
        return multi_script(tuple(_algorithm(part, name) for part in rest.split("+")))
    if name in SCRIPTS:
        return ratelimit_script(name)
    raise InvalidArgumentError(
        f"no rate-limit script is called {name!r}: give one of {', '.join(SCRIPTS)}, "
        "guarded:<algorithm> or multi:<algorithm>+<algorithm>..."
    )


# -- ARGV ------------------------------------------------------------------------------------
# ``now`` is the caller's clock in epoch ms, or -1 (SERVER_TIME) for the server's TIME: sent
# as the clock convention wants it (epoch µs, or -1).


def fixed_window_args(*, now: int, rate: int, limit: int, window: int) -> tuple[Arg, ...]:
    """``fixed_window``: the cost (negative refunds, 0 peeks), the limit, the window in ms."""
    return (clock_ms(now), rate, limit, window)


def sliding_window_args(*, now: int, rate: int, limit: int, window: int) -> tuple[Arg, ...]:
    """``sliding_window``: the cost, the limit, the window in ms."""
    return (clock_ms(now), rate, limit, window)


def token_bucket_args(
    *, now: int, rate: int, max_tokens: int, refill: int, interval: int
) -> tuple[Arg, ...]:
    """``token_bucket``: the cost, the capacity, tokens per refill, the refill interval in ms."""
    return (clock_ms(now), rate, max_tokens, refill, interval)


def gcra_args(*, now: int, rate: int, burst: int, interval: int) -> tuple[Arg, ...]:
    """``gcra``: the cost in cells, the burst, the emission interval in µs."""
    return (clock_ms(now), rate, burst, interval)


def sliding_log_args(*, now: int, rate: int, limit: int, window: int) -> tuple[Arg, ...]:
    """``sliding_log``: the cost, the limit, the window in ms."""
    return (clock_ms(now), rate, limit, window)


def reset_args(*, now: int, windows: Sequence[int]) -> tuple[Arg, ...]:
    """``reset``: for each key, 0 (just the key) or its window in ms (its counters too)."""
    return (clock_ms(now), *windows)


def add_args(*, delta: int, window: int) -> tuple[Arg, ...]:
    """``add`` (no clock: it adds what was decided already): the count, the window in ms."""
    return (delta, window)


def multiregion_args(
    *, request_id: str, rate: int, limit: int, ttl: int, weight: str
) -> tuple[Arg, ...]:
    """``multiregion`` (no clock: the window is in the keys): id, cost, limit, TTL, weight.

    The TTL is the hash's in ms; the weight is the previous window's, a float as text.
    """
    return (request_id, rate, limit, ttl, weight)


def multiregion_merge_args(*, ttl: int, fields: Sequence[str | int]) -> tuple[Arg, ...]:
    """``multiregion_merge``: the TTL for a new hash, then request id, cost, id, cost, ..."""
    return (ttl, *fields)


def concurrency_acquire_args(*, now: int, token: str, limit: int, lease: int) -> tuple[Arg, ...]:
    """``concurrency_acquire``: the new lease's token, the most in flight, the lease in ms."""
    return (clock_ms(now), token, limit, lease)


def concurrency_release_args(*, now: int, token: str) -> tuple[Arg, ...]:
    """``concurrency_release``: the lease's token."""
    return (clock_ms(now), token)


def concurrency_extend_args(*, now: int, token: str, lease: int) -> tuple[Arg, ...]:
    """``concurrency_extend``: the lease's token and its new length in ms."""
    return (clock_ms(now), token, lease)


def concurrency_count_args(*, now: int) -> tuple[Arg, ...]:
    """``concurrency_count``: the clock alone."""
    return (clock_ms(now),)


def guarded_args(
    *,
    clock: Arg,
    retention: int | None,
    events: str,
    identifier: str,
    deny_values: Sequence[str],
    override_from: Literal["", "key", "value"],
    global_override: int | None,
    algorithm_args: Sequence[Arg],
) -> tuple[Arg, ...]:
    """``guarded:<algorithm>`` (see ``lua/guarded.lua``).

    Args:
        clock: the algorithm's own ``ARGV[1]``: one clock for the whole decision.
        retention: ms an hour's analytics events stay after the hour, or ``None`` when this
            script counts no analytics (then ``events`` and ``identifier`` are ignored).
        events: the hourly sets' key start, ``<prefix>:events:``.
        identifier: the identifier as JSON text, as ``JSON.stringify`` writes it.
        deny_values: the values to check against the deny list (none: no check).
        override_from: ``""`` without dynamic limits, ``"key"`` when the script reads the
            global override from its key, ``"value"`` when it is passed as ``global_override``.
        global_override: the global override this process read (``None``: none).
        algorithm_args: the algorithm's own ARGV.

    """
    return (
        clock,
        "" if retention is None else retention,
        events,
        identifier,
        len(deny_values),
        override_from,
        "" if global_override is None else global_override,
        *deny_values,
        *algorithm_args,
    )


def multi_args(*, now: int, rate: int, limits: Sequence[ScriptCall]) -> tuple[Arg, ...]:
    """``multi:<algorithm>+...`` (see ``lua/multi.lua``): the cost and each limit's own call."""
    args: list[Arg] = [clock_ms(now), rate, len(limits)]
    for limit in limits:
        args.extend((len(limit.keys), len(limit.args), *limit.args))
    return tuple(args)


#: The builder of each script's ARGV, by the name of its file.
ARGV_BUILDERS: dict[str, Callable[..., tuple[Arg, ...]]] = {
    "fixed_window": fixed_window_args,
    "sliding_window": sliding_window_args,
    "token_bucket": token_bucket_args,
    "gcra": gcra_args,
    "sliding_log": sliding_log_args,
    "reset": reset_args,
    "add": add_args,
    "multiregion": multiregion_args,
    "multiregion_merge": multiregion_merge_args,
    "concurrency_acquire": concurrency_acquire_args,
    "concurrency_release": concurrency_release_args,
    "concurrency_extend": concurrency_extend_args,
    "concurrency_count": concurrency_count_args,
    "guarded": guarded_args,
    "multi": multi_args,
}
