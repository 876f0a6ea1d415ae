"""Tokens: where a request carries one, which rule it selects, and how logs show it.

A token is looked up by comparing it with every configured token in constant time
(:func:`hmac.compare_digest`), so neither the match nor the position of the first differing
character shows in the response time. Logs never show a token: :func:`fingerprint` gives a
short digest that tells tokens apart and reveals nothing of them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union
from urllib.parse import parse_qsl

from redkit.core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from redkit.drivers.connect import Connection

__all__ = ["TokenRule", "TokenTable", "fingerprint", "presented_token"]

RedisTarget = Union[str, "Connection"]


@dataclass(frozen=True)
class TokenRule:
    """What one token gives access to.

    Attributes:
        redis: the Redis behind it: a URL (``redis://``, ``rediss://``, ``unix://``,
            ``redis+cluster://``) or a :class:`redkit.Connection` (its URL and options are
            used; the gateway opens pools of its own).
        read_only: refuse writes, scripts other than ``EVAL_RO``, ``SCAN`` and ``KEYS``.

    """

    redis: RedisTarget = field(repr=False)  # a URL may hold the Redis password
    read_only: bool = False


def fingerprint(token: str | bytes) -> str:
    """A short, irreversible label for ``token`` in logs: ``token#1a2b3c4d``."""
    data = token.encode() if isinstance(token, str) else token
    return "token#" + hashlib.sha256(data).hexdigest()[:8]


class TokenTable:
    """The configured tokens; :meth:`lookup` finds the rule of a presented token."""

    def __init__(self, tokens: Mapping[str, TokenRule]) -> None:
        if not tokens:
            raise InvalidArgumentError("the gateway needs at least one token")
        self._rules: list[tuple[bytes, TokenRule]] = []
        for token, rule in tokens.items():
            if not isinstance(token, str) or not token.strip():
                raise InvalidArgumentError("a token must be a non-empty string")
            if token != token.strip():
                raise InvalidArgumentError(
                    f"{fingerprint(token)} has leading or trailing whitespace"
                )
            self._rules.append((token.encode(), rule))

    def lookup(self, presented: bytes) -> TokenRule | None:
        """The rule of ``presented``, or ``None``; the time taken does not depend on it."""
        found: TokenRule | None = None
        for token, rule in self._rules:
            # No early exit: every token is compared, whichever matches.
            if hmac.compare_digest(token, presented):
                found = rule
        return found

    def rules(self) -> Iterable[TokenRule]:
        """Every configured rule."""
        return [rule for _, rule in self._rules]


def presented_token(headers: Iterable[tuple[bytes, bytes]], query: bytes) -> bytes | None:
    """The token a request carries: ``Authorization: Bearer <token>``, else ``?_token=``."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, credential = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and credential.strip():
                return credential.strip()
    for parameter, text in parse_qsl(query.decode("latin-1"), encoding="latin-1"):
        if parameter == "_token" and text:
            return text.encode("latin-1")
    return None
