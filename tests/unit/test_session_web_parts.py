"""The framework-free parts of the session middleware, with no server: the cookie rules, and
that sessions import no framework (the commit flow: test_session_commit_scripted.py)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import pytest

from redkit.errors import InsecureCookieWarning, InvalidArgumentError
from redkit.sessions.cookies import CookiePolicy
from redkit.sessions.flows import new_session_id

# -- cookies -----------------------------------------------------------------------------------


def test_cookie_reading_is_strict() -> None:
    policy = CookiePolicy()
    good = new_session_id()
    assert policy.read([f"theme=dark; session={good}"]) == good
    assert policy.read(["theme=dark"]) is None
    assert policy.read([]) is None
    for bad in (
        "session=nope",
        f"session={good}; session={good}",
        f'session="{good}"',
        "session=" + "A" * 10_000,
        "session=\xe9" + good[1:],
    ):
        assert policy.read([bad]) is None, bad
    assert policy.read([f"session={good}", f"session={good}"]) is None  # two headers


def test_cookie_attributes() -> None:
    policy = CookiePolicy(name="sid", path="/app", same_site="strict", max_age=60)
    assert (
        policy.set_cookie("v") == "sid=v; Max-Age=60; Path=/app; HttpOnly; Secure; SameSite=Strict"
    )
    assert policy.set_cookie("v", 5).startswith("sid=v; Max-Age=5;")
    assert policy.clear_cookie() == (
        "sid=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/app; HttpOnly; Secure; "
        "SameSite=Strict"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"name": "a b"},
        {"name": ""},
        {"path": "app"},
        {"path": "/;x"},
        {"same_site": "sometimes"},
        {"same_site": "none", "secure": False},
        {"max_age": 0},
        {"max_age": True},
    ],
)
def test_cookie_policy_rejects_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        CookiePolicy(**options)


def test_insecure_cookie_policy_warns() -> None:
    with pytest.warns(InsecureCookieWarning, match=r"secure=False.*plain HTTP") as record:
        policy = CookiePolicy(secure=False)
    assert "Secure" not in policy.set_cookie("v").split("; ")
    assert issubclass(InsecureCookieWarning, UserWarning)
    assert record[0].filename == __file__  # the line that chose it, not redkit's


def test_the_insecure_cookie_warning_points_at_the_caller_of_each_adapter() -> None:
    """Through the ASGI middleware and the Flask extension, the warning names this file."""
    pytest.importorskip("starlette")
    flask = pytest.importorskip("flask")
    from redkit import AsyncSessionStore, Connection, SessionStore
    from redkit.web.asgi import SessionMiddleware
    from redkit.web.flask import Redkit

    # Neither adapter touches its store before a request: this connection never opens.
    never_opened = Connection("redis://127.0.0.1:6379")
    store = SessionStore(never_opened)

    async def app(scope: Any, receive: Any, send: Any) -> None: ...

    with pytest.warns(InsecureCookieWarning) as record:
        SessionMiddleware(app, store=AsyncSessionStore(never_opened), secure=False)
    assert [w.filename for w in record] == [__file__]
    with pytest.warns(InsecureCookieWarning) as record:
        Redkit(flask.Flask(__name__), sessions=store, session_options={"secure": False})
    assert [w.filename for w in record] == [__file__]


def test_an_acknowledged_insecure_cookie_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=InsecureCookieWarning)
        CookiePolicy(secure=False)  # would raise under "error" without the filter
        warnings.simplefilter("error")  # and without it, the same call raises
        with pytest.raises(InsecureCookieWarning):
            CookiePolicy(secure=False)


# -- optional frameworks ---------------------------------------------------------------------


def test_redkit_imports_without_starlette_or_flask() -> None:
    code = (
        "import sys\n"
        "for name in ('starlette', 'flask', 'fastapi', 'werkzeug'): sys.modules[name] = None\n"
        "import redkit, redkit.sessions\n"
        "assert redkit.sessions.SessionStore and redkit.sessions.SessionNotLoadedError\n"
        "try:\n"
        "    redkit.sessions.SessionMiddleware\n"
        "except ImportError:\n"
        "    print('lazy')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "lazy"
