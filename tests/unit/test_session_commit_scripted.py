"""The web adapters' session commit, op by op, with scripted replies and no server.

:func:`redkit.sessions.web.commit` is one flow of the store's own flows: what a request did to
its session (a login, a change, a logout) becomes the exact exchange below with Redis (see
``flowdrive``), and an :class:`Outcome` that says which cookie the response carries. When the
save after a rotation conflicts, the old id is already dead: ``issued_id`` still holds the new
one, which the 409 hands out. The same paths run on real servers, through Starlette, FastAPI and
Flask, in tests/integration/test_session_web.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from redkit.core.errors import BackendTimeout
from redkit.core.scripts import SERVER_TIME
from redkit.sessions import (
    KEEP,
    SessionConflictError,
    SessionEndedError,
    SessionNotLoadedError,
    SessionUnavailableError,
)
from redkit.sessions.flows import SessionFlows
from redkit.sessions.model import Session, encode_value
from redkit.sessions.web import LazySession, Outcome, commit
from support.flowdrive import Like, Same, cmd, drive, script

HANDLE = "H" * 22
SID = f"{HANDLE}.{'s' * 43}"
RECORD = f"session:{{{HANDLE}}}"
IDLE_MS = 86_400_000
ALICE = 'session:user:{"alice"}'
ANY_RECORD = Like(r"session:\{[A-Za-z0-9_-]{22}\}")  # a created session's: its handle is random
AN_ID = Like(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
NEW_SECRET = Like(HANDLE + r"\.[A-Za-z0-9_-]{43}")  # a rotation keeps the handle
SINCE_US = 1_700_000_000_000_123  # a script's time of creation or rotation: the index score


def digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def flows() -> SessionFlows:
    return SessionFlows(prefix="session", idle_ms=IDLE_MS, absolute_ms=None, max_per_user=None)


def loaded(data: dict[str, Any], user_id: Any = None) -> LazySession:
    """A request's session, loaded from the record ``SID`` holding ``data``."""
    original = {key: encode_value(key, value) for key, value in data.items()}
    session = LazySession(SID)
    session._set_loaded(Session(data, id=SID, original=original, user_id=user_id))
    return session


def on_record(op: str, *args: Any, record: Any = RECORD) -> Any:
    return script("session", (record,), (SERVER_TIME, op, *args))


def rotate(new_digest: Same, user: str | None) -> Any:
    """The rotation of ``SID``; ``user`` is the JSON of its new owner, ``None`` to keep it."""
    set_user, owner = ("0", "") if user is None else ("1", user)
    return on_record("rotate", digest(SID), IDLE_MS, new_digest, set_user, owner)


def create(new_digest: Same, *args: Any) -> Any:
    """A new record (``args``: the user, agent and address, then the data's pairs)."""
    return on_record("create", new_digest, IDLE_MS, 0, *args, record=ANY_RECORD)


@dataclass
class Case:
    """One thing a request did to its session, the exchange it costs, and what comes of it."""

    session: Callable[[], LazySession]
    #: The steps, given the new id's digest (what a rotation or a creation stores).
    steps: Callable[[Same], list[tuple[Any, Any]]]
    #: The outcome: ``"new"`` for a new id (the one whose digest was sent), else as given.
    outcome: Outcome | str | None = None
    #: The error the commit raises instead (with the keys it names), if any.
    raises: tuple[type[Exception], list[str]] | None = None
    #: Whether the response must hand out the new id anyway (``issued_id``: a 409's cookie).
    issued: bool = False


def changed_and_logged_in() -> LazySession:
    session = loaded({"cart": []})
    session["cart"] = ["book"]
    session.regenerate(user_id="alice")
    return session


def changed() -> LazySession:
    session = loaded({"cart": [], "theme": "dark"})
    session["cart"].append("book")  # in place: found by comparing encodings
    return session


def logged_out() -> LazySession:
    session = LazySession(SID)  # a logout needs no load
    session.invalidate()
    return session


def logged_out_then_flashed() -> LazySession:
    session = loaded({"user": "x"})
    session.invalidate()
    session["flash"] = "bye"
    return session


def rotated_unloaded() -> LazySession:
    session = LazySession(SID)
    session.regenerate()
    return session


def rotated_dead_cookie() -> LazySession:
    session = LazySession(SID, ip="::1")
    session.regenerate(user_id=7)
    return session


def rotated_but_ended() -> LazySession:
    session = loaded({"a": 1})
    session.regenerate(user_id=KEEP)
    return session


def new_with_data() -> LazySession:
    session = LazySession(None, user_agent="ua", ip="10.0.0.1")
    session["x"] = 1
    return session


def unknown_cookie_with_data() -> LazySession:
    session = LazySession(SID)
    session._set_loaded(None)  # the store did not know it: never adopted
    session["x"] = 1
    return session


SAVE_CART = ("cart", "[]", '["book"]')

CASES = {
    "rotate-then-conflicting-save": Case(
        changed_and_logged_in,
        lambda new: [
            (rotate(new, '"alice"'), [1, b"", SINCE_US]),
            (cmd("ZADD", ALICE, SINCE_US, HANDLE), 1),
            (on_record("save", new, IDLE_MS, *SAVE_CART), [-1, b"cart"]),
        ],
        raises=(SessionConflictError, ["cart"]),
        issued=True,
    ),
    "rotate-then-save-of-a-session-ended-meanwhile": Case(
        changed_and_logged_in,
        lambda new: [
            (rotate(new, '"alice"'), [1, b"", SINCE_US]),
            (cmd("ZADD", ALICE, SINCE_US, HANDLE), 1),
            (on_record("save", new, IDLE_MS, *SAVE_CART), 0),
        ],
        raises=(SessionEndedError, ["cart"]),
        issued=True,
    ),
    "rotate-then-clean-save": Case(
        changed_and_logged_in,
        lambda new: [
            (rotate(new, '"alice"'), [1, b"", SINCE_US]),
            (cmd("ZADD", ALICE, SINCE_US, HANDLE), 1),
            (on_record("save", new, IDLE_MS, *SAVE_CART), [1, 2]),
        ],
        outcome="new",
    ),
    "clean-save": Case(
        changed,
        lambda new: [(on_record("save", digest(SID), IDLE_MS, *SAVE_CART), [1, 2])],
        outcome=Outcome(),
    ),
    "conflicting-save": Case(
        changed,
        lambda new: [(on_record("save", digest(SID), IDLE_MS, *SAVE_CART), [-1, b"cart"])],
        raises=(SessionConflictError, ["cart"]),
    ),
    "save-of-a-session-ended-meanwhile": Case(
        changed,
        lambda new: [(on_record("save", digest(SID), IDLE_MS, *SAVE_CART), 0)],
        raises=(SessionEndedError, ["cart"]),
    ),
    "logout": Case(
        logged_out,
        lambda new: [
            (on_record("delete", digest(SID)), [1, b'"alice"']),
            (cmd("ZREM", ALICE, HANDLE), 1),  # out of the user's list
        ],
        outcome=Outcome(clear=True),
    ),
    "logout-of-a-session-already-gone": Case(
        logged_out, lambda new: [(on_record("delete", digest(SID)), 0)], outcome=Outcome(clear=True)
    ),
    "logout-then-new-data": Case(
        logged_out_then_flashed,
        lambda new: [
            (on_record("delete", digest(SID)), [1, b""]),
            (create(new, "", "", "", "flash", '"bye"'), SINCE_US),
        ],
        outcome="new",
    ),
    "rotate-keeping-the-user-unloaded": Case(
        rotated_unloaded, lambda new: [(rotate(new, None), [1, b'"bob"', SINCE_US])], outcome="new"
    ),
    "rotate-of-a-dead-cookie-creates": Case(
        rotated_dead_cookie,
        lambda new: [
            (
                rotate(Same("rotated digest"), "7"),
                0,
            ),  # nothing to rotate: a session is created, even empty
            (create(new, "7", "", "::1"), SINCE_US),
            (cmd("ZADD", "session:user:{7}", SINCE_US, Like("[A-Za-z0-9_-]{22}")), 1),
        ],
        outcome="new",
    ),
    "rotate-of-a-session-ended-meanwhile": Case(
        rotated_but_ended,
        lambda new: [(rotate(new, None), 0)],
        raises=(SessionEndedError, ["a"]),
    ),
    "new-session-with-data": Case(
        new_with_data,
        lambda new: [(create(new, "", "ua", "10.0.0.1", "x", "1"), SINCE_US)],
        outcome="new",
    ),
    "unknown-cookie-with-data": Case(
        unknown_cookie_with_data,
        lambda new: [(create(new, "", "", "", "x", "1"), SINCE_US)],
        outcome="new",
    ),
    "untouched-session": Case(lambda: LazySession(SID), lambda new: [], outcome=Outcome()),
    "no-cookie-no-data": Case(lambda: LazySession(None), lambda new: [], outcome=Outcome()),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_commit_sends_exactly_this_and_says_which_cookie_goes_out(case: Case) -> None:
    session = case.session()
    new_digest = Same("new digest", Like("[0-9a-f]{64}"))
    steps = case.steps(new_digest)
    if case.raises is not None:
        error, keys = case.raises
        with pytest.raises(error) as raised:
            drive(commit(session, flows()), steps)
        assert type(raised.value) is error
        assert raised.value.keys == keys
    else:
        outcome = drive(commit(session, flows()), steps).result
        if case.outcome == "new":
            assert AN_ID.matches(outcome.session_id)
            assert digest(outcome.session_id) == new_digest.value  # the id the record knows
            assert outcome.session_id != SID  # never the old id again
            assert session.issued_id == outcome.session_id
        else:
            assert outcome == case.outcome
    if case.issued or case.outcome == "new":
        assert session.issued_id is not None
        assert digest(session.issued_id) == new_digest.value
    else:
        assert session.issued_id is None


def test_a_conflict_after_a_rotation_still_hands_out_the_new_id() -> None:
    """The 409 carries the new cookie: the old id stopped working at the rotation."""
    session = changed_and_logged_in()
    new_digest = Same("new digest")
    with pytest.raises(SessionConflictError):
        drive(commit(session, flows()), CASES["rotate-then-conflicting-save"].steps(new_digest))
    assert NEW_SECRET.matches(session.issued_id)
    assert session.user_id == "alice"  # the login itself happened


def test_redis_out_of_reach_is_session_unavailable_with_the_cause() -> None:
    session = changed_and_logged_in()
    new_digest = Same("new digest")
    with pytest.raises(SessionUnavailableError) as raised:
        drive(commit(session, flows()), [(rotate(new_digest, '"alice"'), BackendTimeout("slow"))])
    assert isinstance(raised.value.__cause__, BackendTimeout)
    assert session.issued_id is None  # nothing was rotated: the cookie stays


def test_a_login_whose_index_cannot_be_written_ends_the_new_session_then_is_unavailable() -> None:
    session = changed_and_logged_in()
    new_digest = Same("new digest")
    with pytest.raises(SessionUnavailableError):
        drive(
            commit(session, flows()),
            [
                (rotate(new_digest, '"alice"'), [1, b"", SINCE_US]),
                (cmd("ZADD", ALICE, SINCE_US, HANDLE), BackendTimeout("slow")),
                (on_record("delete", new_digest), [1, b'"alice"']),
            ],
        )


def test_unloaded_data_is_refused() -> None:
    session = LazySession(SID)
    with pytest.raises(SessionNotLoadedError):
        session["x"]
