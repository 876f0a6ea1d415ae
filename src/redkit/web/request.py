"""The little of a request that key functions need, the same for every framework.

The Starlette and Flask adapters each wrap their request in an object of this shape, so key
functions and tier resolvers are written once and work under both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeAlias

from redkit.core.errors import RedkitError

__all__ = ["KeyFunc", "RequestInfo", "TierFunc", "session_user_id"]


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


#: Maps a request to the identifier a limit counts it under; ``None`` leaves the request
#: unlimited by that limit. ASGI adapters also accept a coroutine function.
KeyFunc: TypeAlias = Callable[[RequestInfo], "str | Awaitable[str | None] | None"]

#: Maps a request to the name of a :class:`~redkit.TieredRatelimit` tier. ASGI adapters also
#: accept a coroutine function.
TierFunc: TypeAlias = Callable[[RequestInfo], "str | Awaitable[str]"]


def session_user_id(session: object) -> object | None:
    """A session's ``user_id`` (attribute or key), or ``None``; never fails the request.

    Under ASGI a redkit session that is not loaded yet counts as anonymous rather than
    raising: a limit cannot await a session read on its own. (A Flask session loads on first
    use, so there reading its user costs one Redis call.)
    """
    if session is None:
        return None
    try:
        user = getattr(session, "user_id", None)
        if user is None and isinstance(session, Mapping):
            user = session.get("user_id")
    except RedkitError:
        return None
    return user
