"""The session store's saves, conflicts and rotations, op by op, with scripted replies.

Each test is the exact exchange with Redis (see ``flowdrive``): which script operation runs on
which record with which digests, and how the users' indexes follow a rotation. No server runs;
what the session script does (the per-key merge, the expiries) is Lua, tested on real servers
in tests/integration/test_sessions.py and, through the web, test_session_web.py.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest

from redkit.core.errors import BackendTimeout
from redkit.core.scripts import SERVER_TIME
from redkit.sessions.flows import SessionFlows
from redkit.sessions.model import Session, SessionConflictError
from support.flowdrive import Like, Same, cmd, drive, pipeline, script

HANDLE = "H" * 22
SID = f"{HANDLE}.{'s' * 43}"
RECORD = f"session:{{{HANDLE}}}"
IDLE_MS = 86_400_000
ALICE, BOB = 'session:user:{"alice"}', 'session:user:{"bob"}'
NEW_SECRET = Like(HANDLE + r"\.[A-Za-z0-9_-]{43}")  # the same handle, a new secret


def digest(session_id: str) -> str:
    """What the record holds of an id (the store never sends or keeps the id itself)."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def make_flows(**options: Any) -> SessionFlows:
    settings: dict[str, Any] = {
        "prefix": "session",
        "idle_ms": IDLE_MS,
        "absolute_ms": None,
        "max_per_user": None,
    }
    return SessionFlows(**{**settings, **options})


def on_record(op: Any, *args: Any, record: str = RECORD, clock: Any = SERVER_TIME) -> Any:
    """The session script's ``op`` on ``record``: ARGV[1] the clock (-1: the server's),
    ARGV[2] the operation, then its arguments."""
    return script("session", (record,), (clock, op, *args))


def read(flows: SessionFlows, data: dict[str, bytes], user: bytes = b"") -> Session:
    """The session as ``get`` returns it, from the record the script sends back."""
    fields: list[bytes] = [b"user", user, b"created", b"1000", b"seen", b"2000", b"abs", b"0"]
    for key, value in data.items():
        fields += [f"d:{key}".encode(), value]
    reply = [3000, IDLE_MS, *fields]
    session = drive(flows.get(SID, True), [(on_record("read", digest(SID), IDLE_MS, "1"), reply)])
    assert isinstance(session.result, Session)
    return session.result


# -- saves and their conflicts ---------------------------------------------------------------


def test_a_save_sends_each_changed_key_with_what_it_held_when_read() -> None:
    flows = make_flows()
    session = read(flows, {"cart": b'["book"]', "theme": b'"dark"', "seen": b"1"})
    session["cart"].append("pen")  # changed in place: found by comparing encodings
    session["lang"] = "fr"  # added
    del session["seen"]  # removed
    args = ("cart", '["book"]', '["book","pen"]', "lang", "", '"fr"', "seen", "1", "")
    saved = drive(
        flows.save(SID, session), [(on_record("save", digest(SID), IDLE_MS, *args), [1, 2])]
    )
    assert saved.result is True
    assert drive(flows.save(SID, session), []).result is True  # saved: nothing left to send


def test_a_key_another_request_changed_since_the_read_is_a_conflict_and_nothing_is_kept() -> None:
    flows = make_flows()
    session = read(flows, {"cart": b"[]"})
    session["cart"] = ["book"]
    save = on_record("save", digest(SID), IDLE_MS, "cart", "[]", '["book"]')
    with pytest.raises(SessionConflictError) as raised:
        drive(flows.save(SID, session), [(save, [-1, b"cart"])])
    assert raised.value.keys == ["cart"]
    # Not marked saved: the same change is sent again (after a re-read, it would merge).
    drive(flows.save(SID, session), [(save, [1, 3])])


def test_a_save_of_a_session_that_ended_meanwhile_is_false() -> None:
    flows = make_flows()
    session = read(flows, {})
    session["x"] = 1
    assert not drive(
        flows.save(SID, session), [(on_record("save", digest(SID), IDLE_MS, "x", "", "1"), 0)]
    ).result


def test_a_plain_mapping_replaces_the_data_after_reading_which_keys_to_remove() -> None:
    flows = make_flows()
    current = [3000, IDLE_MS, b"user", b"", b"d:old", b"1", b"d:kept", b"2"]
    driven = drive(
        flows.save(SID, {"kept": 2, "new": 3}),
        [
            (on_record("read", digest(SID), IDLE_MS, "0"), current),  # a read that touches nothing
            (on_record("save", digest(SID), IDLE_MS, "new", "", "3", "old", "1", ""), [1, 2]),
        ],
    )
    assert driven.result is True
    gone = drive(flows.save(SID, {"a": 1}), [(on_record("read", digest(SID), IDLE_MS, "0"), 0)])
    assert gone.result is False  # no session to replace: no save sent


def test_an_id_of_the_wrong_shape_is_refused_without_a_round_trip() -> None:
    flows = make_flows()
    for flow in (
        flows.save("not-an-id", {"a": 1}),
        flows.rotate("not-an-id", None, False),
        flows.get(SID[:-1], True),
    ):
        assert not drive(flow, []).result


# -- rotations -------------------------------------------------------------------------------


def rotate_op(new_id: Same, set_user: str, user: str, clock: Any = SERVER_TIME) -> Any:
    # The new id's digest is what the record will hold: checked against the id returned.
    return on_record("rotate", digest(SID), IDLE_MS, new_id, set_user, user, clock=clock)


def test_a_rotation_keeps_the_handle_and_the_record_and_changes_only_the_secret() -> None:
    flows = make_flows()
    new_digest = Same("new digest", Like("[0-9a-f]{64}"))
    driven = drive(flows.rotate(SID, None, False), [(rotate_op(new_digest, "0", ""), [1, b"", 7])])
    new_id = driven.result
    assert NEW_SECRET.matches(new_id)
    assert new_id != SID
    assert new_digest.value == digest(new_id)


def test_a_rotation_of_a_session_that_is_gone_gives_none_and_touches_no_index() -> None:
    flows = make_flows()
    rotate = rotate_op(Same("new digest"), "1", '"alice"')
    assert drive(flows.rotate(SID, "alice", True), [(rotate, 0)]).result is None


@pytest.mark.parametrize(
    ("user_id", "old_user", "index_ops"),
    [
        ("alice", b"", [(cmd("ZADD", ALICE, 1_700_000_000_000_123, HANDLE), 1)]),  # a login
        (
            "alice",
            b'"bob"',
            [  # handed over: into the new user's index, then out of the old one's
                (cmd("ZADD", ALICE, 1_700_000_000_000_123, HANDLE), 1),
                (cmd("ZREM", BOB, HANDLE), 1),
            ],
        ),
        ("alice", b'"alice"', []),  # the same user logs in again: the index has it
        (None, b'"bob"', [(cmd("ZREM", BOB, HANDLE), 1)]),  # handed to nobody: a logout
    ],
    ids=["login", "handover", "same-user", "to-nobody"],
)
def test_a_rotation_that_sets_the_user_moves_the_handle_between_their_indexes(
    user_id: str | None, old_user: bytes, index_ops: list[tuple[Any, Any]]
) -> None:
    flows = make_flows()
    user = "" if user_id is None else f'"{user_id}"'
    reply = [1, old_user, 1_700_000_000_000_123]  # the rotation's time, in µs: the index score
    driven = drive(
        flows.rotate(SID, user_id, True),
        [(rotate_op(Same("new digest"), "1", user), reply), *index_ops],
    )
    assert NEW_SECRET.matches(driven.result)


def test_a_login_whose_index_cannot_be_written_ends_the_new_session_and_raises() -> None:
    """Else the session would outlive "log out everywhere", missing from the user's index."""
    flows = make_flows()
    new_digest = Same("new digest")
    with pytest.raises(BackendTimeout):
        drive(
            flows.rotate(SID, "alice", True),
            [
                (rotate_op(new_digest, "1", '"alice"'), [1, b"", 5]),
                (cmd("ZADD", ALICE, 5, HANDLE), BackendTimeout("slow")),
                (on_record("delete", new_digest), [1, b'"alice"']),  # the id it would have issued
            ],
        )


def test_a_login_past_the_users_cap_revokes_their_oldest_session() -> None:
    flows = make_flows(max_per_user=1)
    oldest = "O" * 22
    driven = drive(
        flows.rotate(SID, "alice", True),
        [
            (rotate_op(Same("new digest"), "1", '"alice"'), [1, b"", 9]),
            (cmd("ZADD", ALICE, 9, HANDLE), 1),
            (cmd("ZRANGE", ALICE, 0, -1), [oldest.encode(), HANDLE.encode()]),
            (
                pipeline(cmd("HGET", f"session:{{{oldest}}}", "user"), cmd("HGET", RECORD, "user")),
                [b'"alice"', b'"alice"'],  # both still hers
            ),
            (pipeline(on_record("revoke", '"alice"', record=f"session:{{{oldest}}}")), [1]),
            (cmd("ZREM", ALICE, oldest), 1),
        ],
    )
    assert NEW_SECRET.matches(driven.result)


def test_with_the_client_clock_each_operation_carries_the_callers_time() -> None:
    # For a server that asks scripts not to read the clock (Upstash): ARGV[1] is this
    # process's time in epoch µs instead of -1.
    flows = make_flows(client_clock=True)
    clock, new_digest = Same("clock"), Same("new digest")
    before = time.time_ns() // 1000
    driven = drive(
        flows.rotate(SID, None, False),
        [(rotate_op(new_digest, "0", "", clock=clock), [1, b"", 1])],
    )
    after = time.time_ns() // 1000
    assert type(clock.value) is int
    assert before <= clock.value <= after
    assert new_digest.value == digest(driven.result)
