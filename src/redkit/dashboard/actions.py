"""The dashboard's actions, each through the feature's own API, each written to the audit log.

The audit log is the logger ``redkit.dashboard.audit``: one line per action that ran, with who
asked (role, how they logged in, the session's first characters; never a token), from where,
what, on which target, and the outcome. Targets are logged with ``repr``, so a newline in an
identifier cannot forge a line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redkit.cache.facade import AsyncCache
from redkit.core.driver import Backend
from redkit.core.flow import run_async
from redkit.dashboard.auth import Identity
from redkit.dashboard.ratelimits import reset_identifier
from redkit.sessions.store import AsyncSessionStore

__all__ = ["Actions", "Done", "audit_log"]

#: The audit log.
audit_log = logging.getLogger("redkit.dashboard.audit")


@dataclass(frozen=True)
class Done:
    """What an action did, as the page reports it."""

    action: str
    target: str
    count: int
    message: str


class Actions:
    """The actions on one Redis (``backend``); ``timeout`` bounds each of their calls."""

    def __init__(self, backend: Backend, timeout: float) -> None:
        self._backend = backend
        self._timeout = timeout

    def _audit(self, identity: Identity, client: str, done: Done) -> Done:
        audit_log.info(
            "who=%s client=%s action=%s target=%r result=%d",
            identity.who, client, done.action, done.target, done.count,
        )  # fmt: skip
        return done

    async def reset_identifier(
        self, identity: Identity, client: str, prefix: str, identifier: str
    ) -> Done:
        """Delete an identifier's rate-limit state (its counters start again)."""
        driver = self._backend.async_driver(timeout=self._timeout)
        deleted = await run_async(reset_identifier(prefix, identifier), driver)
        target = f"{prefix} {identifier}"
        message = f"reset {identifier} under {prefix}: {deleted} key(s) deleted"
        return self._audit(identity, client, Done("ratelimit.reset", target, deleted, message))

    async def _on_cache(
        self, namespace: str, version: str | None, act: Callable[[AsyncCache], Awaitable[int]]
    ) -> int:
        cache = AsyncCache(self._backend, namespace=namespace, version=version)
        try:
            return await act(cache)
        finally:
            await cache.close()

    async def bump_namespace(
        self, identity: Identity, client: str, namespace: str, version: str | None
    ) -> Done:
        """Start a new generation of the namespace: every entry is left behind at once."""
        generation = await self._on_cache(namespace, version, lambda c: c.bump_version())
        target = namespace if version is None else f"{namespace} version {version}"
        message = f"{target}: now generation {generation}"
        return self._audit(identity, client, Done("cache.bump", target, generation, message))

    async def invalidate_tag(
        self, identity: Identity, client: str, namespace: str, version: str | None, tag: str
    ) -> Done:
        """Make every entry of the namespace stamped with ``tag`` stale."""
        count = await self._on_cache(namespace, version, lambda c: c.invalidate_tags(tag))
        target = f"{namespace} tag {tag}"
        message = f"tag {tag} of {namespace} invalidated"
        return self._audit(identity, client, Done("cache.invalidate_tag", target, count, message))

    async def revoke_user(
        self, identity: Identity, client: str, prefix: str, user: str | int
    ) -> Done:
        """End every session of ``user`` in the store under ``prefix``."""
        store = AsyncSessionStore(self._backend, prefix=prefix, timeout=self._timeout)
        revoked = await store.revoke_user_sessions(user)
        target = f"{prefix} user {user!r}"
        message = f"{revoked} session(s) of user {user} revoked"
        return self._audit(identity, client, Done("sessions.revoke_user", target, revoked, message))
