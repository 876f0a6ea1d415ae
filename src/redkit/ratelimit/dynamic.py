"""Guards around one algorithm's script: the deny list and dynamic limits, in the same call.

**Deny list.** Denied identifiers, IPs, user agents and countries live where
``@upstash/ratelimit`` keeps them, the set ``<prefix>:denyList:all``. The script checks the
request's values against it first and, when one is denied, answers without running the
algorithm: a denied request consumes nothing.

**Dynamic limits.** The global override lives in ``<prefix>:dynamic:global`` (a number), as in
``@upstash/ratelimit``; an identifier may have its own, ``<prefix>:<identifier>:dynamic`` (a
customer's plan), which wins. Either replaces the configured limit (a window's requests, a
bucket's or GCRA's burst, a log's tokens) before the algorithm runs, so a change applies to the
very next decision.

On Redis Cluster the global keys (the deny list, the global override) live in slots of their
own, which a script deciding for an identifier may not touch: there each process reads them
itself, at most once a second for the override and every few seconds for the deny list, and
the decision uses what it read. The identifier's own override shares its hash tag and is
always read in the script.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from redkit.core.ops import Arg, ScriptCall
from redkit.core.scripts import Script
from redkit.ratelimit.limiters import as_function, script_head

__all__ = ["DENIED", "deny_key", "global_key", "guarded_call", "identifier_key"]

#: The first field of a script's reply when a checked value is on the deny list.
DENIED = -1

_MAIN = """
-- ARGV[2] "1" when this script counts the decision in the analytics, then the retention in
-- ms, the hourly sets' key start and the identifier as JSON text; then how
-- many values to check against the deny list (0: none), and those values; then "" (no
-- dynamic limits), "key" (the global override is in KEYS) or "value" (passed next: a number
-- or ""), and that value; then the algorithm's arguments, whose third is the limit an
-- override replaces. KEYS: [the deny list] [the identifier's override] [the global
-- override], as ARGV says, then the algorithm's keys.
local k, a = 1, 3
local counted = ARGV[2] == '1'
local retention, events, identifier
if counted then
  retention, events, identifier = tonumber(ARGV[3]), ARGV[4], ARGV[5]
  a = 6
end
-- An event exactly as Upstash's SDK writes it: JSON.stringify({identifier, success}), where a
-- denied request counts under the denied value (given as JSON text too).
local function count(success, who)
  if counted then
    local hour = math.floor(NOW / 3600000) * 3600000
    local member = '{"identifier":' .. (who or identifier) .. ',"success":' .. success .. '}'
    if tonumber(redis.call('ZINCRBY', events .. hour, 1, member)) == 1 then
      -- A new event this hour (so maybe a new set): keep it for the retention, counted on
      -- the decision's clock, which may not be the server's.
      redis.call('PEXPIRE', events .. hour, hour + 3600000 + retention - NOW)
    end
  end
end

local checks = tonumber(ARGV[a])
a = a + 1
if checks > 0 then
  local values = {}
  for i = 1, checks do
    values[i] = ARGV[a]
    a = a + 1
  end
  local found = redis.call('SMISMEMBER', KEYS[k], unpack(values))
  k = k + 1
  for i = 1, checks do
    if found[i] == 1 then
      -- cjson writes "/" as "\\/"; JSON.stringify does not.
      count('"denied"', (string.gsub(cjson.encode(values[i]), '\\/', '/')))
      return {-1, i, NOW}
    end
  end
end
local mode, passed = ARGV[a], ARGV[a + 1]
a = a + 2
local override = nil
if mode ~= '' then
  override = redis.call('GET', KEYS[k])
  k = k + 1
  if mode == 'key' then
    if not override then
      override = redis.call('GET', KEYS[k])
    end
    k = k + 1
  elseif not override and passed ~= '' then
    override = passed
  end
end
local keys, args = {}, {}
for i = k, #KEYS do
  keys[#keys + 1] = KEYS[i]
end
for i = a, #ARGV do
  args[#args + 1] = ARGV[i]
end
if override then
  args[3] = override
end
local reply = algorithm(keys, args)
count(reply[1] == 1 and 'true' or 'false')
return reply
"""


@functools.cache
def _script(name: str) -> Script:
    return Script(
        f"guarded:{name}", "\n".join([script_head(), as_function(name, "algorithm"), _MAIN])
    )


def deny_key(prefix: str) -> str:
    """``<prefix>:denyList:all``, as ``@upstash/ratelimit`` names it."""
    return f"{prefix}:denyList:all"


def global_key(prefix: str) -> str:
    """``<prefix>:dynamic:global``, as ``@upstash/ratelimit`` names it."""
    return f"{prefix}:dynamic:global"


def identifier_key(base: str) -> str:
    """The identifier's own limit override, beside its other keys."""
    return f"{base}:dynamic"


def guarded_call(
    call: ScriptCall,
    *,
    prefix: str,
    base: str,
    deny_values: Sequence[str] = (),
    dynamic: bool = False,
    global_in_script: bool = True,
    global_override: int | None = None,
    analytics: tuple[int, str, str] | None = None,
) -> ScriptCall:
    """``call`` (one algorithm's decision) behind the deny list and the limit overrides.

    ``deny_values`` are checked in the script (pass none to skip the check). With
    ``global_in_script`` the script reads the global override; otherwise ``global_override``
    (what this process last read) is passed along. ``analytics`` (the retention in ms, the
    hourly sets' key start, and the identifier as JSON text) makes the script count the
    decision.
    """
    keys: list[str] = []
    args: list[Arg] = [call.args[0]]
    if analytics is None:
        args.append("")
    else:
        args.extend(("1", *analytics))  # retention, key start, identifier as JSON
    args.append(len(deny_values))
    if deny_values:
        keys.append(deny_key(prefix))
        args.extend(deny_values)
    if not dynamic:
        args.extend(("", ""))
    else:
        keys.append(identifier_key(base))
        if global_in_script:
            keys.append(global_key(prefix))
            args.extend(("key", ""))
        else:
            args.extend(("value", "" if global_override is None else global_override))
    return ScriptCall(_script(call.script.name), (*keys, *call.keys), (*args, *call.args))
