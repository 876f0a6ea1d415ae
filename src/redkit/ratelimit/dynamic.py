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

The script is ``lua/guarded.lua`` around the algorithm's own (see
:mod:`redkit.ratelimit.scripts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from redkit.core.ops import ScriptCall
from redkit.ratelimit.scripts import guarded_args, guarded_script

__all__ = ["DENIED", "deny_key", "global_key", "guarded_call", "identifier_key"]

#: The first field of a script's reply when a checked value is on the deny list.
DENIED = -1


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
    if deny_values:
        keys.append(deny_key(prefix))
    override_from: Literal["", "key", "value"] = ""
    if dynamic:
        keys.append(identifier_key(base))
        override_from = "key" if global_in_script else "value"
        if global_in_script:
            keys.append(global_key(prefix))
    retention, events, identifier = (None, "", "") if analytics is None else analytics
    args = guarded_args(
        clock=call.args[0],  # the algorithm's: one clock for the whole decision
        retention=retention,
        events=events,
        identifier=identifier,
        deny_values=deny_values,
        override_from=override_from,
        global_override=None if global_in_script else global_override,
        algorithm_args=call.args,
    )
    return ScriptCall(guarded_script(call.script.name), (*keys, *call.keys), args)
