"""Drive a flow by hand: the operations it must yield, and the reply to each. No server.

A flow (:mod:`redkit.core.flow`) only yields operations and receives replies, so a test can
play Redis itself. It writes the exchange it expects as a list of steps — ``(expected op,
reply)`` — and :func:`drive` runs the flow against it::

    result = drive(flows.get("k"), [
        (cmd("GET", "cache#generation"), None),
        (cmd("GET", "cache:g0:k"), None),
    ]).result

Each operation the flow yields is checked against the next step before it is answered, and the
first one that differs fails the test with the whole exchange so far, so the message says where
the flow went its own way. A flow that stops early, or asks for more than the steps give, fails
too. An exception given as a reply is thrown into the flow at that ``yield``, as the runners do
with a driver's error; :class:`Do` runs code at that point instead (to let time pass, or to play
another process in between).

Expected operations are the operation types of :mod:`redkit.core.ops` (``cmd``, ``pipeline``,
``Sleep``) or the matchers here (``script``, ``call``), whose fields may hold :data:`ANY`, a
:class:`Like` pattern, or a :class:`Same` that takes the first value it sees and then insists
on it (a lease token sent again when the lease is given back). Scalars match only a value of
the same type: ``1`` is not ``"1"``, nor ``True``.

This module is self-contained: it imports only redkit's operations.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from redkit.core.flow import Flow
from redkit.core.ops import Call, Command, Masters, OnNode, Pipeline, ScriptCall, Sleep

__all__ = [
    "ANY",
    "Do",
    "Driven",
    "FlowMismatch",
    "Like",
    "Same",
    "call",
    "cmd",
    "drive",
    "pipeline",
    "script",
]


class FlowMismatch(AssertionError):
    """The flow did not yield what the steps expected (or stopped, or asked for more)."""


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: Matches any one value.
ANY: Any = _Any()


class Like:
    """Matches a ``str`` (or ``bytes``, decoded) that fully matches a regular expression."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def matches(self, value: object) -> bool:
        """Whether ``value`` is text that fits the pattern."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None

    def __repr__(self) -> str:
        return f"Like({self.pattern.pattern!r})"


class Same:
    """Matches any value the first time (or one fitting ``like``), then only that value.

    ``value`` holds what it took, for later assertions or later steps' replies.
    """

    def __init__(self, name: str, like: Like | None = None) -> None:
        self.name = name
        self.like = like
        self.bound = False
        self.value: Any = None

    def matches(self, value: object) -> bool:
        """Take ``value`` the first time; afterwards, whether it is the value taken."""
        if self.bound:
            return bool(_same_type_equal(self.value, value))
        if self.like is not None and not self.like.matches(value):
            return False
        self.bound, self.value = True, value
        return True

    def __repr__(self) -> str:
        return f"Same({self.name!r}={_short(self.value)})" if self.bound else f"Same({self.name!r})"


# Lower case, as cmd() and pipeline(): the things a step expects read alike.
class script:
    """Expects a :class:`ScriptCall` of the script named ``name``, with these keys and args."""

    def __init__(self, name: str, keys: Any = ANY, args: Any = ANY) -> None:
        self.name = name
        self.keys = keys
        self.args = args

    def matches(self, op: object) -> bool:
        """Whether ``op`` runs this script on matching keys and arguments."""
        return (
            isinstance(op, ScriptCall)
            and op.script.name == self.name
            and _matches(self.keys, op.keys)
            and _matches(self.args, op.args)
        )

    def __repr__(self) -> str:
        return f"script({self.name!r}, keys={self.keys!r}, args={self.args!r})"


class call:
    """Expects a :class:`Call` of ``fn`` (any function by default) with these arguments."""

    def __init__(self, fn: Any = ANY, args: Any = ANY, kwargs: Any = ANY) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def matches(self, op: object) -> bool:
        """Whether ``op`` calls the expected function with matching arguments."""
        return (
            isinstance(op, Call)
            and (self.fn is ANY or op.fn is self.fn or _matches(self.fn, op.fn))
            and _matches(self.args, op.args)
            and _matches(self.kwargs, op.kwargs)
        )

    def __repr__(self) -> str:
        return f"call({_name(self.fn)}, args={self.args!r}, kwargs={self.kwargs!r})"


def cmd(*args: Any) -> Command:
    """An expected :class:`Command` (its arguments may be matchers)."""
    return Command(args)


def pipeline(*ops: Any, transaction: bool = False) -> Pipeline:
    """An expected :class:`Pipeline` of these commands and script calls (or their matchers)."""
    return Pipeline(ops, transaction)


class Do:
    """A reply computed when its step is reached: ``fn()``'s value (or the error it raises).

    For what must happen at that point of the exchange: time passing, or another process's
    flow running between two of this one's operations.
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def __repr__(self) -> str:
        return f"Do({_name(self.fn)})"


class Driven(NamedTuple):
    """What :func:`drive` saw: the flow's result and every operation it yielded, in order."""

    result: Any
    ops: list[Any]


def drive(flow: Flow[Any], steps: Iterable[tuple[Any, Any]]) -> Driven:
    """Run ``flow`` through ``steps`` (``(expected op, reply)`` pairs); see the module docs.

    Returns the flow's result with the operations it yielded; an exception the flow raises
    after the last step reaches the caller (raised before it, it is a mismatch: the flow gave
    up early). The flow is closed however this ends.
    """
    __tracebackhide__ = True  # a failure points at the test's steps, not at this loop
    script_ = list(steps)
    for index, step in enumerate(script_):
        if not (isinstance(step, tuple) and len(step) == 2):
            raise TypeError(f"step {index} must be an (expected op, reply) pair, got {step!r}")
    seen: list[Any] = []
    transcript: list[str] = []

    def left(position: int) -> str:
        return "\n".join(f"    {_render(expected)}" for expected, _ in script_[position:])

    def mismatch(what: str) -> FlowMismatch:
        lines = "\n".join(transcript) or "  (nothing yet)"
        return FlowMismatch(f"{what}\nthe exchange so far:\n{lines}")

    try:
        try:
            op = next(flow)
        except StopIteration as stop:
            result = stop.value
            if script_:
                raise mismatch(
                    f"the flow returned {_short(result)} before its first step; expected "
                    f"{_render(script_[0][0])}"
                ) from None
            return Driven(result, seen)
        position = 0
        while True:
            if not _is_op(op):
                raise mismatch(f"step {position}: the flow yielded {op!r}, which is no operation")
            seen.append(op)
            if position >= len(script_):
                raise mismatch(
                    f"step {position}: the flow asked for more than the steps give: {_render(op)}"
                )
            expected, reply = script_[position]
            if not _matches(expected, op):
                raise mismatch(
                    f"step {position}: the flow yielded\n    {_render(op)}\nwhere the steps "
                    f"expect\n    {_render(expected)}"
                )
            if isinstance(reply, Do):
                try:
                    reply = reply.fn()
                except Exception as exc:  # handed to the flow, as a driver's error would be
                    reply = exc
            transcript.append(f"  {position}: {_render(op)}\n       -> {_short(reply)}")
            position += 1
            try:
                op = flow.throw(reply) if isinstance(reply, BaseException) else flow.send(reply)
            except StopIteration as stop:
                if position < len(script_):
                    raise mismatch(
                        f"the flow returned {_short(stop.value)} after {position} steps; "
                        f"these were never asked:\n{left(position)}"
                    ) from None
                return Driven(stop.value, seen)
            except Exception as exc:
                if position < len(script_):  # it gave up before the steps that should follow
                    raise mismatch(
                        f"the flow raised {exc!r} after {position} steps; these were never "
                        f"asked:\n{left(position)}"
                    ) from exc
                raise
    finally:
        flow.close()


# -- matching and rendering ----------------------------------------------------------------

_OPS = (Command, ScriptCall, Pipeline, Masters, OnNode, Sleep, Call)


def _is_op(value: object) -> bool:
    return isinstance(value, _OPS)


def _same_type_equal(expected: object, actual: object) -> bool:
    # 1 == True == 1.0 in Python; an exact exchange tells them apart (Redis sees "1", "1.0").
    return type(expected) is type(actual) and expected == actual


def _matches(expected: Any, actual: Any) -> bool:
    if expected is ANY:
        return True
    if isinstance(expected, (Like, Same, script, call)):
        return expected.matches(actual)
    if isinstance(expected, tuple):
        # Operations are NamedTuples and compare as plain tuples: Sleep(1) == Command((1,)).
        # The type must agree too, and each field must match.
        return (
            type(expected) is type(actual)
            and len(expected) == len(actual)
            and all(_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_matches(expected[k], actual[k]) for k in expected)
        )
    return _same_type_equal(expected, actual)


def _short(value: Any, limit: int = 70) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _args(args: Iterable[Any]) -> str:
    return ", ".join(_short(arg, 80) for arg in args)  # a SHA-256 digest in full


def _render(op: Any) -> str:
    """An operation (or a matcher) written the way a step would expect it."""
    if isinstance(op, Command):
        return f"cmd({_args(op.args)})"
    if isinstance(op, ScriptCall):
        return f"script({op.script.name!r}, keys={op.keys!r}, args=({_args(op.args)}))"
    if isinstance(op, Pipeline):
        inner = ", ".join(_render(o) for o in op.ops)
        return f"pipeline({inner}{', transaction=True' if op.transaction else ''})"
    if isinstance(op, Call):
        return f"call({_name(op.fn)}, args={_short(op.args)}, kwargs={_short(op.kwargs)})"
    return repr(op)
