"""The cache key of a call of a decorated function (``Cache.cached``, ``Cache.writes``).

The key is the decorator's template filled with the call's arguments by name, or, without a
template, the function's qualified name and a stable hash of its arguments, so the same call
gives the same key in every process.
"""

from __future__ import annotations

import inspect
import string
from collections.abc import Callable, Iterable
from typing import Any

from redkit.core import keys
from redkit.core.errors import InvalidArgumentError

__all__ = ["CallKey"]


def _by_index(template: str, names: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """``template`` with each ``{name}`` as ``{index}`` among ``names``.

    ``None`` when some field is more than a plain parameter name (``{user.id}``, ``{0}``, an
    unknown name, a nested ``{x:{width}}``): those keep the by-name path.
    """
    out: list[str] = []
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return None  # a malformed template: the by-name path reports it
    for literal, field, spec, conversion in fields:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        if field not in names or "{" in (spec or ""):
            return None
        out.append("{" + str(names.index(field)))
        out.append(f"!{conversion}" if conversion else "")
        out.append(f":{spec}}}" if spec else "}")
    return "".join(out), names


class CallKey:
    """The cache key (and tags) of each call of one decorated function.

    Built once, at decoration; called on every call, so the common shapes of call (every
    argument by position, no tags) take a path without ``Signature.bind``.
    """

    def __init__(
        self, fn: Callable[..., Any], template: str | None, tags: Iterable[str] = ()
    ) -> None:
        self.signature = inspect.signature(fn)
        self.template = template
        self.tag_templates = list(tags)
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        parameters = list(self.signature.parameters.values())
        # A call that passes every parameter by position, of a function with only plain
        # parameters, binds by zip: a third of a cache hit's time went to Signature.bind.
        plain = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in parameters)
        self._positional = tuple(p.name for p in parameters) if plain else None
        self._defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
        # And with no tags, such a call fills the key template by index, without a dict.
        self._by_index = (
            _by_index(template, self._positional)
            if template is not None and self._positional is not None and not self.tag_templates
            else None
        )

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        names = self._positional
        if names is not None and len(args) <= len(names):
            arguments = self._bind_plain(names, args, kwargs)
            if arguments is not None:
                return arguments
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgumentError(f"{self.name}: {exc}") from exc
        bound.apply_defaults()
        return dict(bound.arguments)

    def _bind_plain(
        self, names: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """What ``Signature.bind`` + ``apply_defaults`` give, for plain parameters, or ``None``.

        ``None`` when the call does not fit (a missing argument, an unknown or doubled
        keyword): ``bind`` then says what is wrong. Keyword calls bound by ``bind`` cost more
        than the rest of a cache hit.
        """
        arguments = dict(zip(names, args, strict=False))  # args may be fewer
        used = 0
        defaults = self._defaults
        for name in names[len(args) :]:
            if name in kwargs:
                arguments[name] = kwargs[name]
                used += 1
            elif name in defaults:
                arguments[name] = defaults[name]
            else:
                return None
        return arguments if used == len(kwargs) else None

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The call's cache key."""
        return self.key_and_tags(args, kwargs)[0]

    def key_and_tags(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, list[str]]:
        """The call's key and its tags (each tag template filled like the key template)."""
        by_index = self._by_index
        if by_index is not None and not kwargs and len(args) == len(by_index[1]):
            return by_index[0].format(*args), []
        arguments = self._arguments(args, kwargs)
        tags = [t.format(**arguments) for t in self.tag_templates] if self.tag_templates else []
        if self.template is not None:
            return self.template.format(**arguments), tags
        # The qualified name and a stable hash of the arguments, by name: the same call gives
        # the same key in every process, and f(1, b=2) is f(a=1, b=2).
        arguments = {k: v for k, v in arguments.items() if k not in ("self", "cls")}
        return f"{self.name}:{keys.stable_hash(arguments)}", tags
