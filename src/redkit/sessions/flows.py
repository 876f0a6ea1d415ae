"""The session store's behaviour, written once as flows (see :mod:`redkit.core.flow`).

Keys, for ``prefix="session"``:

- ``session:{<handle>}``, a hash: one session record. The handle is the public half of the
  session id (``<handle>.<secret>``); the record holds only a SHA-256 digest of the whole id,
  so a dump of Redis holds no usable id. Rotation changes the secret and keeps the handle, so
  one record (one cluster slot) serves the session for its whole life and a rotation is one
  atomic script call.
- ``session:user:{<user id>}``, a sorted set: the handles of a user's sessions, scored by
  creation time. On a cluster it lives in the user's slot, apart from the records; every
  change to a record is atomic, and the index is kept in an order that never leaves a live
  session out of it (see :meth:`SessionFlows.create`).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from redkit.core import keys
from redkit.core.errors import BackendError, InvalidArgumentError
from redkit.core.flow import Flow
from redkit.core.ops import Pipeline, ScriptCall, command
from redkit.core.replies import as_int, as_text
from redkit.core.scripts import SERVER_TIME, clocked_script
from redkit.core.telemetry import Telemetry
from redkit.sessions.model import Session, SessionConflictError, SessionInfo, encode_value

__all__ = [
    "MAX_DATA_BYTES",
    "SessionFlows",
    "new_session_id",
    "user_id_from_text",
    "valid_session_id",
]

#: ``lua/session.lua`` behind the clock head: ``ARGV[1]`` the clock, ``ARGV[2]`` the operation.
_SCRIPT = clocked_script("redkit.sessions", "session")
#: 128 bits of handle and 256 bits of secret, URL-safe base64 without padding.
_HANDLE_BYTES = 16
_SECRET_BYTES = 32
_ID = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
#: The most data one session may hold, as JSON: a session is not a database.
MAX_DATA_BYTES = 1_000_000
#: Keep user agents and addresses to a sane size: they come from the client.
_MAX_META_CHARS = 512


def new_session_id() -> str:
    """A fresh session id: a 128-bit handle and a 256-bit secret, both from ``secrets``."""
    return f"{secrets.token_urlsafe(_HANDLE_BYTES)}.{secrets.token_urlsafe(_SECRET_BYTES)}"


def valid_session_id(value: object) -> bool:
    """Whether ``value`` has the shape of an id this store issues (nothing else is looked up)."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def user_id_from_text(text: str) -> str | int:
    """A user id typed as text (a form's field, a command's argument): its JSON, else the text.

    ``42`` names the int user id 42 and ``"42"`` the str one; ``alice``, not JSON, is the str
    ``alice``. The dashboard's forms and ``redkit sessions`` read a user this way.
    """
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, (str, int)) and not isinstance(value, bool) else text


def _user_json(user_id: object) -> str:
    if user_id is None:
        return ""
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or user_id == "":
        raise InvalidArgumentError(f"user_id must be a non-empty str or an int, got {user_id!r}")
    return json.dumps(user_id, ensure_ascii=False)


def _user_from(raw: Any) -> str | int | None:
    text = "" if raw is None else as_text(raw)
    user: str | int | None = json.loads(text) if text else None  # as _user_json wrote it
    return user


def _meta_text(value: str | None, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be str or None, got {type(value).__name__}")
    return value[:_MAX_META_CHARS]


def _encode_data(data: Mapping[str, Any] | None) -> list[str]:
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise InvalidArgumentError(f"session data must be a mapping, got {type(data).__name__}")
    pairs: list[str] = []
    for key, value in data.items():
        pairs += [key, encode_value(key, value)]
    _check_size(pairs)
    return pairs


def _check_size(parts: list[str]) -> None:
    size = sum(len(part.encode()) for part in parts)  # bytes, as Redis stores them
    if size > MAX_DATA_BYTES:
        raise InvalidArgumentError(
            f"session data of about {size} bytes exceeds the {MAX_DATA_BYTES}-byte limit"
        )


class SessionFlows:
    """Flows of a session store (see the module docs for the key layout)."""

    def __init__(
        self,
        *,
        prefix: str,
        idle_ms: int,
        absolute_ms: int | None,
        max_per_user: int | None,
        client_clock: bool = False,
    ) -> None:
        self.prefix = keys.check_prefix(prefix)
        self.idle_ms = idle_ms
        self.absolute_ms = absolute_ms
        self.max_per_user = max_per_user
        #: Send this process's time with each call instead of letting the script read the
        #: server's (for a server that asks scripts not to read the clock: Upstash).
        self.client_clock = client_clock
        #: Where sessions created, rotated, revoked... are reported (docs/stats.md).
        self.telemetry = Telemetry("sessions", self.prefix)

    # -- keys ------------------------------------------------------------------------------

    def record_key(self, handle: str) -> str:
        """The record of the session whose handle is ``handle``."""
        return f"{self.prefix}:{{{handle}}}"

    def user_key(self, user_json: str) -> str:
        """The index of one user's sessions (``user_json`` is the user id as JSON)."""
        return f"{self.prefix}:user:{keys.hash_tag(keys.escape(user_json))}"

    def _call(self, handle: str, op: str, *args: str | int) -> ScriptCall:
        """One operation on the record ``handle``: the clock, ``op``, then its arguments."""
        clock = time.time_ns() // 1000 if self.client_clock else SERVER_TIME
        return ScriptCall(_SCRIPT, (self.record_key(handle),), (clock, op, *args))

    # -- flows -----------------------------------------------------------------------------

    def create(
        self,
        data: Mapping[str, Any] | None,
        user_id: str | int | None,
        user_agent: str | None,
        ip: str | None,
    ) -> Flow[str]:
        """A new session holding ``data``; returns its id.

        The record is written first, then the user's index; when the index cannot be written
        the record is deleted and the error raised, so no session outlives "log out everywhere"
        by missing from the index. (The id is only handed out once both are written.)
        """
        user = _user_json(user_id)
        pairs = _encode_data(data)
        meta = (user, _meta_text(user_agent, "user_agent"), _meta_text(ip, "ip"))
        for _attempt in range(3):  # a handle collision is a 2**-128 event; retrying is cheap
            session_id = new_session_id()
            handle = session_id.partition(".")[0]
            created = yield self._call(
                handle, "create", _digest(session_id), self.idle_ms, self.absolute_ms or 0,
                *meta, *pairs,
            )  # fmt: skip
            if as_int(created):
                break
        else:  # pragma: no cover - three 128-bit collisions in a row
            raise BackendError("could not allocate a session handle")
        if user:
            try:
                yield from self._index(user, handle, as_int(created))
            except Exception:
                yield self._call(handle, "delete", _digest(session_id))
                raise
        self.telemetry.count("created")
        return session_id

    def _index(self, user: str, handle: str, since_us: int) -> Flow[None]:
        """Add ``handle`` to the user's index; evict the oldest beyond ``max_per_user``."""
        index = self.user_key(user)
        yield command("ZADD", index, since_us, handle)
        if self.max_per_user is None:
            return
        handles = yield from self._live_handles(user)
        excess = len(handles) - self.max_per_user
        if excess > 0:
            oldest = [h for h in handles if h != handle][:excess]
            yield from self._revoke(user, oldest)

    def _live_handles(self, user: str) -> Flow[list[str]]:
        """The user's indexed handles, oldest first, without those no longer theirs.

        A handle leaves the index when its session ended, expired or went to another user.
        """
        index = self.user_key(user)
        handles = [as_text(h) for h in (yield command("ZRANGE", index, 0, -1))]
        if not handles:
            return []
        owners = yield Pipeline(tuple(command("HGET", self.record_key(h), "user") for h in handles))
        dead = [
            h
            for h, owner in zip(handles, owners, strict=True)
            if owner is None or isinstance(owner, Exception) or as_text(owner) != user
        ]
        if dead:
            yield command("ZREM", index, *dead)
        return [h for h in handles if h not in dead]

    def get(self, session_id: object, touch: bool) -> Flow[Session | None]:
        """The session, or ``None`` for an id that is malformed, unknown, expired or revoked."""
        if not valid_session_id(session_id):
            return None
        assert isinstance(session_id, str)
        handle = session_id.partition(".")[0]
        reply = yield self._call(
            handle, "read", _digest(session_id), self.idle_ms, "1" if touch else "0"
        )
        if not isinstance(reply, list):
            self.telemetry.count("missing")
            return None
        self.telemetry.count("loaded")
        return _session(session_id, reply)

    def save(self, session_id: str, data: Mapping[str, Any]) -> Flow[bool]:
        """Store what changed in ``data``; ``False`` when the session no longer exists.

        ``data`` is best the :class:`Session` that :meth:`get` returned: then only the keys
        changed since that read are sent, and a key that another request changed meanwhile
        raises :class:`SessionConflictError`. Any other mapping becomes the session's whole
        data (the session is read first to find the keys to remove).
        """
        if not valid_session_id(session_id):
            return False
        session = data if isinstance(data, Session) else None
        if session is None:
            if not isinstance(data, Mapping):
                raise InvalidArgumentError(
                    f"session data must be a mapping, got {type(data).__name__}"
                )
            current = yield from self.get(session_id, touch=False)
            if current is None:
                return False
            replacement = dict(data)
            current.clear()
            current.update(replacement)
            session = current
        encoded = session.encoded()
        changes = session.changes(encoded)
        if not changes:
            return True
        _check_size([*encoded, *encoded.values()])  # the whole session, not just this change
        args: list[str] = []
        for key, before, now in changes:
            args += [key, before or "", now or ""]
        handle = session_id.partition(".")[0]
        reply = yield self._call(handle, "save", _digest(session_id), self.idle_ms, *args)
        if not isinstance(reply, list):
            return False
        if as_int(reply[0]) < 0:
            self.telemetry.count("conflicts")
            raise SessionConflictError([as_text(k) for k in reply[1:]])
        session.mark_saved()
        return True

    def touch(self, session_id: str) -> Flow[bool]:
        """Extend the session's idle time (never past its absolute deadline)."""
        if not valid_session_id(session_id):
            return False
        handle = session_id.partition(".")[0]
        return as_int((yield self._call(handle, "touch", _digest(session_id), self.idle_ms))) == 1

    def rotate(
        self, session_id: str, user_id: str | int | None, set_user: bool
    ) -> Flow[str | None]:
        """Give the session a new id, atomically: the old id stops working at once.

        With ``set_user`` the session also changes hands (a login): it joins the new user's
        index. Returns ``None`` when the session does not exist.
        """
        if not valid_session_id(session_id):
            return None
        user = _user_json(user_id) if set_user else ""
        handle = session_id.partition(".")[0]
        new_id = f"{handle}.{secrets.token_urlsafe(_SECRET_BYTES)}"
        reply = yield self._call(
            handle, "rotate", _digest(session_id), self.idle_ms, _digest(new_id),
            "1" if set_user else "0", user,
        )  # fmt: skip
        if not isinstance(reply, list):
            return None
        old_user = as_text(reply[1])
        if set_user and user != old_user:
            if user:
                try:
                    yield from self._index(user, handle, as_int(reply[2]))
                except Exception:
                    yield self._call(handle, "delete", _digest(new_id))
                    raise
            if old_user:  # no longer theirs: out of their list and their cap
                yield command("ZREM", self.user_key(old_user), handle)
        self.telemetry.count("rotated")
        return new_id

    def delete(self, session_id: str) -> Flow[bool]:
        """Delete the session (a logout); ``False`` when it did not exist."""
        if not valid_session_id(session_id):
            return False
        handle = session_id.partition(".")[0]
        reply = yield self._call(handle, "delete", _digest(session_id))
        if not isinstance(reply, list):
            return False
        user = as_text(reply[1])
        if user:
            yield command("ZREM", self.user_key(user), handle)
        self.telemetry.count("deleted")
        return True

    def list_user_sessions(self, user_id: str | int) -> Flow[list[SessionInfo]]:
        """The user's live sessions, oldest first."""
        user = _user_json(user_id)
        if not user:
            raise InvalidArgumentError("user_id must not be None")
        index = self.user_key(user)
        handles = [as_text(h) for h in (yield command("ZRANGE", index, 0, -1))]
        if not handles:
            return []
        replies = yield Pipeline(tuple(self._call(h, "info", user) for h in handles))
        sessions: list[SessionInfo] = []
        gone: list[str] = []
        for handle, reply in zip(handles, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            if not isinstance(reply, list):
                gone.append(handle)
                continue
            now, ttl, deadline, created, seen, agent, ip = reply
            sessions.append(
                SessionInfo(
                    handle=handle,
                    user_id=user_id,
                    created_at=as_int(created) / 1000,
                    last_seen_at=as_int(seen) / 1000,
                    expires_at=(as_int(now) + max(as_int(ttl), 0)) / 1000,
                    absolute_expires_at=as_int(deadline) / 1000 if as_int(deadline) else None,
                    user_agent=as_text(agent) or None,
                    ip=as_text(ip) or None,
                )
            )
        if gone:
            yield command("ZREM", index, *gone)
        return sessions

    def revoke_session(self, user_id: str | int, handle: str) -> Flow[bool]:
        """End one of the user's sessions, named by its handle (from the listing)."""
        user = _user_json(user_id)
        if not user:
            raise InvalidArgumentError("user_id must not be None")
        if not isinstance(handle, str) or not re.fullmatch(r"[A-Za-z0-9_-]{22}", handle):
            return False
        return (yield from self._revoke(user, [handle])) == 1

    def revoke_user_sessions(self, user_id: str | int, keep: str | None) -> Flow[int]:
        """End every session of the user ("log out everywhere"), but ``keep`` (a session id).

        A session created while this runs may survive it: it was a login after the call.
        """
        user = _user_json(user_id)
        if not user:
            raise InvalidArgumentError("user_id must not be None")
        kept = keep.partition(".")[0] if isinstance(keep, str) and valid_session_id(keep) else None
        index = self.user_key(user)
        handles = [as_text(h) for h in (yield command("ZRANGE", index, 0, -1))]
        return (yield from self._revoke(user, [h for h in handles if h != kept]))

    def _revoke(self, user: str, handles: list[str]) -> Flow[int]:
        if not handles:
            return 0
        replies = yield Pipeline(tuple(self._call(h, "revoke", user) for h in handles))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        yield command("ZREM", self.user_key(user), *handles)
        ended = sum(as_int(reply) for reply in replies)
        if ended:
            self.telemetry.count("revoked", ended)
        return ended


def _session(session_id: str, reply: list[Any]) -> Session:
    now, ttl, *flat = reply
    fields = {as_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
    original = {name[2:]: as_text(raw) for name, raw in fields.items() if name.startswith("d:")}
    data = {key: json.loads(text) for key, text in original.items()}
    deadline = as_int(fields.get("abs", 0))
    return Session(
        data,
        id=session_id,
        original=original,
        user_id=_user_from(fields.get("user")),
        created_at=as_int(fields.get("created", 0)) / 1000,
        last_seen_at=as_int(fields.get("seen", 0)) / 1000,
        expires_at=(as_int(now) + max(as_int(ttl), 0)) / 1000,
        absolute_expires_at=deadline / 1000 if deadline else None,
        user_agent=as_text(fields.get("ua", b"")) or None,
        ip=as_text(fields.get("ip", b"")) or None,
    )
