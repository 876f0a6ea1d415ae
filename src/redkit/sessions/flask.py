"""Deprecated: Flask sessions moved to :mod:`redkit.web.flask`, into its one extension.

``from redkit.sessions.flask import current_session`` (and the other names) still works for one
release, with a ``DeprecationWarning``. ``RedisSessions`` warns when used: the ``Redkit``
extension carries sessions, ``Redkit(app, sessions=store)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Imported now, so a missing Flask fails at this import, as it always did.
import redkit.web.flask.sessions
from redkit.core.moved import moved_names

if TYPE_CHECKING:
    from redkit.web.flask.sessions import FlaskSession as FlaskSession
    from redkit.web.flask.sessions import RedisSessionInterface as RedisSessionInterface
    from redkit.web.flask.sessions import RedisSessions as RedisSessions
    from redkit.web.flask.sessions import current_session as current_session

__all__ = ["FlaskSession", "RedisSessionInterface", "RedisSessions", "current_session"]

_moved = moved_names(
    __name__,
    {
        **dict.fromkeys(__all__, "redkit.web.flask"),
        "RedisSessions": redkit.web.flask.sessions.__name__,
    },
    quiet={"RedisSessions"},
)


def __getattr__(name: str) -> Any:
    return _moved(name)
