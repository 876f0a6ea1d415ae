"""The session cookie: reading it strictly from a request, and writing its ``Set-Cookie``.

Framework-free, so the ASGI middleware and the Flask interface share one set of rules.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from dataclasses import dataclass

from redkit.core.caller import warn_caller
from redkit.core.errors import InsecureCookieWarning, InvalidArgumentError
from redkit.sessions.flows import valid_session_id

__all__ = ["CookiePolicy"]

_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}
#: A session id is 66 characters; anything much longer is not worth parsing.
_MAX_VALUE = 128
# RFC 6265 cookie-name token characters (no separators, no controls, no spaces).
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"


@dataclass(frozen=True)
class CookiePolicy:
    """How the session cookie is named, scoped and flagged.

    The cookie is always ``HttpOnly`` and host-only (no ``Domain``): a session id is for this
    host's server, never for scripts or sibling domains.

    Args:
        name: the cookie's name.
        path: the ``Path`` attribute.
        secure: send the cookie over HTTPS only. Turn it off for local development only: an
            :class:`~redkit.errors.InsecureCookieWarning` (a ``UserWarning``) says so,
            pointing at the code that passed ``secure=False``; filter it to acknowledge.
        same_site: ``"lax"``, ``"strict"`` or ``"none"`` (``"none"`` needs ``secure``).
        max_age: seconds the browser keeps the cookie; ``None`` for a cookie that ends with
            the browser session. The server's idle and absolute timeouts apply either way.

    """

    name: str = "session"
    path: str = "/"
    secure: bool = True
    same_site: str = "lax"
    max_age: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or not set(self.name) <= _NAME_CHARS:
            raise InvalidArgumentError(f"cookie_name must be a cookie token, got {self.name!r}")
        if not isinstance(self.path, str) or not self.path.startswith("/") or ";" in self.path:
            raise InvalidArgumentError(
                f"path must start with '/' and hold no ';', got {self.path!r}"
            )
        if not isinstance(self.same_site, str) or self.same_site.lower() not in _SAME_SITE:
            raise InvalidArgumentError(
                f"same_site must be 'lax', 'strict' or 'none', got {self.same_site!r}"
            )
        if self.same_site.lower() == "none" and not self.secure:
            raise InvalidArgumentError("same_site='none' requires secure=True (browsers insist)")
        if self.max_age is not None and (
            isinstance(self.max_age, bool) or not isinstance(self.max_age, int) or self.max_age < 1
        ):
            raise InvalidArgumentError(
                f"max_age must be a positive int of seconds or None, got {self.max_age!r}"
            )
        if not self.secure:
            warn_caller(
                "session cookies without the Secure flag (secure=False) go over plain HTTP, "
                "where anyone on the path can read them: use it for local development only. "
                "To acknowledge it, filter redkit.errors.InsecureCookieWarning",
                InsecureCookieWarning,
            )

    def read(self, cookie_headers: Iterable[str]) -> str | None:
        """The session id in a request's ``Cookie`` headers, or ``None``.

        The cookie counts only when it was sent exactly once and has the shape of an id the
        store issues. Any other value (garbage, oversized, non-ASCII, duplicated) is ignored,
        never looked up.
        """
        values: list[str] = []
        for header in cookie_headers:
            for part in header.split(";"):
                name, eq, value = part.partition("=")
                if eq and name.strip() == self.name:
                    values.append(value.strip())
        if len(values) != 1:
            # Two cookies of one name (say, one planted for a parent domain): trust neither.
            return None
        value = values[0]
        if len(value) > _MAX_VALUE or not valid_session_id(value):
            return None
        return value

    def _attributes(self) -> str:
        parts = [f"Path={self.path}", "HttpOnly"]
        if self.secure:
            parts.append("Secure")
        parts.append(f"SameSite={_SAME_SITE[self.same_site.lower()]}")
        return "; ".join(parts)

    def set_cookie(self, session_id: str, max_age: int | None = None) -> str:
        """The ``Set-Cookie`` value that hands ``session_id`` to the client.

        ``max_age`` overrides the policy's own (the Flask interface passes a permanent
        session's lifetime).
        """
        age = self.max_age if max_age is None else max_age
        lifetime = "" if age is None else f"; Max-Age={age}"
        return f"{self.name}={session_id}{lifetime}; {self._attributes()}"

    def clear_cookie(self) -> str:
        """The ``Set-Cookie`` value that makes the client drop the cookie (a logout)."""
        return f"{self.name}=; Max-Age=0; Expires={_EXPIRED}; {self._attributes()}"
