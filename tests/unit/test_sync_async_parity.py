"""Every blocking facade and its asyncio twin offer the same calls (no server).

One comparison for every pair redkit exports: the same public names, each of the same kind
(method, property, ...), with the same parameters (names, kinds, defaults, annotations) and the
same return type, the async one's compared once awaited. A second test makes sure the list of
pairs misses none of ``redkit.__all__`` nor of ``redkit.ratelimit.__all__`` (where the
multi-region pair is exported); a third, that the comparison does catch each kind of
difference.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import redkit
import redkit.ratelimit
from redkit import (
    AsyncCache,
    AsyncConcurrency,
    AsyncRatelimit,
    AsyncSessionStore,
    AsyncTieredRatelimit,
    Cache,
    Concurrency,
    Ratelimit,
    SessionStore,
    TieredRatelimit,
)
from redkit.ratelimit import AsyncMultiRegionRatelimit, MultiRegionRatelimit

PAIRS: list[tuple[type, type]] = [
    (Ratelimit, AsyncRatelimit),
    (TieredRatelimit, AsyncTieredRatelimit),
    (MultiRegionRatelimit, AsyncMultiRegionRatelimit),
    (Concurrency, AsyncConcurrency),
    (Cache, AsyncCache),
    (SessionStore, AsyncSessionStore),
]


def _public(cls: type) -> dict[str, Any]:
    """The public members of ``cls`` and its ``__init__``, as stored (a property stays one)."""
    names = [name for name in dir(cls) if not name.startswith("_")] + ["__init__"]
    return {name: inspect.getattr_static(cls, name) for name in names}


def _subscript(annotation: str) -> tuple[str, list[str]] | None:
    """``"A[B, C]"`` as ``("A", ["B", "C"])``; ``None`` for an annotation with no subscript."""
    node = ast.parse(annotation, mode="eval").body
    if not isinstance(node, ast.Subscript):
        return None
    inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return ast.unparse(node.value).rsplit(".", 1)[-1], [ast.unparse(part) for part in inner]


def _without_awaitables(annotation: str) -> str:
    """``annotation`` with every ``Awaitable[X]`` written as ``X``: how a decorator of async
    functions types what its blocking twin types without the awaitable."""

    class Strip(ast.NodeTransformer):
        def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
            self.generic_visit(node)
            if ast.unparse(node.value).rsplit(".", 1)[-1] == "Awaitable":
                return node.slice
            return node

    return ast.unparse(Strip().visit(ast.parse(annotation, mode="eval")))


def _awaited(function: Callable[..., Any]) -> str | None:
    """What awaiting a call of ``function`` gives, as an annotation; ``None`` when a call's
    result is not awaitable (as far as its annotation tells)."""
    returned = inspect.signature(function).return_annotation
    if inspect.iscoroutinefunction(function):
        return str(returned)
    if not isinstance(returned, str):
        return None
    parts = _subscript(returned)
    if parts is not None and parts[0] == "Awaitable":
        return parts[1][0]
    if parts is not None and parts[0] == "Coroutine":
        return parts[1][2]
    # A class of redkit's own that can be awaited (AsyncConcurrency.acquire's AcquireContext):
    # its __await__ says what it gives, as Generator[yield, send, result].
    made = getattr(function, "__globals__", {}).get(returned)
    if isinstance(made, type) and hasattr(made, "__await__"):
        parts = _subscript(str(inspect.signature(made.__await__).return_annotation))
        if parts is not None and parts[0] == "Generator":
            return parts[1][2]
    return None


#: An async facade's annotations name the async twins where the blocking one names its own.
TWINS = {asyncio_.__name__: blocking.__name__ for blocking, asyncio_ in PAIRS}


def _as_blocking(annotation: Any) -> Any:
    """``annotation`` with each async twin's name as its blocking facade's."""
    if not isinstance(annotation, str):
        return annotation

    class Rename(ast.NodeTransformer):
        def visit_Name(self, node: ast.Name) -> ast.AST:
            return ast.Name(TWINS.get(node.id, node.id), node.ctx)

    return ast.unparse(Rename().visit(ast.parse(annotation, mode="eval")))


def _parameters(signature: inspect.Signature) -> list[inspect.Parameter]:
    return [
        parameter.replace(annotation=_as_blocking(parameter.annotation))
        for parameter in signature.parameters.values()
    ]


def _kind(member: Any) -> str:
    return type(member).__name__  # function, property, classmethod, staticmethod, ...


def _compare_methods(name: str, blocking: Any, asyncio_: Any) -> list[str]:
    sync_fn, async_fn = (
        m.__func__ if isinstance(m, (classmethod, staticmethod)) else m
        for m in (blocking, asyncio_)
    )
    sync_sig, async_sig = inspect.signature(sync_fn), inspect.signature(async_fn)
    found = []
    if list(sync_sig.parameters.values()) != list(async_sig.parameters.values()):
        found.append(f"{name}: parameters differ: {sync_sig} vs {async_sig}")
    if name == "__init__":
        return found
    if inspect.iscoroutinefunction(sync_fn):
        found.append(f"{name}: the blocking one is a coroutine function")
    returned = str(sync_sig.return_annotation)
    awaited = _awaited(async_fn)
    if awaited is None:
        # Not awaitable itself: a decorator whose wrapped functions are, or a mistake.
        if (
            _without_awaitables(str(async_sig.return_annotation))
            == returned
            != str(async_sig.return_annotation)
        ):
            return found
        found.append(f"{name}: the async one returns {async_sig.return_annotation}, not awaited")
    elif _as_blocking(awaited) != returned:
        found.append(f"{name}: returns {returned} vs, awaited, {awaited}")
    return found


def differences(blocking: type, asyncio_: type) -> list[str]:
    """How the public surface of ``asyncio_`` differs from that of ``blocking``; empty if not."""
    sync_members, async_members = _public(blocking), _public(asyncio_)
    found = [f"{name}: only in {blocking.__name__}" for name in sync_members.keys() - async_members]
    found += [
        f"{name}: only in {asyncio_.__name__}" for name in async_members.keys() - sync_members
    ]
    for name in sorted(sync_members.keys() & async_members.keys()):
        ours, theirs = sync_members[name], async_members[name]
        if _kind(ours) != _kind(theirs):
            found.append(f"{name}: a {_kind(ours)} vs a {_kind(theirs)}")
        elif isinstance(ours, property):
            sync_type = inspect.signature(ours.fget).return_annotation
            async_type = _as_blocking(inspect.signature(theirs.fget).return_annotation)
            if sync_type != async_type:
                found.append(f"{name}: a property of {sync_type} vs of {async_type}")
        elif callable(ours) or isinstance(ours, (classmethod, staticmethod)):
            found += _compare_methods(name, ours, theirs)
        elif ours != theirs:
            found.append(f"{name}: {ours!r} vs {theirs!r}")
    return found


@pytest.mark.parametrize(
    ("blocking", "asyncio_"), PAIRS, ids=[blocking.__name__ for blocking, _ in PAIRS]
)
def test_the_async_facade_offers_the_calls_of_the_blocking_one(
    blocking: type, asyncio_: type
) -> None:
    assert differences(blocking, asyncio_) == []


def test_every_exported_async_facade_is_compared_with_its_twin() -> None:
    exported = {
        name: getattr(module, name)
        for module in (redkit, redkit.ratelimit)  # the multi-region pair is exported there only
        for name in module.__all__
        if name != "RestConnection"
    }
    twins = {
        (exported[name.removeprefix("Async")], facade)
        for name, facade in exported.items()
        if name.startswith("Async")
    }
    assert twins == set(PAIRS)


class _Blocking:
    def __init__(self, url: str, *, timeout: float = 1.0) -> None: ...
    def get(self, key: str, default: int = 0) -> int: ...
    def put(self, key: str) -> None: ...
    def gone(self) -> None: ...
    def sync_only(self) -> None: ...
    def decorate(self) -> Callable[[Callable[[], int]], Callable[[], int]]: ...

    @property
    def size(self) -> int: ...


class _Async:
    def __init__(self, url: str, *, timeout: float = 2.0) -> None: ...
    async def get(self, name: str, default: int = 0) -> str: ...
    def put(self, key: str) -> None: ...
    async def gone(self) -> None: ...
    async def async_only(self) -> None: ...
    def decorate(
        self,
    ) -> Callable[[Callable[[], Awaitable[int]]], Callable[[], Awaitable[int]]]: ...

    def size(self) -> int: ...


def test_the_comparison_finds_each_kind_of_difference() -> None:
    found = differences(_Blocking, _Async)
    assert sorted(found) == sorted(
        [
            "sync_only: only in _Blocking",
            "async_only: only in _Async",
            "__init__: parameters differ: (self, url: 'str', *, timeout: 'float' = 1.0) -> 'None'"
            " vs (self, url: 'str', *, timeout: 'float' = 2.0) -> 'None'",
            "get: parameters differ: (self, key: 'str', default: 'int' = 0) -> 'int'"
            " vs (self, name: 'str', default: 'int' = 0) -> 'str'",
            "get: returns int vs, awaited, str",
            "put: the async one returns None, not awaited",
            "size: a property vs a function",
        ]
    )
