"""The session store on real servers: standalone and cluster, sync and async (see conftest)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from redkit.core.errors import BackendError, InvalidArgumentError, InvalidKeyError
from redkit.sessions import AsyncSessionStore, Session, SessionConflictError, SessionStore
from redkit.sessions.flows import valid_session_id
from support.backends import BackendCase, Blocking, owned_backend
from support.loop import LoopThread
from support.probes import closed_port


def make_store(backend: BackendCase, **options: Any) -> Any:
    facade = AsyncSessionStore if backend.is_async else SessionStore
    return Blocking(facade(backend.conn, **options), backend)


def test_create_get_save_delete_round_trip(backend: BackendCase) -> None:
    store = make_store(backend)
    data = {"name": "Zoë", "cart": [1, 2], "prefs": {"dark": True}, "n": 1.5, "none": None}
    sid = store.create(data, user_id=42, user_agent="curl/8", ip="203.0.113.9")
    session = store.get(sid)
    assert isinstance(session, Session)
    assert dict(session) == data
    assert (session.id, session.user_id, session.user_agent, session.ip) == (
        sid, 42, "curl/8", "203.0.113.9",
    )  # fmt: skip
    now = time.time()
    assert abs(session.created_at - now) < 60
    assert 23.9 * 3600 < session.expires_at - now <= 24 * 3600 + 60  # idle: 24 h by default
    assert session.absolute_expires_at is not None
    assert 29.9 * 86400 < session.absolute_expires_at - now <= 30 * 86400 + 60
    session["cart"].append(3)  # changed in place: found by comparing encodings
    del session["none"]
    session["new"] = "x"
    assert store.save(sid, session)
    assert dict(store.get(sid)) == {"name": "Zoë", "cart": [1, 2, 3], "prefs": {"dark": True},
                                    "n": 1.5, "new": "x"}  # fmt: skip
    assert store.delete(sid)
    assert store.get(sid) is None
    assert not store.delete(sid)
    assert not store.save(sid, {"a": 1})
    assert backend.all_keys() == set()  # the record and the user's index are gone


def test_ids_are_long_random_and_never_stored(backend: BackendCase) -> None:
    store = make_store(backend)
    ids = {store.create({"i": i}) for i in range(20)}
    assert len(ids) == 20
    for sid in ids:
        _handle, _, secret = sid.partition(".")
        assert valid_session_id(sid)
        assert len(secret) == 43  # 256 bits, URL-safe base64
    # A dump of Redis holds no usable id: neither the id nor its secret half appears.
    dump = ""
    for key in backend.all_keys():
        dump += key
        dump += repr(backend.admin.hgetall(key))
    for sid in ids:
        assert sid not in dump
        assert sid.partition(".")[2] not in dump
        assert sid.partition(".")[0] in dump  # the public handle names the record


def test_a_save_without_changes_sends_nothing(backend: BackendCase) -> None:
    store = make_store(backend)
    sid = store.create({"a": 1})
    session = store.get(sid)
    backend.reset_command_stats()
    assert store.save(sid, session)
    session["a"] = 1  # the same value again is no change
    assert store.save(sid, session)
    assert backend.command_calls("evalsha", "eval") == 0
    session["a"] = 2
    assert store.save(sid, session)
    assert store.save(sid, session)  # saved: nothing left to send
    assert backend.command_calls("evalsha", "eval") == 1


def test_concurrent_saves_merge_by_key_and_report_a_conflict(backend: BackendCase) -> None:
    store = make_store(backend)
    sid = store.create({"theme": "light", "cart": []})
    first, second = store.get(sid), store.get(sid)
    first["theme"] = "dark"
    second["cart"] = ["book"]
    assert store.save(sid, first)
    assert store.save(sid, second)  # different keys: both writes survive
    assert dict(store.get(sid)) == {"theme": "dark", "cart": ["book"]}

    third, fourth = store.get(sid), store.get(sid)
    third["theme"] = "blue"
    fourth["theme"] = "green"
    fourth["other"] = 1
    assert store.save(sid, third)
    with pytest.raises(SessionConflictError) as caught:
        store.save(sid, fourth)
    assert caught.value.keys == ["theme"]
    assert dict(store.get(sid)) == {"theme": "blue", "cart": ["book"]}  # nothing of it written

    # Two writers that both turn a 1 into a 2 may each have meant "one more": the later one
    # is told, not merged into the first.
    fifth, sixth = store.get(sid), store.get(sid)
    fifth["theme"] = sixth["theme"] = "red"
    assert store.save(sid, fifth)
    with pytest.raises(SessionConflictError):
        store.save(sid, sixth)


def test_no_write_is_lost_when_many_writers_retry_on_conflict(backend: BackendCase) -> None:
    facade = AsyncSessionStore if backend.is_async else SessionStore
    raw = facade(backend.conn)
    store = Blocking(raw, backend)
    sid = store.create({"count": 0})
    writers, increments = 6, 15

    def bump_sync() -> None:
        for _ in range(increments):
            while True:
                session = raw.get(sid)
                session["count"] += 1
                try:
                    raw.save(sid, session)
                    break
                except SessionConflictError:
                    continue

    async def bump_async() -> None:
        for _ in range(increments):
            while True:
                session = await raw.get(sid)
                session["count"] += 1
                await asyncio.sleep(0)  # let the other writers interleave
                try:
                    await raw.save(sid, session)
                    break
                except SessionConflictError:
                    continue

    if backend.is_async:

        async def all_writers() -> None:
            await asyncio.gather(*(bump_async() for _ in range(writers)))

        backend.loop.run(all_writers())
    else:
        with ThreadPoolExecutor(writers) as pool:
            for future in [pool.submit(bump_sync) for _ in range(writers)]:
                future.result()
    assert store.get(sid)["count"] == writers * increments


def test_a_plain_mapping_replaces_the_data(backend: BackendCase) -> None:
    store = make_store(backend)
    sid = store.create({"a": 1, "b": 2})
    assert store.save(sid, {"b": 3, "c": [4]})
    assert dict(store.get(sid)) == {"b": 3, "c": [4]}


def test_rotation_keeps_the_data_and_kills_the_old_id(backend: BackendCase) -> None:
    store = make_store(backend)
    anonymous = store.create({"cart": ["book"]})
    keys_before = backend.all_keys()
    logged_in = store.rotate(anonymous, user_id="alice")
    assert logged_in is not None
    assert logged_in != anonymous
    assert logged_in.partition(".")[0] == anonymous.partition(".")[0]  # one record, one slot
    assert store.get(anonymous) is None
    assert not store.save(anonymous, {"x": 1})
    assert store.rotate(anonymous) is None
    session = store.get(logged_in)
    assert (dict(session), session.user_id) == ({"cart": ["book"]}, "alice")
    assert keys_before < backend.all_keys()  # the same record, plus alice's index
    assert [info.handle for info in store.list_user_sessions("alice")] == [session.handle]
    again = store.rotate(logged_in)  # the user is kept
    assert store.get(again).user_id == "alice"


def test_idle_expiry_slides_and_the_absolute_deadline_does_not(backend: BackendCase) -> None:
    store = make_store(backend, idle_ttl="1 s", absolute_ttl="2500 ms")
    sid = store.create({"a": 1})
    for _ in range(4):  # activity keeps it alive past its idle time ...
        time.sleep(0.4)
        assert store.touch(sid)
    assert store.get(sid) is not None
    session = store.get(sid)
    assert session.absolute_expires_at is not None
    assert session.expires_at <= session.absolute_expires_at + 0.01
    time.sleep(max(0.0, session.absolute_expires_at - time.time()) + 0.3)
    assert store.get(sid) is None  # ... but not past the absolute deadline
    assert not store.touch(sid)

    idle = store.create({"b": 2})
    time.sleep(1.4)
    assert store.get(idle) is None  # unused past its idle time


def test_a_read_without_touch_does_not_extend(backend: BackendCase) -> None:
    store = make_store(backend, idle_ttl="10 s")
    sid = store.create({})
    time.sleep(0.3)
    before = store.get(sid, touch=False).expires_at
    time.sleep(0.3)
    assert store.get(sid, touch=False).expires_at == pytest.approx(before, abs=0.05)
    assert store.get(sid).expires_at > before + 0.2


def test_user_index_lists_revokes_one_and_logs_out_everywhere(backend: BackendCase) -> None:
    store = make_store(backend)
    phone = store.create({}, user_id=7, user_agent="phone", ip="198.51.100.1")
    laptop = store.create({}, user_id=7, user_agent="laptop", ip="198.51.100.2")
    tablet = store.create({}, user_id=7, user_agent="tablet")
    other = store.create({}, user_id=8)
    listed = store.list_user_sessions(7)
    assert [info.user_agent for info in listed] == ["phone", "laptop", "tablet"]
    assert listed[0].ip == "198.51.100.1"
    assert listed[2].ip is None
    assert all(info.user_id == 7 and info.expires_at > time.time() for info in listed)
    # A handle names a session in a listing; it unlocks nothing, and only its user revokes it.
    assert not store.revoke_session(8, listed[0].handle)
    assert store.get(phone) is not None
    assert store.revoke_session(7, listed[0].handle)
    assert store.get(phone) is None
    assert store.revoke_user_sessions(7, keep=laptop) == 1  # log out everywhere else
    assert store.get(tablet) is None
    assert store.get(laptop) is not None
    assert store.revoke_user_sessions(7) == 1
    assert store.get(laptop) is None
    assert store.list_user_sessions(7) == []
    assert store.get(other) is not None  # another user's session is untouched


def test_sessions_per_user_are_capped_oldest_first(backend: BackendCase) -> None:
    store = make_store(backend, max_sessions_per_user=2)
    first = store.create({}, user_id="u")
    second = store.create({}, user_id="u")
    third = store.create({}, user_id="u")
    assert store.get(first) is None
    assert store.get(second) is not None
    assert store.get(third) is not None
    assert len(store.list_user_sessions("u")) == 2
    anonymous = store.create({})
    fourth = store.rotate(anonymous, user_id="u")  # a login counts too
    assert store.get(second) is None
    assert store.get(fourth) is not None


def test_expired_sessions_leave_the_index(backend: BackendCase) -> None:
    store = make_store(backend, idle_ttl="300 ms")
    store.create({}, user_id=1)
    time.sleep(0.6)
    assert store.list_user_sessions(1) == []
    assert backend.all_keys() == set()  # the dangling index entry was pruned


def test_bad_ids_are_refused_without_asking_redis(backend: BackendCase) -> None:
    store = make_store(backend)
    backend.reset_command_stats()
    for bad in [None, "", "x", "a" * 66, "ü" * 66, "abc.def", 42, b"bytes", "*", "a.b" * 30]:
        assert store.get(bad) is None
        assert not store.touch(bad)
        assert store.rotate(bad) is None
        assert not store.delete(bad)
    well_formed_unknown = "A" * 22 + "." + "B" * 43
    assert backend.command_calls("evalsha", "eval") == 0
    assert store.get(well_formed_unknown) is None  # a fixation attempt: never adopted
    assert backend.all_keys() == set()


def test_values_that_cannot_be_stored_are_clear_errors(backend: BackendCase) -> None:
    store = make_store(backend)
    for data in [{"when": object()}, {"x": float("nan")}, {1: "int key"}, {"": 1}, ["a"]]:
        with pytest.raises(InvalidArgumentError):
            store.create(data)
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.create({"big": "x" * 1_100_000})
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.create({"big": "é" * 600_000})  # 600,000 characters, 1.2 MB encoded
    sid = store.create({"ok": 1})
    session = store.get(sid)
    session["bad"] = {1, 2}
    with pytest.raises(InvalidArgumentError, match="'bad'"):
        store.save(sid, session)
    assert dict(store.get(sid)) == {"ok": 1}  # nothing lost, nothing half-written
    for user in [True, 1.5, "", b"u"]:
        with pytest.raises(InvalidArgumentError):
            store.create({}, user_id=user)
    assert len(backend.all_keys()) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"idle_ttl": "2 h", "absolute_ttl": "1 h"},
        {"idle_ttl": 0},
        {"max_sessions_per_user": 0},
        {"timeout": -1},
        {"prefix": "a*b"},
    ],
)
def test_bad_configuration_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises((InvalidArgumentError, InvalidKeyError)):
        SessionStore("redis://127.0.0.1:1", **options)


def test_key_layout_keeps_a_session_in_one_slot(backend: BackendCase) -> None:
    store = make_store(backend, prefix="app:sess")
    sid = store.create({"a": 1}, user_id="bob@example.com")
    handle = sid.partition(".")[0]
    assert backend.all_keys() == {f"app:sess:{{{handle}}}", 'app:sess:user:{"bob@example.com"}'}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_is_down_fails_closed(mode: str, loop_thread: LoopThread) -> None:
    url = f"redis://127.0.0.1:{closed_port()}"
    with owned_backend(url, mode, loop_thread) as down:
        store = make_store(down)
        with pytest.raises(BackendError):
            store.get("A" * 22 + "." + "B" * 43)
        with pytest.raises(BackendError):
            store.create({"a": 1})


def test_the_size_limit_holds_over_many_saves(backend: BackendCase) -> None:
    store = make_store(backend)
    sid = store.create({"a": "x" * 400_000})
    session = store.get(sid)
    session["b"] = "y" * 400_000
    assert store.save(sid, session)
    session["c"] = "z" * 400_000  # 400 KB more: each change is small, the session is not
    with pytest.raises(InvalidArgumentError, match="limit"):
        store.save(sid, session)
    assert sorted(store.get(sid)) == ["a", "b"]


def test_a_session_handed_to_another_user_leaves_the_first_ones_index(backend: BackendCase) -> None:
    store = make_store(backend, max_sessions_per_user=2)
    shared = store.create({}, user_id="ann")
    kept = store.create({}, user_id="ann")
    moved = store.rotate(shared, user_id="ben")
    handle = shared.partition(".")[0]
    assert backend.admin.zrange('session:user:{"ann"}', 0, -1) == [kept.partition(".")[0].encode()]
    assert backend.admin.zrange('session:user:{"ben"}', 0, -1) == [handle.encode()]
    assert [info.user_id for info in store.list_user_sessions("ben")] == ["ben"]
    assert len(store.list_user_sessions("ann")) == 1
    newer = store.create({}, user_id="ann")  # ann holds two again: nothing is evicted
    assert store.get(kept) is not None
    assert store.get(newer) is not None
    assert store.revoke_user_sessions("ann") == 2
    assert store.get(moved) is not None  # ben's session is not ann's to end
    anonymous = store.rotate(moved, user_id=None)  # handed to nobody: out of ben's list
    assert store.list_user_sessions("ben") == []
    assert store.get(anonymous).user_id is None


def test_over_rest_the_scripts_take_the_callers_time_instead_of_reading_time(
    backend: BackendCase,
) -> None:
    """Upstash asks scripts not to read the clock: over REST the store sends its own time."""
    store = make_store(backend)
    backend.reset_command_stats()
    sid = store.create({"a": 1}, user_id="ann")
    session = store.get(sid)
    assert session is not None
    session["a"] = 2
    assert store.save(sid, session)
    assert store.touch(sid)
    (listed,) = store.list_user_sessions("ann")
    assert abs(listed.created_at - time.time()) < 60  # either clock: the right time
    assert listed.last_seen_at >= listed.created_at
    reads_of_the_clock = backend.command_calls("time")
    if backend.is_rest:
        assert reads_of_the_clock == 0
    else:
        assert reads_of_the_clock >= 5  # stock Redis: the server's own clock, once a call
