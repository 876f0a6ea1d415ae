"""The dashboard's tokens, login cookie and CSRF tokens, and its Origin check (no server)."""

from __future__ import annotations

import time

import pytest
from starlette.requests import Request

from redkit.core.errors import InvalidArgumentError
from redkit.dashboard import auth as auth_module
from redkit.dashboard.auth import Auth
from redkit.dashboard.guard import same_origin
from redkit.dashboard.server import is_loopback

READ, ADMIN = "r" * 16, "a" * 16


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def test_tokens_grant_their_roles() -> None:
    auth = Auth(READ, ADMIN, no_auth=False)
    assert auth.role_of_token(READ) == "read"
    assert auth.role_of_token(ADMIN) == "admin"
    assert auth.role_of_token(READ + "x") is None
    assert auth.role_of_token("") is None
    assert Auth(READ, None, no_auth=False).role_of_token(ADMIN) is None


def test_a_cookie_is_signed_and_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = Auth(READ, ADMIN, no_auth=False)
    cookie, identity = auth.new_cookie("read")
    assert auth.from_cookie(cookie) == identity
    assert READ not in cookie
    role, expires, nonce, mac = cookie.split(".")
    assert auth.from_cookie(f"admin.{expires}.{nonce}.{mac}") is None  # the role is signed
    assert auth.from_cookie(f"{role}.{int(expires) + 9}.{nonce}.{mac}") is None
    assert auth.from_cookie("garbage") is None
    assert auth.from_cookie(None) is None
    # Another token, another key: the cookies of the old one stop working.
    assert Auth(READ + "x", ADMIN, no_auth=False).from_cookie(cookie) is None
    monkeypatch.setattr(auth_module.time, "time", lambda: time.time_ns() / 1e9 + 13 * 3600)
    assert auth.from_cookie(cookie) is None  # past its 12 hours


def test_an_admin_cookie_needs_an_admin_token() -> None:
    with_admin = Auth(READ, ADMIN, no_auth=False)
    cookie, _ = with_admin.new_cookie("admin")
    key_alike = Auth(READ, None, no_auth=False)
    key_alike._key = with_admin._key  # even signed by the same key
    assert key_alike.from_cookie(cookie) is None


def test_csrf_tokens_belong_to_one_login() -> None:
    auth = Auth(READ, ADMIN, no_auth=False)
    _, first = auth.new_cookie("admin")
    _, second = auth.new_cookie("admin")
    token = auth.csrf_token(first)
    assert auth.csrf_ok(first, token)
    assert not auth.csrf_ok(second, token)
    assert not auth.csrf_ok(first, "")
    assert not auth.csrf_ok(first, token[:-1] + ("0" if token[-1] != "0" else "1"))


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        ((None, None, False), "REDKIT_DASHBOARD_TOKEN"),
        (("short", None, False), "at least 16"),
        ((READ, "short", False), "admin_token must be a str of at least 16"),
        ((READ, READ, False), "must differ"),
        ((READ, None, True), "no_auth=True takes no token"),
        ((123, None, False), "token must be a str"),
    ],
)
def test_bad_tokens_are_refused(tokens: tuple[object, object, bool], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        Auth(*tokens)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"host": "dash:8377", "origin": "http://dash:8377"}, True),
        ({"host": "dash:8377", "origin": "https://dash:8377"}, True),  # behind TLS
        ({"host": "dash:8377", "origin": "http://evil.example"}, False),
        ({"host": "dash:8377", "origin": "null"}, False),
        ({"host": "dash:8377", "referer": "http://dash:8377/caches"}, True),
        ({"host": "dash:8377", "referer": "http://dash:8377.evil.example/"}, False),
        (
            {"host": "dash:8377", "origin": "http://dash:8377", "sec-fetch-site": "cross-site"},
            False,
        ),
        ({"host": "dash:8377"}, True),  # no browser: the CSRF token decides
    ],
)
def test_same_origin(headers: dict[str, str], allowed: bool) -> None:
    assert same_origin(request(headers), ()) is allowed


def test_an_allowed_origin() -> None:
    proxied = request({"host": "internal:8377", "origin": "https://admin.example.com"})
    assert not same_origin(proxied, ())
    assert same_origin(proxied, ("https://admin.example.com",))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False), ("example.com", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_signed_text_is_read_back_only_when_signed_here() -> None:
    auth = Auth(READ, ADMIN, no_auth=False)
    signed = auth.sign("3 session(s) of user <b>42</b> revoked")
    assert auth.unsigned(signed) == "3 session(s) of user <b>42</b> revoked"
    assert Auth(READ, None, no_auth=False).unsigned(signed) is None
    encoded, _, mac = signed.partition(".")
    assert auth.unsigned(encoded + "." + mac[::-1]) is None
    assert auth.unsigned("") is None
    assert auth.unsigned(None) is None
