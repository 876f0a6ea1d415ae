"""``SessionStore`` and ``AsyncSessionStore``: the same flows, run blocking or in asyncio."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from redkit.core.driver import as_backend, scripts_declare_keys
from redkit.core.durations import Duration, duration_ms, timeout_or_none
from redkit.core.errors import NO_ANSWER, InvalidArgumentError
from redkit.core.fleet import AsyncReporter, ThreadReporter, start_reporter, stats_interval
from redkit.core.flow import Flow, run_async, run_sync
from redkit.sessions.flows import SessionFlows
from redkit.sessions.model import KEEP, Keep, Session, SessionInfo

__all__ = ["AsyncSessionStore", "SessionStore"]

#: Seconds one session operation may wait for Redis. Sessions fail closed: past it, the call
#: raises :class:`~redkit.errors.BackendError` and the request is refused, never let in.
DEFAULT_TIMEOUT = 2.0
T = TypeVar("T")


def _flows(
    backend: object,
    prefix: str,
    idle_ttl: Duration,
    absolute_ttl: Duration | None,
    max_sessions_per_user: int | None,
    timeout: float | None,
) -> SessionFlows:
    idle_ms = duration_ms(idle_ttl, name="idle_ttl")
    absolute_ms = None if absolute_ttl is None else duration_ms(absolute_ttl, name="absolute_ttl")
    if absolute_ms is not None and absolute_ms < idle_ms:
        raise InvalidArgumentError("absolute_ttl must not be shorter than idle_ttl")
    if max_sessions_per_user is not None and (
        isinstance(max_sessions_per_user, bool)
        or not isinstance(max_sessions_per_user, int)
        or max_sessions_per_user < 1
    ):
        raise InvalidArgumentError(
            f"max_sessions_per_user must be a positive int or None, got {max_sessions_per_user!r}"
        )
    timeout_or_none(timeout)
    return SessionFlows(
        prefix=prefix,
        idle_ms=idle_ms,
        absolute_ms=absolute_ms,
        max_per_user=max_sessions_per_user,
        client_clock=scripts_declare_keys(backend),
    )


def _rotation(
    flows: SessionFlows, session_id: str, user_id: str | int | Keep | None
) -> Flow[str | None]:
    if isinstance(user_id, Keep):
        return flows.rotate(session_id, None, False)
    return flows.rotate(session_id, user_id, True)


class SessionStore:
    """Server-side sessions in Redis, with idle and absolute timeouts and a per-user index.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py client.
        idle_ttl: a session unused this long expires; each read or save extends it.
        absolute_ttl: a session expires this long after its creation, however active;
            ``None`` for no such bound (not recommended).
        prefix: the start of every key the store writes.
        max_sessions_per_user: the most sessions one user may hold; creating one more ends the
            oldest. ``None``: no bound.
        timeout: seconds each wait for Redis (a free connection, a reply) may last before
            the call raises :class:`~redkit.errors.BackendError` (sessions fail closed). A
            call makes one to three round trips, so it may take a small multiple of it.
        stats: add this process's counts (created, rotated, revoked, conflicts, unavailable,
            ...) to Redis at this interval (``"10 s"``; at least 1 s), for
            :func:`redkit.stats.read`; ``None`` (the default): off. Sent in the background
            (docs/stats.md); :meth:`close` sends what is left.

    Session ids are ``<handle>.<secret>``: a 128-bit public handle and a 256-bit secret, from
    :mod:`secrets`. Redis stores only a SHA-256 digest of the id. Concurrent saves of one
    session merge per key; a key changed by two requests at once is a
    :class:`~redkit.sessions.SessionConflictError` for the later one, never a lost write.

    """

    def __init__(
        self,
        redis: object,
        *,
        idle_ttl: Duration = "24 h",
        absolute_ttl: Duration | None = "30 d",
        prefix: str = "session",
        max_sessions_per_user: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        stats: Duration | None = None,
    ) -> None:
        interval = stats_interval(stats)
        self._backend = as_backend(redis)
        self._flows = _flows(
            self._backend, prefix, idle_ttl, absolute_ttl, max_sessions_per_user, timeout
        )
        self._timeout = timeout
        self._stats = start_reporter(
            ThreadReporter, interval, self._backend, self._flows.telemetry, timeout
        )

    def _run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` on this store's connection, each wait bounded by its timeout."""
        try:
            return run_sync(flow, self._backend.sync_driver(timeout=self._timeout))
        except NO_ANSWER:
            self._flows.telemetry.count("unavailable")
            raise

    def create(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        user_id: str | int | None = None,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> str:
        """Start a session holding ``data`` (JSON values); return its id."""
        return self._run(self._flows.create(data, user_id, user_agent, ip))

    def get(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The session, or ``None`` when the id is malformed, unknown, expired or revoked.

        A read is activity: it extends the idle timeout, unless ``touch=False``.
        """
        return self._run(self._flows.get(session_id, touch))

    def save(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Store the keys of ``data`` that changed; ``False`` when the session is gone.

        Pass the :class:`Session` that :meth:`get` returned: only its changed keys are sent,
        and a key another request changed since the read raises
        :class:`~redkit.sessions.SessionConflictError` (nothing is written then). Any other
        mapping replaces the session's data. Nothing changed, nothing is sent.
        """
        return self._run(self._flows.save(session_id, data))

    def touch(self, session_id: str) -> bool:
        """Extend the idle timeout (never past the absolute one); ``False`` when gone."""
        return self._run(self._flows.touch(session_id))

    def rotate(self, session_id: str, *, user_id: str | int | Keep | None = KEEP) -> str | None:
        """A new id for the session, same data; the old id stops working at once.

        Call it on every change of privilege (a login): an id fixed by an attacker before it
        is then worthless. ``user_id`` hands the session to that user. ``None`` when the
        session does not exist.
        """
        return self._run(_rotation(self._flows, session_id, user_id))

    def delete(self, session_id: str) -> bool:
        """End the session (a logout); ``False`` when it did not exist."""
        return self._run(self._flows.delete(session_id))

    def list_user_sessions(self, user_id: str | int) -> list[SessionInfo]:
        """The user's live sessions, oldest first, with when and where each was used."""
        return self._run(self._flows.list_user_sessions(user_id))

    def revoke_session(self, user_id: str | int, handle: str) -> bool:
        """End one of the user's sessions, named by its handle (from the listing)."""
        return self._run(self._flows.revoke_session(user_id, handle))

    def revoke_user_sessions(self, user_id: str | int, *, keep: str | None = None) -> int:
        """End every session of the user ("log out everywhere"), except the session ``keep``.

        Returns how many were ended.
        """
        return self._run(self._flows.revoke_user_sessions(user_id, keep))

    def flush(self) -> None:
        """Send the fleet statistics counted so far now (nothing to do without ``stats=``)."""
        if self._stats is not None:
            self._stats.flush()

    def close(self) -> None:
        """Stop sending fleet statistics in the background, and send what is left."""
        if self._stats is not None:
            self._stats.close()


class AsyncSessionStore:
    """Server-side sessions for asyncio: the arguments and methods of :class:`SessionStore`.

    Args:
        redis: a :class:`redkit.Connection`, a Redis URL, or a redis-py asyncio client.
        idle_ttl: as for :class:`SessionStore`.
        absolute_ttl: as for :class:`SessionStore`.
        prefix: as for :class:`SessionStore`.
        max_sessions_per_user: as for :class:`SessionStore`.
        timeout: as for :class:`SessionStore`.
        stats: as for :class:`SessionStore` (sent by an asyncio task).

    """

    def __init__(
        self,
        redis: object,
        *,
        idle_ttl: Duration = "24 h",
        absolute_ttl: Duration | None = "30 d",
        prefix: str = "session",
        max_sessions_per_user: int | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        stats: Duration | None = None,
    ) -> None:
        interval = stats_interval(stats)
        self._backend = as_backend(redis)
        self._flows = _flows(
            self._backend, prefix, idle_ttl, absolute_ttl, max_sessions_per_user, timeout
        )
        self._timeout = timeout
        self._stats = start_reporter(
            AsyncReporter, interval, self._backend, self._flows.telemetry, timeout
        )

    async def _run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` in asyncio on this store's connection, bounded by its timeout."""
        try:
            return await run_async(flow, self._backend.async_driver(timeout=self._timeout))
        except NO_ANSWER:
            self._flows.telemetry.count("unavailable")
            raise

    async def create(
        self,
        data: Mapping[str, Any] | None = None,
        *,
        user_id: str | int | None = None,
        user_agent: str | None = None,
        ip: str | None = None,
    ) -> str:
        """Start a session holding ``data``; see :meth:`SessionStore.create`."""
        return await self._run(self._flows.create(data, user_id, user_agent, ip))

    async def get(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The session, or ``None``; see :meth:`SessionStore.get`."""
        return await self._run(self._flows.get(session_id, touch))

    async def save(self, session_id: str, data: Mapping[str, Any]) -> bool:
        """Store the changed keys; see :meth:`SessionStore.save`."""
        return await self._run(self._flows.save(session_id, data))

    async def touch(self, session_id: str) -> bool:
        """Extend the idle timeout; see :meth:`SessionStore.touch`."""
        return await self._run(self._flows.touch(session_id))

    async def rotate(
        self, session_id: str, *, user_id: str | int | Keep | None = KEEP
    ) -> str | None:
        """A new id for the session; see :meth:`SessionStore.rotate`."""
        return await self._run(_rotation(self._flows, session_id, user_id))

    async def delete(self, session_id: str) -> bool:
        """End the session; see :meth:`SessionStore.delete`."""
        return await self._run(self._flows.delete(session_id))

    async def list_user_sessions(self, user_id: str | int) -> list[SessionInfo]:
        """The user's live sessions; see :meth:`SessionStore.list_user_sessions`."""
        return await self._run(self._flows.list_user_sessions(user_id))

    async def revoke_session(self, user_id: str | int, handle: str) -> bool:
        """End one of the user's sessions; see :meth:`SessionStore.revoke_session`."""
        return await self._run(self._flows.revoke_session(user_id, handle))

    async def revoke_user_sessions(self, user_id: str | int, *, keep: str | None = None) -> int:
        """End every session of the user; see :meth:`SessionStore.revoke_user_sessions`."""
        return await self._run(self._flows.revoke_user_sessions(user_id, keep))

    async def flush(self) -> None:
        """Send the fleet statistics counted so far now; see :meth:`SessionStore.flush`."""
        if self._stats is not None:
            await self._stats.flush()

    async def close(self) -> None:
        """Stop sending fleet statistics in the background, and send what is left."""
        if self._stats is not None:
            await self._stats.close()
