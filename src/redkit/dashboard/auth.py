"""Who may look and who may act: the read and admin tokens, the login cookie, CSRF tokens.

Stateless, so every worker of a multi-process app agrees: the cookie carries its role, its
expiry and a random nonce, signed with a key derived from the tokens (a random key when the
dashboard runs without tokens). A form's CSRF token is the same key's MAC of the nonce, so
each login session has its own. Every comparison is :func:`hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from redkit.core.errors import InvalidArgumentError

__all__ = ["COOKIE", "MIN_TOKEN_CHARS", "Auth", "Identity", "Role"]

Role = Literal["read", "admin"]
#: The login cookie's name.
COOKIE = "redkit_dashboard"
#: Shorter tokens are refused: the token is all that stands between the web and the data.
MIN_TOKEN_CHARS = 16
#: How long a login lasts.
LOGIN_S = 12 * 3600


@dataclass(frozen=True)
class Identity:
    """A caller the dashboard recognised.

    Attributes:
        role: ``"read"`` (look) or ``"admin"`` (look and act).
        via: ``"bearer"`` (an ``Authorization`` header), ``"cookie"`` (the login form) or
            ``"open"`` (no tokens configured: loopback only).
        nonce: the login session's nonce (``None`` for a bearer token).
    """

    role: Role
    via: Literal["bearer", "cookie", "open"]
    nonce: str | None

    @property
    def who(self) -> str:
        """The caller as the audit log names it: how they came in, never a token."""
        session = f" session {self.nonce[:8]}" if self.nonce else ""
        return f"{self.role} ({self.via}{session})"


def _checked(token: str | None, name: str) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
        raise InvalidArgumentError(
            f"{name} must be a str of at least {MIN_TOKEN_CHARS} characters "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


class Auth:
    """The tokens, and what they let a request do.

    Args:
        token: the read token (``None`` only with ``no_auth``).
        admin_token: the token that also allows the actions (``None``: no actions, unless
            ``no_auth``).
        no_auth: no tokens at all: everyone may look and act (the app checks that requests
            come to a loopback address).
    """

    def __init__(self, token: str | None, admin_token: str | None, no_auth: bool) -> None:
        self.token = _checked(token, "token")
        self.admin_token = _checked(admin_token, "admin_token")
        self.no_auth = no_auth
        if no_auth and (token or admin_token):
            raise InvalidArgumentError("no_auth=True takes no token: give tokens or no_auth")
        if not no_auth and self.token is None:
            raise InvalidArgumentError(
                "the dashboard needs a read token (token=..., REDKIT_DASHBOARD_TOKEN); "
                "no_auth=True serves it without one, on loopback only"
            )
        if self.token is not None and self.token == self.admin_token:
            raise InvalidArgumentError("admin_token must differ from token")
        if no_auth:
            self._key = secrets.token_bytes(32)
        else:
            material = f"{self.token}\0{self.admin_token or ''}".encode()
            self._key = hmac.new(b"redkit-dashboard-cookie", material, hashlib.sha256).digest()

    @property
    def actions_allowed(self) -> bool:
        """Whether any caller could act (an admin token is set, or there are no tokens)."""
        return self.no_auth or self.admin_token is not None

    def role_of_token(self, presented: str) -> Role | None:
        """The role a presented token grants (both tokens compared, in constant time)."""
        given = presented.encode()
        admin = self.admin_token is not None and hmac.compare_digest(
            given, self.admin_token.encode()
        )
        read = self.token is not None and hmac.compare_digest(given, self.token.encode())
        return "admin" if admin else "read" if read else None

    def _mac(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def new_cookie(self, role: Role) -> tuple[str, Identity]:
        """A signed login cookie's value for ``role``, and the identity it stands for."""
        nonce = secrets.token_urlsafe(16)
        body = f"{role}.{int(time.time()) + LOGIN_S}.{nonce}"
        via: Literal["cookie", "open"] = "open" if self.no_auth else "cookie"
        return f"{body}.{self._mac(body)}", Identity(role, via, nonce)

    def from_cookie(self, value: str | None) -> Identity | None:
        """The identity of a login cookie; ``None`` when missing, forged or expired."""
        if not value or value.count(".") != 3:
            return None
        body, _, mac = value.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(body).encode()):
            return None
        role, expires, nonce = body.split(".")
        if role not in ("read", "admin") or not expires.isdigit() or int(expires) < time.time():
            return None
        if role == "admin" and not self.actions_allowed:
            return None
        return Identity(role, "open" if self.no_auth else "cookie", nonce)  # type: ignore[arg-type]

    def sign(self, text: str) -> str:
        """``text`` with its MAC, for a cookie (see :meth:`unsigned`)."""
        encoded = base64.urlsafe_b64encode(text.encode()).decode("ascii")
        return f"{encoded}.{self._mac('flash.' + encoded)}"

    def unsigned(self, value: str | None) -> str | None:
        """The text :meth:`sign` signed; ``None`` when missing or not signed here."""
        encoded, _, mac = (value or "").partition(".")
        if not encoded or not hmac.compare_digest(
            mac.encode(), self._mac("flash." + encoded).encode()
        ):
            return None
        try:
            return base64.urlsafe_b64decode(encoded.encode("ascii")).decode()
        except (ValueError, UnicodeError):
            return None

    def csrf_token(self, identity: Identity) -> str:
        """The CSRF token of the identity's login session (``""`` without one)."""
        return "" if identity.nonce is None else self._mac(f"csrf.{identity.nonce}")

    def csrf_ok(self, identity: Identity, presented: str) -> bool:
        """Whether ``presented`` is the identity's CSRF token (constant time)."""
        expected = self.csrf_token(identity)
        return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())
