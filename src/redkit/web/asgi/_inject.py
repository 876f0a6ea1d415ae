"""Hidden ``Request`` and ``Response`` parameters for decorators of FastAPI endpoints.

A decorator that needs the request rewrites the endpoint's signature so that FastAPI fills
one. FastAPI fills a single ``Request`` parameter (and a single ``Response`` one) per
endpoint, so an endpoint that declares its own keeps it, and the decorator reads that one; a
parameter another redkit decorator already added is shared the same way.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["REQUEST", "RESPONSE", "Injection", "inject"]

REQUEST = "redkit_request__"
RESPONSE = "redkit_response__"


@dataclass(frozen=True)
class Injection:
    """Where the request and response of a decorated endpoint's calls are found."""

    signature: inspect.Signature
    request: str
    response: str
    #: Parameters this decorator added: taken out before the endpoint is called.
    hidden: tuple[str, ...]

    def take(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Request, Response | None]:
        """The call's request and response; the hidden parameters leave ``kwargs``."""
        request = kwargs.get(self.request)
        response = kwargs.get(self.response)
        for name in self.hidden:
            kwargs.pop(name, None)
        if not isinstance(request, Request):  # a Starlette endpoint: the request is positional
            request = next((a for a in args if isinstance(a, Request)), None)
        if request is None:
            raise TypeError("the endpoint was called without a request")
        return request, response if isinstance(response, Response) else None


def _own(params: list[inspect.Parameter], cls: type, hidden: str) -> str | None:
    for param in params:
        hint = param.annotation
        if param.name == hidden or (isinstance(hint, type) and issubclass(hint, cls)):
            return param.name
    return None


def inject(func: Callable[..., Any]) -> Injection:
    """The signature FastAPI should see for ``func``, and where its request will be."""
    signature = inspect.signature(func)
    # Resolve string annotations (``from __future__ import annotations``) here, in the
    # function's own module: FastAPI would look them up in the decorator's module.
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except NameError:  # a name imported only for type checkers: keep the text
        hints = {}
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    request = _own(params, Request, REQUEST)
    response = _own(params, Response, RESPONSE)
    added = []
    if request is None:
        request = REQUEST
        added.append(inspect.Parameter(REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request))
    if response is None:
        response = RESPONSE
        added.append(
            inspect.Parameter(RESPONSE, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
        )
    # Keyword-only parameters must come before a **kwargs, if there is one.
    at = next(
        (i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params)
    )
    params[at:at] = added
    return Injection(
        signature=signature.replace(
            parameters=params, return_annotation=hints.get("return", signature.return_annotation)
        ),
        request=request,
        response=response,
        hidden=tuple(p.name for p in added),
    )
