"""Several limits in one atomic call: all of them admit a request, or none is charged.

``Ratelimit(redis, [SlidingWindow(10, "1 s"), FixedWindow(10_000, "1 d")])`` checks the
limits in order inside one script. When one refuses, the limits before it, which had already
counted the request, are refunded in the same script, so from outside nothing happened: no
partial consumption, ever (Flask-Limiter, for one, keeps the first limit's charge). The script
is made of the algorithms' own scripts, each wrapped as a function, so every algorithm keeps
exactly its single-limit behaviour.

Each limit keeps its state under ``<prefix>:<identifier>:limit<i>`` (``i`` from 0), inside the
identifier's hash tag on a cluster.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from redkit.core.errors import InvalidArgumentError
from redkit.core.ops import Arg, ScriptCall
from redkit.core.scripts import Script
from redkit.ratelimit.limiters import CachedFixedWindow, Limiter, as_function, script_head

__all__ = ["MultiLimit"]

_MAIN = """
-- Several limits, all or none. ARGV[2] the rate; ARGV[3] how many limits; then, per limit,
-- its number of keys and of arguments, and its arguments (its keys are in KEYS, in order).
local rate = tonumber(ARGV[2])
local calls, k, a = {}, 1, 4
for i = 1, tonumber(ARGV[3]) do
  local key_count, arg_count = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  local keys, args = {}, {}
  for j = 1, key_count do
    keys[j] = KEYS[k]
    k = k + 1
  end
  for j = 1, arg_count do
    args[j] = ARGV[a]
    a = a + 1
  end
  calls[i] = {ALGORITHMS[i], keys, args}
end

local function run(i, r)
  local call = calls[i]
  call[3][2] = r
  return call[1](call[2], call[3])
end

local replies = {}
for i = 1, #calls do
  local reply = run(i, rate)
  if reply[1] == 0 then
    -- Refused: give back what the limits before this one have just counted.
    for j = i - 1, 1, -1 do
      run(j, -rate)
    end
    if reply[7] == nil then
      reply[7] = reply[5] >= 0 and reply[5] * 1000 or -1
    end
    reply[8] = i
    return reply
  end
  replies[i] = reply
end
-- Admitted by all: report the limit with the least left.
local tightest = 1
for i = 2, #replies do
  if replies[i][3] < replies[tightest][3] then
    tightest = i
  end
end
local reply = replies[tightest]
reply[7] = reply[7] or -1
reply[8] = tightest
return reply
"""


@functools.cache
def _composed(names: tuple[str, ...]) -> Script:
    """One script running the named algorithm scripts as functions, all or none."""
    parts = [script_head(), *(as_function(name, name) for name in dict.fromkeys(names))]
    parts.append(f"local ALGORITHMS = {{{', '.join(names)}}}")
    parts.append(_MAIN)
    return Script("multi:" + "+".join(names), "\n".join(parts))


@dataclass(frozen=True)
class MultiLimit(Limiter):
    """Several limits on one identifier, checked and charged together (all or none).

    ``limit`` is the smallest of the limits. Results report the limit that refused, or, when
    all admitted, the one with the least left (``RatelimitResult.refused_by`` is the index of
    the refusing limit).

    Args:
        limiters: the limits, checked in this order (put the likeliest to refuse first).

    """

    limiters: tuple[Limiter, ...]
    limit: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        limiters = tuple(self.limiters)
        if not limiters:
            raise InvalidArgumentError("give at least one limiter")
        for limiter in limiters:
            if isinstance(limiter, (CachedFixedWindow, MultiLimit)) or not isinstance(
                limiter, Limiter
            ):
                raise InvalidArgumentError(
                    "several limits take FixedWindow, SlidingWindow, TokenBucket, GCRA and "
                    f"SlidingLog, got {type(limiter).__name__}"
                )
        object.__setattr__(self, "limiters", limiters)
        object.__setattr__(self, "limit", min(limiter.limit for limiter in limiters))

    @property
    def policy_window_ms(self) -> float:
        """0: each limit has its own window (:func:`redkit.web.policies_for` tells them all)."""
        return 0

    @property
    def window_ms(self) -> int:
        """Deprecated, always 0: see :attr:`policy_window_ms` and :attr:`counter_window_ms`."""
        return self._deprecated_window_ms()

    @staticmethod
    def of(limiters: Sequence[Limiter]) -> MultiLimit:
        """A :class:`MultiLimit` of ``limiters`` (a list or tuple)."""
        return MultiLimit(tuple(limiters))

    def sub_base(self, base: str, index: int) -> str:
        """The base key of limit ``index`` (same hash tag as ``base``)."""
        return f"{base}:limit{index}"

    def call(self, base: str, now: int, rate: int) -> ScriptCall:
        """One script call deciding ``rate`` on every limit (see :class:`MultiLimit`)."""
        keys: list[str] = []
        args: list[Arg] = [now, rate, len(self.limiters)]
        names: list[str] = []
        for index, limiter in enumerate(self.limiters):
            sub = limiter.call(self.sub_base(base, index), now, rate)
            names.append(sub.script.name)
            keys.extend(sub.keys)
            args.extend((len(sub.keys), len(sub.args), *sub.args))
        return ScriptCall(_composed(tuple(names)), tuple(keys), tuple(args))

    def state(self, base: str) -> list[tuple[str, int]]:
        """Every limit's state keys (see :meth:`Limiter.state`)."""
        return [
            part
            for index, limiter in enumerate(self.limiters)
            for part in limiter.state(self.sub_base(base, index))
        ]
