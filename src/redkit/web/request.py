"""The little of a request that key functions need, the same for every framework.

The Starlette and Flask adapters each wrap their request in an object of this shape, so key
functions and tier resolvers are written once and work under both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeAlias

from redkit.core.errors import RedkitError

__all__ = ["UNMATCHED", "KeyFunc", "RequestInfo", "TierFunc", "session_user_id"]

#: The route of a request no route matched (a 404): one counter for all of them, so made-up
#: paths never open fresh buckets.
UNMATCHED = "<unmatched>"


class RequestInfo(Protocol):
    """A request as key functions see it."""

    @property
    def peer(self) -> str | None:
        """The socket peer's address (after any proxy fix-up the server applied), or None."""
        ...

    def headers(self, name: str) -> list[str]:
        """Every value of the header ``name`` (case-insensitive), in order; ``[]`` if absent."""
        ...

    def user_id(self) -> object | None:
        """The signed-in user's id as the framework knows it, or ``None``.

        Starlette: ``request.state.user_id``, then an authenticated ``scope["user"]``'s
        ``identity``, then the session's ``user_id``. Flask: ``g.user_id``, then the
        session's ``user_id``.
        """
        ...

    @property
    def native(self) -> Any:
        """The framework's own request object (Starlette ``Request``, ``flask.Request``)."""
        ...

    def route(self) -> str | None:
        """The template of the route the request matched (``/items/{item_id}``).

        :data:`UNMATCHED` when no route matched; ``None`` when the app has no routes to
        match against (a bare ASGI app).
        """
        ...

    def session_pending(self) -> Awaitable[None] | None:
        """An awaitable that loads a session the framework has not loaded yet, or ``None``.

        Under ASGI a redkit session loads on ``await``; a key that reads the user awaits this
        first, so it never sees a signed-in user as anonymous. Flask loads on first use.
        """
        ...


#: Maps a request to the identifier a limit counts it under; ``None`` leaves the request
#: unlimited by that limit. ASGI adapters also accept a coroutine function.
KeyFunc: TypeAlias = Callable[[RequestInfo], "str | Awaitable[str | None] | None"]

#: Maps a request to the name of a :class:`~redkit.TieredRatelimit` tier. ASGI adapters also
#: accept a coroutine function.
TierFunc: TypeAlias = Callable[[RequestInfo], "str | Awaitable[str]"]


def session_user_id(session: object) -> object | None:
    """A session's ``user_id`` (attribute or key), or ``None``; never fails the request.

    A limit's read does not count as the app using the session (the response does not come
    to vary by cookie for it). Under ASGI the key functions load a redkit session first
    (:meth:`RequestInfo.session_pending`); a Flask session loads on first use.
    """
    if session is None:
        return None
    accessed = getattr(session, "accessed", None)
    try:
        user = getattr(session, "user_id", None)
        if user is None and isinstance(session, Mapping):
            user = session.get("user_id")
    except RedkitError:
        return None
    finally:
        if isinstance(accessed, bool):
            session.accessed = accessed  # type: ignore[attr-defined]
    return user
