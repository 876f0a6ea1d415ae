"""The framework-free parts of the session middleware, with no server: the cookie rules and
the commit flow (fed the store's replies by hand)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import pytest

from redkit.errors import InsecureCookieWarning, InvalidArgumentError
from redkit.sessions import KEEP, SessionConflictError, SessionEndedError, SessionNotLoadedError
from redkit.sessions.cookies import CookiePolicy
from redkit.sessions.flows import new_session_id
from redkit.sessions.model import Session, encode_value
from redkit.sessions.web import LazySession, Outcome, StoreCall, commit


def record(session_id: str, data: dict[str, Any], user_id: Any = None) -> Session:
    original = {key: encode_value(key, value) for key, value in data.items()}
    return Session(data, id=session_id, original=original, user_id=user_id)


def drive(session: LazySession, replies: list[Any]) -> tuple[list[StoreCall], Outcome]:
    """Run the commit flow, answering each store call with the next reply."""
    calls: list[StoreCall] = []
    flow = commit(session)
    answers = iter(replies)
    try:
        call = next(flow)
        while True:
            calls.append(call)
            call = flow.send(next(answers))
    except StopIteration as stop:
        return calls, stop.value


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


# -- the commit flow ---------------------------------------------------------------------------


def test_untouched_sessions_call_nothing() -> None:
    assert drive(LazySession(new_session_id()), []) == ([], Outcome())
    assert drive(LazySession(None), []) == ([], Outcome())


def test_unloaded_data_is_refused() -> None:
    session = LazySession(new_session_id())
    with pytest.raises(SessionNotLoadedError):
        session["x"]


def test_a_new_session_is_created_only_with_data() -> None:
    session = LazySession(None, user_agent="ua", ip="10.0.0.1")
    session["x"] = 1
    calls, outcome = drive(session, ["new.id"])
    assert calls == [StoreCall("create", ({"x": 1},), {"user_agent": "ua", "ip": "10.0.0.1"})]
    assert outcome == Outcome(session_id="new.id")
    assert session.issued_id == "new.id"


def test_an_unknown_id_is_never_reused() -> None:
    chosen = new_session_id()
    session = LazySession(chosen)
    session._set_loaded(None)  # the store did not know it
    session["x"] = 1
    calls, outcome = drive(session, ["fresh.id"])
    assert [c.method for c in calls] == ["create"]
    assert chosen not in repr(calls)
    assert outcome.session_id == "fresh.id"


def test_changes_are_saved_without_a_new_cookie() -> None:
    sid = new_session_id()
    session = LazySession(sid)
    session._set_loaded(record(sid, {"a": 1}))
    session["b"] = 2
    calls, outcome = drive(session, [True])
    assert [(c.method, c.args[0]) for c in calls] == [("save", sid)]
    assert outcome == Outcome()


def test_regenerate_rotates_then_saves() -> None:
    sid = new_session_id()
    session = LazySession(sid)
    session._set_loaded(record(sid, {"a": 1}))
    session["a"] = 2
    session.regenerate(user_id="alice")
    assert session.user_id == "alice"
    calls, outcome = drive(session, ["rotated.id", True])
    assert calls[0] == StoreCall("rotate", (sid,), {"user_id": "alice"})
    assert (calls[1].method, calls[1].args[0]) == ("save", "rotated.id")
    assert outcome == Outcome(session_id="rotated.id")


def test_regenerate_keeps_the_user_by_default_and_needs_no_load() -> None:
    sid = new_session_id()
    session = LazySession(sid)
    session.regenerate()
    calls, outcome = drive(session, ["rotated.id"])
    assert calls == [StoreCall("rotate", (sid,), {})]
    assert outcome.session_id == "rotated.id"


def test_regenerate_of_a_dead_unloaded_cookie_creates_a_session() -> None:
    session = LazySession(new_session_id(), ip="::1")
    session.regenerate(user_id=7)
    calls, outcome = drive(session, [None, "created.id"])
    assert [c.method for c in calls] == ["rotate", "create"]
    assert calls[1].kwargs == {"user_id": 7, "user_agent": None, "ip": "::1"}
    assert outcome.session_id == "created.id"


def test_regenerate_of_a_session_ended_meanwhile_is_a_conflict() -> None:
    sid = new_session_id()
    session = LazySession(sid)
    session._set_loaded(record(sid, {"a": 1}))
    session.regenerate(user_id=KEEP)
    with pytest.raises(SessionEndedError):
        drive(session, [None])


def test_a_save_on_a_session_gone_meanwhile_is_a_conflict() -> None:
    sid = new_session_id()
    session = LazySession(sid)
    session._set_loaded(record(sid, {"a": 1}))
    session["a"] = 2
    with pytest.raises(SessionConflictError) as caught:
        drive(session, [False])
    assert caught.value.keys == ["a"]


def test_invalidate_deletes_and_clears_without_a_load() -> None:
    sid = new_session_id()
    session = LazySession(sid)
    session.invalidate()
    calls, outcome = drive(session, [True])
    assert calls == [StoreCall("delete", (sid,))]
    assert outcome == Outcome(clear=True)


def test_data_after_invalidate_goes_to_a_new_session() -> None:
    sid = new_session_id()
    session = LazySession(sid)
    session._set_loaded(record(sid, {"user": "x"}))
    session.invalidate()
    session["flash"] = "bye"
    calls, outcome = drive(session, [True, "next.id"])
    assert [c.method for c in calls] == ["delete", "create"]
    assert calls[1].args == ({"flash": "bye"},)
    assert outcome == Outcome(session_id="next.id")


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
