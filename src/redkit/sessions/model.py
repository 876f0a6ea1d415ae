"""What the session store hands out: a session's data with its metadata, and a listing row."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from redkit.core.errors import InvalidArgumentError, RedkitError

__all__ = ["KEEP", "Keep", "Session", "SessionConflictError", "SessionInfo", "encode_value"]


class Keep:
    """The type of :data:`KEEP` alone: "leave the session's user as it is"."""

    def __repr__(self) -> str:
        return "KEEP"


#: ``regenerate(user_id=KEEP)``, ``store.rotate(sid, user_id=KEEP)``: the session keeps its
#: user (the default of both).
KEEP: Final = Keep()


class SessionConflictError(RedkitError):
    """A concurrent request changed the same session keys since this one read them.

    Nothing of this save was stored. ``keys`` names the keys in conflict; read the session
    again and reapply the change.
    """

    def __init__(self, keys: list[str]) -> None:
        super().__init__(
            "session keys changed by a concurrent request since they were read: "
            + ", ".join(repr(k) for k in keys)
        )
        self.keys = keys


def encode_value(key: object, value: Any) -> str:
    """One session value as stored: compact JSON; a clear error for anything JSON cannot hold."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"session keys must be non-empty str, got {key!r:.80}")
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"session value of {key!r} cannot be stored as JSON ({exc}); sessions hold JSON "
            "values only: str, int, float, bool, None, lists and dicts of them"
        ) from exc


class Session(dict[str, Any]):
    """A session's data (a ``dict``), as read from the store, with its metadata.

    The store remembers what each key held when it was read, so that :meth:`SessionStore.save`
    sends only the keys that changed, and can tell when another request changed them too.
    Nested values may be changed in place (``session["cart"].append(...)``): a change is found
    by comparing encodings, not by watching assignments.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        id: str,
        original: Mapping[str, str],
        user_id: Any = None,
        created_at: float = 0.0,
        last_seen_at: float = 0.0,
        expires_at: float = 0.0,
        absolute_expires_at: float | None = None,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> None:
        super().__init__(data)
        #: The session id (the cookie's value).
        self.id = id
        #: The user the session belongs to, or ``None`` for an anonymous session.
        self.user_id = user_id
        #: When the session was created, last used, and when it expires (epoch seconds).
        self.created_at = created_at
        self.last_seen_at = last_seen_at
        self.expires_at = expires_at
        #: The absolute deadline that no activity extends; ``None`` when there is none.
        self.absolute_expires_at = absolute_expires_at
        self.user_agent = user_agent
        self.ip = ip
        self._original = dict(original)

    @property
    def handle(self) -> str:
        """The session's public handle: it names the session in listings, never unlocks it."""
        return self.id.partition(".")[0]

    def encoded(self) -> dict[str, str]:
        """Each key's value as stored (JSON)."""
        return {key: encode_value(key, value) for key, value in self.items()}

    def changes(
        self, encoded: Mapping[str, str] | None = None
    ) -> list[tuple[str, str | None, str | None]]:
        """``(key, as read, as now)`` for each changed key; ``None`` for an absent value.

        ``encoded`` is :meth:`encoded`, when the caller has it already.
        """
        current = self.encoded() if encoded is None else encoded
        changed: list[tuple[str, str | None, str | None]] = []
        for key, now in current.items():
            before = self._original.get(key)
            if before != now:
                changed.append((key, before, now))
        changed.extend((key, before, None) for key, before in self._original.items()
                       if key not in current)  # fmt: skip
        return changed

    @property
    def modified(self) -> bool:
        """Whether the data differs from what was read (or last saved)."""
        return bool(self.changes())

    def mark_saved(self) -> None:
        """Take the current data as the stored state (after a successful save)."""
        self._original = {key: encode_value(key, value) for key, value in self.items()}

    def __repr__(self) -> str:
        # Never the id: it is a credential, and reprs end up in logs.
        return f"<Session {self.handle}… user={self.user_id!r} keys={sorted(self)!r}>"


@dataclass(frozen=True)
class SessionInfo:
    """One of a user's sessions, as :meth:`SessionStore.list_user_sessions` lists it."""

    #: Names the session (for :meth:`SessionStore.revoke_session`); not a credential.
    handle: str
    user_id: Any
    created_at: float
    last_seen_at: float
    expires_at: float
    absolute_expires_at: float | None
    user_agent: str | None
    ip: str | None
