"""What the web adapters share, free of any web framework (they live in :mod:`redkit.web`).

- :class:`LazySession`: a request's session, a mutable mapping that reads the store only when
  first used, and that records a login (:meth:`~LazySession.regenerate`) or a logout
  (:meth:`~LazySession.invalidate`) for the response to carry out.
- :func:`commit`: what to do with it when the response starts, written once as a flow of the
  store's own flows (:class:`~redkit.sessions.flows.SessionFlows`); :func:`commit_sync` and
  :func:`commit_async` run it with the store's runner, as one flow.
- The errors both adapters turn into responses, and those responses' JSON bodies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

from redkit.core.errors import BackendError, RedkitError
from redkit.core.flow import Flow
from redkit.sessions.flows import SessionFlows
from redkit.sessions.model import KEEP, Keep, Session, SessionConflictError
from redkit.sessions.store import AsyncSessionStore, SessionStore

__all__ = [
    "KEEP",
    "LazySession",
    "Outcome",
    "SessionEndedError",
    "SessionNotLoadedError",
    "SessionUnavailableError",
    "commit",
    "commit_async",
    "commit_sync",
    "error_response",
]


class SessionNotLoadedError(RedkitError, RuntimeError):
    """The session was used before it was loaded (ASGI: reading it needs an ``await``)."""


class SessionUnavailableError(BackendError):
    """Redis could not load or save the request's session; the middleware answers 503.

    The store's own error (:class:`~redkit.errors.BackendTimeout`, ...) is its ``__cause__``.
    """


class SessionEndedError(SessionConflictError):
    """The session ended, or got a new id, while this request was changing it.

    A concurrent request logged it out, rotated it, or it expired: nothing of this request's
    changes was stored. The middleware answers 409, like any other conflict.
    """

    def __init__(self, keys: list[str]) -> None:
        RedkitError.__init__(
            self,
            "the session ended or got a new id during this request; its changes were not saved",
        )
        self.keys = keys


@dataclass(frozen=True)
class Outcome:
    """What the response must carry after :func:`commit`.

    Attributes:
        session_id: a new id to hand to the client (the session was created or rotated).
        clear: the client must drop its cookie (the session was invalidated).

    """

    session_id: str | None = None
    clear: bool = False


class LazySession(MutableMapping[str, Any]):
    """A request's session: the data methods of a ``dict``, read from the store on first use.

    A request that never uses its session costs no Redis call. A request without a cookie
    (or with a cookie that is not a well-formed session id) starts with an empty session and
    costs none either. Changes are stored when the response starts: only the keys that
    changed, and only if something did. An unknown, expired or revoked id is never reused:
    writing to such a session creates a new one, with a new id.
    """

    def __init__(
        self, cookie_id: str | None, *, user_agent: str | None = None, ip: str | None = None
    ) -> None:
        #: The id that may name a stored session: the cookie's, until shown dead or ended.
        self._source_id = cookie_id
        #: The stored session, once loaded (``None``: there is none).
        self._record: Session | None = None
        #: The data; ``None`` until loaded. The record itself when there is one.
        self._contents: dict[str, Any] | None = {} if cookie_id is None else None
        self._regenerate = False
        self._new_user: str | int | Keep | None = KEEP
        self._ended_id: str | None = None
        self._issued: str | None = None
        self._user_agent = user_agent
        self._ip = ip
        #: Whether the request used the session (the response then varies by cookie).
        self.accessed = False

    # -- loading ---------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        """Whether the data is at hand (always, for a request that brought no session id)."""
        return self._contents is not None

    def _cookie_to_load(self) -> str | None:
        """The id to read from the store, or ``None`` when the data is already at hand."""
        return None if self.loaded else self._source_id

    def _set_loaded(self, record: Session | None) -> None:
        if self.loaded:  # a second, concurrent load: the first one won
            return
        self._record = record
        if record is None:
            self._source_id = None  # unknown, expired or revoked: never adopted
            self._contents = {}
        else:
            self._contents = record

    def _load_now(self) -> dict[str, Any]:
        """Load the data without waiting, or say why it cannot be done (adapters decide)."""
        raise SessionNotLoadedError("the session is not loaded")

    def _data(self) -> dict[str, Any]:
        self.accessed = True
        if self._contents is None:
            return self._load_now()
        return self._contents

    # -- metadata --------------------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The session's id: ``None`` for a session not stored yet; the new one once issued."""
        self._data()
        if self._issued is not None:
            return self._issued
        return None if self._record is None else self._record.id

    @property
    def issued_id(self) -> str | None:
        """The id this response hands out (the session was created or rotated), if any."""
        return self._issued

    @property
    def user_id(self) -> Any:
        """The session's user (the one it is being handed to, after :meth:`regenerate`)."""
        self._data()
        if self._regenerate and not isinstance(self._new_user, Keep):
            return self._new_user
        return None if self._record is None else self._record.user_id

    @property
    def is_new(self) -> bool:
        """Whether no stored session stands behind this one (yet)."""
        self._data()
        return self._record is None

    @property
    def record(self) -> Session | None:
        """The stored session as read (with its metadata), or ``None`` for a new one."""
        self._data()
        return self._record

    # -- login and logout ------------------------------------------------------------------

    def regenerate(self, *, user_id: str | int | Keep | None = KEEP) -> None:
        """Give the session a new id when the response starts; call it on every login.

        The data stays; the old id stops working at once, so an id planted before the login
        is worthless after it. ``user_id`` hands the session to that user (``None``: to no
        one). A session that does not exist yet is created, even when empty.
        """
        self._regenerate = True
        self._new_user = user_id

    def invalidate(self) -> None:
        """End the session (a logout): the response deletes it from the store and the cookie.

        The data is emptied now; anything stored in it afterwards goes to a new session.
        """
        if self._source_id is not None:
            self._ended_id = self._source_id
        self._source_id = None
        self._record = None
        self._contents = {}
        self._regenerate = False
        self._new_user = KEEP
        self.accessed = True

    @property
    def modified(self) -> bool:
        """Whether the response will store anything (data changes, a login or a logout)."""
        if self._regenerate or self._ended_id is not None:
            return True
        if self._record is not None:
            return self._record.modified
        return bool(self._contents)

    @modified.setter
    def modified(self, value: bool) -> None:
        # Accepted for Flask's convention (``session.modified = True`` after changing a
        # nested value); changes are found by comparing values, nested ones included.
        pass

    # -- the mapping -----------------------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __contains__(self, key: object) -> bool:
        return key in self._data()

    def __repr__(self) -> str:
        # Never the id: it is a credential, and reprs end up in logs.
        if self._contents is None:
            return f"<{type(self).__name__} not loaded>"
        return f"<{type(self).__name__} keys={sorted(self._contents)!r}>"


def commit(session: LazySession, flows: SessionFlows) -> Flow[Outcome]:
    """Carry out what the request did to its session: the store's flows, then the cookie.

    One flow of the store's own flows (``flows`` is the store's :class:`SessionFlows`), run
    by the store's runner: :func:`commit_sync` and :func:`commit_async`.

    Raises :class:`SessionConflictError` (or :class:`SessionEndedError`) when a concurrent
    request got in the way; nothing of this request's data is stored then. Raises
    :class:`SessionUnavailableError` when Redis cannot answer.
    """
    try:
        return (yield from _commit(session, flows))
    except BackendError as exc:
        raise SessionUnavailableError(f"session store: {exc}") from exc


def _commit(session: LazySession, flows: SessionFlows) -> Flow[Outcome]:
    if session._ended_id is not None:
        yield from flows.delete(session._ended_id)
    record, contents = session._record, session._contents
    agent, ip = session._user_agent, session._ip
    if session._regenerate:
        user = session._new_user
        owner = None if isinstance(user, Keep) else user
        if session._source_id is not None:
            keep_user = isinstance(user, Keep)
            new_id = yield from flows.rotate(session._source_id, owner, not keep_user)
            if new_id is not None:
                # The old id is dead from here on: whatever happens to the save below, the
                # client must get the new one (a 409 still carries the cookie).
                session._issued = new_id
                if record is not None and record.modified:
                    yield from _save(flows, new_id, record)
                return _issue(session, new_id)
            if record is not None:  # it was there when read: someone else ended it since
                raise SessionEndedError(sorted(record))
        created = yield from flows.create(dict(contents or {}), owner, agent, ip)
        return _issue(session, created)
    if record is not None:
        if record.modified:
            yield from _save(flows, record.id, record)
        return Outcome()
    if contents:  # a new session that got data: store it (an empty one is not worth a key)
        created = yield from flows.create(dict(contents), None, agent, ip)
        return _issue(session, created)
    return Outcome(clear=session._ended_id is not None)


def _save(flows: SessionFlows, session_id: str, record: Session) -> Flow[None]:
    changed = sorted({key for key, _before, _now in record.changes()})
    if not (yield from flows.save(session_id, record)):
        raise SessionEndedError(changed)


def _issue(session: LazySession, session_id: str) -> Outcome:
    session._issued = session_id
    return Outcome(session_id=session_id)


# The store's runner and flows are the sessions package's own: the commit is one flow of them.
def commit_sync(store: SessionStore, session: LazySession) -> Outcome:
    """Run :func:`commit` on a :class:`~redkit.sessions.SessionStore`."""
    return store._run(commit(session, store._flows))


async def commit_async(store: AsyncSessionStore, session: LazySession) -> Outcome:
    """Run :func:`commit` on an :class:`~redkit.sessions.AsyncSessionStore`."""
    return await store._run(commit(session, store._flows))


def error_response(exc: SessionUnavailableError | SessionConflictError) -> tuple[int, bytes]:
    """The status and JSON body that answer a request whose session failed.

    503 when Redis cannot serve the session (sessions fail closed: no request goes on
    without the session it carries); 409 when a concurrent request changed the same keys.
    """
    if isinstance(exc, SessionConflictError):
        body: dict[str, Any] = {
            "error": "session_conflict",
            "detail": str(exc) + "; retry the request",
            "keys": list(exc.keys),
        }
        return 409, json.dumps(body).encode()
    body = {
        "error": "session_unavailable",
        "detail": "the session store is unavailable; retry shortly",
    }
    return 503, json.dumps(body).encode()
