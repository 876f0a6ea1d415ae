"""The web adapters' old import paths still work for one release, and say where to go.

Each old name is the new home's object itself (so ``isinstance`` holds across both paths);
using it warns with a ``DeprecationWarning`` that points at the user's line.
"""

from __future__ import annotations

import importlib

import pytest

pytest.importorskip("starlette")
pytest.importorskip("flask")

#: (old module, name, new module): every name users imported from a path that moved.
MOVED = [
    ("redkit.sessions.asgi", "SessionMiddleware", "redkit.web.asgi"),
    ("redkit.sessions.asgi", "RequestSession", "redkit.web.asgi"),
    ("redkit.sessions.asgi", "get_session", "redkit.web.asgi"),
    ("redkit.sessions.asgi", "load_session", "redkit.web.asgi"),
    ("redkit.sessions.asgi", "WEBSOCKET_RETRY", "redkit.web.asgi.sessions"),
    ("redkit.sessions", "SessionMiddleware", "redkit.web.asgi"),
    ("redkit.sessions", "RequestSession", "redkit.web.asgi"),
    ("redkit.sessions", "get_session", "redkit.web.asgi"),
    ("redkit.sessions", "load_session", "redkit.web.asgi"),
    ("redkit.web.starlette", "RateLimitMiddleware", "redkit.web.asgi"),
    ("redkit.web.starlette", "ScopeRequest", "redkit.web.asgi"),
    ("redkit.web.starlette", "WEBSOCKET_REFUSED", "redkit.web.asgi"),
    ("redkit.web.starlette", "refuse_websocket", "redkit.web.asgi"),
    ("redkit.web.starlette", "send_too_many_requests", "redkit.web.asgi"),
    ("redkit.web.fastapi_cache", "cache_response", "redkit.web.fastapi"),
    ("redkit.web.fastapi_cache", "invalidate_response", "redkit.web.fastapi"),
    ("redkit.web.flask_cache", "cache_response", "redkit.web.flask"),
    ("redkit.sessions.flask", "FlaskSession", "redkit.web.flask"),
    ("redkit.sessions.flask", "RedisSessionInterface", "redkit.web.flask"),
    ("redkit.sessions.flask", "current_session", "redkit.web.flask"),
    ("redkit.sessions", "FlaskSession", "redkit.web.flask"),
    ("redkit.sessions", "RedisSessionInterface", "redkit.web.flask"),
]


@pytest.mark.parametrize(("old", "name", "new"), MOVED)
def test_an_old_path_gives_the_new_object_with_a_warning(old: str, name: str, new: str) -> None:
    module = importlib.import_module(old)
    with pytest.warns(
        DeprecationWarning, match=rf"{old}\.{name} moved: import it from {new}"
    ) as seen:
        found = getattr(module, name)
    assert found is getattr(importlib.import_module(new), name)
    assert [w.filename for w in seen] == [__file__]  # the user's line, not redkit's


def test_from_import_of_an_old_path_warns_at_the_importing_line() -> None:
    with pytest.warns(DeprecationWarning, match="redkit.sessions.asgi.SessionMiddleware") as seen:
        from redkit.sessions.asgi import SessionMiddleware
    from redkit.web.asgi import SessionMiddleware as new

    assert SessionMiddleware is new
    assert [w.filename for w in seen] == [__file__]


@pytest.mark.parametrize("old", sorted({old for old, _name, _new in MOVED}))
def test_an_old_path_knows_no_other_name(old: str) -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        importlib.import_module(old).nothing_here  # noqa: B018  (the access is the test)


@pytest.mark.parametrize("old", ["redkit.sessions.flask", "redkit.sessions"])
def test_the_sessions_only_flask_extension_still_installs_sessions_and_warns(old: str) -> None:
    """``RedisSessions`` is deprecated itself: its use warns (once), naming ``Redkit``."""
    import flask

    from redkit import Connection, SessionStore
    from redkit.web.flask import RedisSessionInterface

    sessions_only = importlib.import_module(old).RedisSessions  # quiet: the class warns
    store = SessionStore(Connection("redis://127.0.0.1:6379"))  # never opened here
    app = flask.Flask(__name__)
    with pytest.warns(DeprecationWarning, match=r"use the one extension, .*Redkit") as seen:
        sessions_only(store, app, max_age=60)
    assert [w.filename for w in seen] == [__file__]
    interface = app.session_interface
    assert isinstance(interface, RedisSessionInterface)
    assert (interface.store, interface.cookie.max_age) == (store, 60)
    assert app.extensions["redkit.sessions"] is interface
