"""``redkit.web.django.SessionMiddleware``: Django's, answering a failed session as redkit does.

Django's own ``SessionMiddleware`` works with the engine unchanged; this subclass only changes
what a client gets when the session fails, to what redkit's ASGI and Flask adapters send:

- ``503`` with ``{"error": "session_unavailable", ...}`` when Redis cannot load or save the
  session (sessions fail closed; Django's own answers 500);
- ``409`` with ``{"error": "session_conflict", "keys": [...], ...}`` when a concurrent request
  changed the same session keys (Django's own answers 400, "session interrupted").
"""

from __future__ import annotations

from django.contrib.sessions.exceptions import SessionInterrupted
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse

from redkit.core.errors import BackendError
from redkit.sessions.model import SessionConflictError
from redkit.sessions.web import SessionUnavailableError, error_response

__all__ = ["SessionMiddleware"]


def _answer(exc: BackendError | SessionConflictError) -> HttpResponse:
    failure = exc if isinstance(exc, SessionConflictError) else SessionUnavailableError(str(exc))
    status, body = error_response(failure)
    response = HttpResponse(body, status=status, content_type="application/json")
    if status == 503:
        response["Retry-After"] = "1"
    return response


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's ``SessionMiddleware``; a session Redis cannot serve is a 503, a conflict a 409.

    Put it where Django's stands in ``MIDDLEWARE``.
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """A view that could not load its session: 503 (or 409), not Django's 500."""
        if isinstance(exception, (BackendError, SessionConflictError)):
            return _answer(exception)
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """Save the session as Django does; a save that fails answers 503 or 409 instead."""
        try:
            return super().process_response(request, response)
        except BackendError as exc:
            return _answer(exc)
        except SessionInterrupted as exc:
            # Django turns the engine's UpdateError into this; a conflict is one of those.
            cause = exc.__context__
            if isinstance(cause, SessionConflictError):
                return _answer(cause)
            raise
