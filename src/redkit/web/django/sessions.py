"""The Django session engine: ``SESSION_ENGINE = "redkit.web.django.sessions"``.

Django's ``SessionBase`` contract on redkit's :class:`~redkit.SessionStore`: Redis holds only
a digest of each session id, sessions end after an idle and an absolute timeout, each
signed-in user's sessions are indexed (:func:`revoke_user_sessions` logs them all out), and
two requests that change different keys of one session both keep their change.

Settings (all optional)::

    REDKIT_SESSIONS = {
        "USING": "default",          # the cache alias whose LOCATION to use (the default:
                                     # SESSION_CACHE_ALIAS), or instead
        "LOCATION": "redis://...",   # a URL of its own (+ "OPTIONS": {"token": ...} for REST)
        "PREFIX": "django-session",
        "IDLE_TIMEOUT": 1209600,     # seconds unused; default SESSION_COOKIE_AGE
        "ABSOLUTE_TIMEOUT": 2592000, # seconds after creation; default 30 days (or the idle
                                     # timeout, when longer); None for no bound
        "MAX_SESSIONS_PER_USER": None,
        "TIMEOUT": 2.0,              # seconds one call may wait for Redis (fails closed)
    }
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import CreateError, SessionBase, UpdateError
from django.core.signals import setting_changed
from django.utils import timezone

from redkit.core.errors import InvalidArgumentError
from redkit.sessions.flows import valid_session_id
from redkit.sessions.model import Session, SessionConflictError
from redkit.sessions.store import DEFAULT_TIMEOUT
from redkit.sessions.store import SessionStore as RedisSessionStore
from redkit.web.django.connection import read_setting, redis_for

__all__ = [
    "SessionKeyConflict",
    "SessionStore",
    "arevoke_user_sessions",
    "revoke_user_sessions",
    "session_store",
]

#: The key ``django.contrib.auth`` keeps the signed-in user's id under.
_AUTH_USER = "_auth_user_id"
_SETTING = "REDKIT_SESSIONS"
_KNOWN = frozenset(
    {"USING", "LOCATION", "OPTIONS", "PREFIX", "IDLE_TIMEOUT", "ABSOLUTE_TIMEOUT",
     "MAX_SESSIONS_PER_USER", "TIMEOUT"}
)  # fmt: skip
_THIRTY_DAYS = 30 * 24 * 3600
# Serializers whose output is JSON: their values are stored as they are, key by key.
_JSON_SERIALIZERS = frozenset(
    {"django.contrib.sessions.serializers.JSONSerializer", "django.core.signing.JSONSerializer"}
)

_lock = threading.Lock()
_store: RedisSessionStore | None = None


class SessionKeyConflict(SessionConflictError, UpdateError):
    """A concurrent request changed the same session keys: nothing of this save was stored.

    An :class:`~django.contrib.sessions.backends.base.UpdateError`, so Django's
    ``SessionMiddleware`` answers it as an interrupted session (400) rather than a 500;
    ``keys`` names the keys.
    """


def _config() -> dict[str, Any]:
    config = read_setting(_SETTING, _KNOWN)
    if "LOCATION" not in config:
        config.setdefault("USING", getattr(settings, "SESSION_CACHE_ALIAS", "default"))
    return config


def session_store() -> RedisSessionStore:
    """The redkit store behind the engine, made from ``REDKIT_SESSIONS`` on first use."""
    global _store
    with _lock:
        if _store is None:
            config = _config()
            idle = config.get("IDLE_TIMEOUT", settings.SESSION_COOKIE_AGE)
            absolute = config.get("ABSOLUTE_TIMEOUT", max(_THIRTY_DAYS, idle))
            _store = RedisSessionStore(
                redis_for(config, _SETTING),
                idle_ttl=idle,
                absolute_ttl=absolute,
                prefix=config.get("PREFIX", "django-session"),
                max_sessions_per_user=config.get("MAX_SESSIONS_PER_USER"),
                timeout=config.get("TIMEOUT", DEFAULT_TIMEOUT),
            )
        return _store


def _forget_store(*, setting: str, **_: Any) -> None:
    # A test's override_settings of these gives a store made from the new settings.
    global _store
    if setting in (_SETTING, "CACHES", "SESSION_CACHE_ALIAS", "SESSION_COOKIE_AGE"):
        with _lock:
            _store = None


setting_changed.connect(_forget_store)


def _user_key(user: Any) -> str:
    """The user's id as ``django.contrib.auth`` writes it into the session."""
    return str(user._meta.pk.value_to_string(user))


def revoke_user_sessions(user: Any, *, keep: Any = None) -> int:
    """Log ``user`` out everywhere: end each of their sessions; return how many ended.

    Args:
        user: a user model instance (``request.user``).
        keep: a session (``request.session``) to leave signed in, e.g. the one asking.

    """
    if not getattr(user, "is_authenticated", False):
        raise InvalidArgumentError(
            f"revoke_user_sessions needs a signed-in user (request.user), got {user!r:.60}"
        )
    keep_id = getattr(keep, "session_key", keep)
    return session_store().revoke_user_sessions(_user_key(user), keep=keep_id)


async def arevoke_user_sessions(user: Any, *, keep: Any = None) -> int:
    """:func:`revoke_user_sessions` for async views (``await request.auser()`` first)."""
    return await sync_to_async(revoke_user_sessions)(user, keep=keep)


class SessionStore(SessionBase):
    """A Django session kept by redkit's :class:`~redkit.SessionStore` (see the module docs).

    Session ids are redkit's (a handle and a 256-bit secret); a cookie of any other shape is
    never looked up. ``cycle_key`` (called by ``login``) rotates the id atomically; saving a
    session whose signed-in user changed hands it to that user, so that
    :func:`revoke_user_sessions` finds it.
    """

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._record: Session | None = None
        self._json = settings.SESSION_SERIALIZER in _JSON_SERIALIZERS

    @property
    def _redis(self) -> RedisSessionStore:
        return session_store()

    def _validate_session_key(self, key: str | None) -> bool:
        return valid_session_id(key)

    # -- values: JSON as they are, anything else through SESSION_SERIALIZER, key by key --
    def _encode(self, data: Mapping[str, Any]) -> dict[str, Any]:
        if self._json:
            return dict(data)
        dumps = self.serializer().dumps
        return {k: base64.b64encode(dumps(v)).decode("ascii") for k, v in data.items()}

    def _decode(self, data: Mapping[str, Any]) -> dict[str, Any]:
        if self._json:
            return dict(data)
        loads = self.serializer().loads
        return {k: loads(base64.b64decode(v)) for k, v in data.items()}

    def load(self) -> dict[str, Any]:
        """The session's data; ``{}`` (and no key) when it is unknown, expired or revoked."""
        record = self._redis.get(self.session_key)
        if record is not None and _past_deadline(record.get("_session_expiry")):
            self._redis.delete(record.id)  # set_expiry(<a date>) has passed
            record = None
        if record is None:
            self._record = None
            self._session_key = None
            return {}
        self._record = record
        return self._decode(record)

    def exists(self, session_key: str | None) -> bool:
        """Whether ``session_key`` names a live session (its idle time is not extended)."""
        if not valid_session_id(session_key):
            return False
        return self._redis.get(session_key, touch=False) is not None

    def create(self) -> None:
        """Store the current data as a new session, under a new id."""
        data = cast(Any, self)._get_session(no_load=True)
        encoded, user = self._encode(data), data.get(_AUTH_USER)
        new_id = self._redis.create(encoded, user_id=user)
        self._session_key = new_id
        # What was stored, as a read would give it: the next save sends only what changes.
        self._record = Session(encoded, id=new_id, original={}, user_id=user)
        self._record.mark_saved()
        self.modified = True

    def save(self, must_create: bool = False) -> None:
        """Store what changed (only the changed keys are sent).

        Raises:
            CreateError: ``must_create`` and the session exists already.
            UpdateError: the session ended meanwhile (a logout elsewhere, an expiry), or
                (:class:`SessionKeyConflict`) another request changed the same keys.

        """
        if must_create and self.session_key is not None and self.exists(self.session_key):
            raise CreateError
        if must_create or self.session_key is None:
            self.create()
            return
        data = cast(Any, self)._get_session()
        record = self._record
        if record is None:
            record = self._record = self._redis.get(self.session_key, touch=False)
            if record is None:
                raise UpdateError
        user = data.get(_AUTH_USER)
        if user != record.user_id:
            # Signed in (or out) since it was stored: the session changes hands, so that it
            # joins that user's index, under a new id.
            new_id = self._redis.rotate(record.id, user_id=user)
            if new_id is None:
                raise UpdateError
            self._session_key = new_id
            record.id, record.user_id = new_id, user
        record.clear()
        record.update(self._encode(data))
        try:
            saved = self._redis.save(record.id, record)
        except SessionConflictError as exc:
            raise SessionKeyConflict(exc.keys) from exc
        if not saved:
            raise UpdateError

    def delete(self, session_key: str | None = None) -> None:
        """End the session (this one by default)."""
        key = self.session_key if session_key is None else session_key
        if key is not None:
            self._redis.delete(key)
        if session_key is None or session_key == self.session_key:
            self._record = None

    def cycle_key(self) -> None:
        """A new id for the session, same data; the old id stops working at once."""
        data = cast(Any, self)._get_session()
        if self._record is None or self.session_key is None:
            self.create()  # nothing stored yet: a fresh session holding the data
            self._session_cache = data
            return
        new_id = self._redis.rotate(self._record.id)
        if new_id is None:
            self.create()
            self._session_cache = data
            return
        self._session_key = new_id
        self._record.id = new_id
        self.modified = True

    @classmethod
    def clear_expired(cls) -> None:
        """Nothing to do: Redis drops expired sessions itself."""

    async def aload(self) -> dict[str, Any]:
        """:meth:`load`, off the event loop."""
        return await sync_to_async(self.load)()

    async def aexists(self, session_key: str | None) -> bool:
        """:meth:`exists`, off the event loop."""
        return await sync_to_async(self.exists)(session_key)

    async def acreate(self) -> None:
        """:meth:`create`, off the event loop."""
        await sync_to_async(self.create)()

    async def asave(self, must_create: bool = False) -> None:
        """:meth:`save`, off the event loop."""
        await sync_to_async(self.save)(must_create)

    async def adelete(self, session_key: str | None = None) -> None:
        """:meth:`delete`, off the event loop."""
        await sync_to_async(self.delete)(session_key)

    async def acycle_key(self) -> None:
        """:meth:`cycle_key`, off the event loop."""
        await cast(Any, self)._aget_session()
        await sync_to_async(self.cycle_key)()

    @classmethod
    async def aclear_expired(cls) -> None:
        """Nothing to do: Redis drops expired sessions itself."""


def _past_deadline(expiry: object) -> bool:
    """Whether ``set_expiry(<a date>)``'s date (stored as ISO text) has passed."""
    if not isinstance(expiry, str):
        return False
    try:
        deadline = datetime.fromisoformat(expiry)
    except ValueError:
        return False
    now = timezone.now()  # aware with USE_TZ, naive without: the date was written alike
    if timezone.is_naive(deadline) and timezone.is_aware(now):
        deadline = timezone.make_aware(deadline)
    elif timezone.is_aware(deadline) and timezone.is_naive(now):
        deadline = timezone.make_naive(deadline)
    return now >= deadline
