"""Dynamic limits: change a limit at run time, for everyone or for one identifier.

The global override lives where ``@upstash/ratelimit`` keeps it, ``<prefix>:dynamic:global``
(a number), so either library can set it for both. Beyond it, an identifier may have its own,
``<prefix>:<identifier>:dynamic`` (a customer's custom plan), which wins over the global one.
Either replaces the configured limit (a window's requests, a bucket's or GCRA's burst, a log's
tokens) in the same script that decides, so a change applies to the very next decision.

On Redis Cluster the global key lives in a slot of its own, which a script deciding for an
identifier may not touch: there each process reads it at most once a second and passes it to
the script, so a change is seen within a second. The identifier's own override shares the
identifier's hash tag and is always read in the script.
"""

from __future__ import annotations

import functools

from redkit.core.ops import Arg, ScriptCall
from redkit.core.scripts import Script, load_script

__all__ = ["GLOBAL_IN_SCRIPT", "GLOBAL_PASSED", "dynamic_call", "global_key", "identifier_key"]

#: How the global override reaches the script: read there (standalone), or passed in ARGV.
GLOBAL_IN_SCRIPT, GLOBAL_PASSED = "key", "value"

_MAIN = """
-- KEYS[1] the identifier's override; KEYS[2] the global override when ARGV[2] is "key"; then
-- the algorithm's keys. ARGV[3] the global override when ARGV[2] is "value" ("" for none);
-- ARGV[4..] the algorithm's arguments, whose third is the limit an override replaces.
local override = redis.call('GET', KEYS[1])
local first = 2
if ARGV[2] == 'key' then
  first = 3
  if not override then
    override = redis.call('GET', KEYS[2])
  end
elseif not override and ARGV[3] ~= '' then
  override = ARGV[3]
end
local keys, args = {}, {}
for i = first, #KEYS do
  keys[#keys + 1] = KEYS[i]
end
for i = 4, #ARGV do
  args[#args + 1] = ARGV[i]
end
if override then
  args[3] = override
end
return algorithm(keys, args)
"""


@functools.cache
def _script(name: str) -> Script:
    head = load_script(__package__, "now").source
    body = load_script(__package__, name).source
    return Script(
        f"dynamic:{name}",
        "\n".join([head, f"local function algorithm(KEYS, ARGV)\n{body}\nend", _MAIN]),
    )


def global_key(prefix: str) -> str:
    """``<prefix>:dynamic:global``, as ``@upstash/ratelimit`` names it."""
    return f"{prefix}:dynamic:global"


def identifier_key(base: str) -> str:
    """The identifier's own override, beside its other keys."""
    return f"{base}:dynamic"


def dynamic_call(
    call: ScriptCall, base: str, prefix: str, global_override: int | None, *, in_script: bool
) -> ScriptCall:
    """``call`` (one algorithm's decision) made to honour the overrides.

    With ``in_script`` the script reads the global override itself; otherwise
    ``global_override`` (what this process last read) is passed along.
    """
    keys: tuple[str, ...] = (identifier_key(base),)
    args: tuple[Arg, ...]
    if in_script:
        keys += (global_key(prefix),)
        args = (call.args[0], GLOBAL_IN_SCRIPT, "")
    else:
        passed = "" if global_override is None else global_override
        args = (call.args[0], GLOBAL_PASSED, passed)
    return ScriptCall(_script(call.script.name), keys + call.keys, args + call.args)
