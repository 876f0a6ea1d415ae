"""Operations as plain data.

A flow (see :mod:`redkit.core.flow`) never performs I/O itself: it yields one of the operations
below and receives the result. The same operation therefore runs over RESP (redis-py) and over
Upstash's JSON REST protocol, and a unit test can answer it with a scripted reply.

Replies are what the driver's client returns. Bulk strings arrive as ``bytes`` (or ``str`` on
a text protocol), integers as ``int``; a few commands come back already shaped by redis-py
(``SET`` as ``True``, ``TIME`` as a tuple). :mod:`redkit.core.replies` reads every shape, so a
flow never depends on which driver answered.

The classes are ``NamedTuple`` on purpose: they are immutable, cheap to build on the hot path,
and compare by value in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

from redkit.core.scripts import Script

__all__ = [
    "Arg",
    "Call",
    "Command",
    "Masters",
    "OnNode",
    "Op",
    "Pipeline",
    "RedisOp",
    "ScriptCall",
    "Sleep",
    "command",
]

#: One argument of a Redis command, as RESP and the REST protocol both carry it.
Arg: TypeAlias = str | bytes | int | float


class Command(NamedTuple):
    """One Redis command: ``args[0]`` is its name, the rest its arguments."""

    args: tuple[Arg, ...]


def command(*args: Arg) -> Command:
    """Build a :class:`Command`: ``command("GET", key)``."""
    return Command(args)


class ScriptCall(NamedTuple):
    """Run a Lua script: ``EVALSHA`` first, ``EVAL`` when the server does not know it yet.

    Every key the script touches is in ``keys`` (never built inside Lua), so a cluster routes
    the call to the node that owns them.
    """

    script: Script
    keys: tuple[str, ...]
    args: tuple[Arg, ...]


class Pipeline(NamedTuple):
    """Several commands or script calls sent in one round trip.

    The reply is a list with one entry per operation. An operation that failed on the server
    yields a :class:`~redkit.core.errors.CommandError` *instance* at its place instead of raising,
    so one bad command does not hide the others' results. With ``transaction=True`` the
    operations run in ``MULTI``/``EXEC`` (on a cluster, their keys must share one slot).
    """

    ops: tuple[Command | ScriptCall, ...]
    transaction: bool = False


class Masters(NamedTuple):
    """The names of the servers that hold the keyspace: every master of a cluster.

    A standalone server answers ``[None]``: one server, which needs no name. Walking the whole
    keyspace (``SCAN``) means walking each of these with :class:`OnNode`.
    """


class OnNode(NamedTuple):
    """Run a command on one server named by :class:`Masters` (``None``: the only one)."""

    node: str | None
    command: Command


class Sleep(NamedTuple):
    """Wait: ``time.sleep`` in the sync runner, ``asyncio.sleep`` in the async one."""

    seconds: float


class Call(NamedTuple):
    """Call user code (a loader, a database write).

    The async runner awaits the result when it is awaitable, so the same flow accepts plain and
    ``async def`` functions. Exceptions are thrown back into the flow, which decides.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None


#: An operation a driver executes.
RedisOp: TypeAlias = Command | ScriptCall | Pipeline | Masters | OnNode

#: Anything a flow may yield.
Op: TypeAlias = Command | ScriptCall | Pipeline | Masters | OnNode | Sleep | Call
