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
"""

from __future__ import annotations

import functools

from redkit.core.errors import InvalidArgumentError
from redkit.core.scripts import Script, load_script

__all__ = [
    "ALGORITHMS",
    "SCRIPTS",
    "as_function",
    "guarded_script",
    "multi_script",
    "ratelimit_script",
    "script_head",
    "script_named",
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
    """The shared head of every rate-limit script: where ``NOW`` comes from."""
    return load_script(_PACKAGE, "now").source


def as_function(name: str, function: str) -> str:
    """``lua/<name>.lua`` as a Lua function ``function(KEYS, ARGV)``, for composed scripts."""
    return f"local function {function}(KEYS, ARGV)\n{load_script(_PACKAGE, name).source}\nend"


@functools.cache
def ratelimit_script(name: str) -> Script:
    """``lua/<name>.lua`` with the shared head (the clock) in front of it."""
    return Script(name, script_head() + "\n" + load_script(_PACKAGE, name).source)


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
