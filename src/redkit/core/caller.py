"""Warnings that point at the user's code, not at redkit's or a framework's.

A warning's ``stacklevel`` counts frames, and how many frames lie between the user's call and
the warning depends on the path (a FastAPI app, ``app.add_middleware``, a Flask extension):
counting the frames that belong to redkit and to the web frameworks finds the caller on every
path. Where no frame is the user's (Starlette builds its middleware at the first request),
the warning points at the outermost framework frame, and its text names the option.
"""

from __future__ import annotations

import sys
import warnings

__all__ = ["warn_caller"]

#: Modules whose frames are never "the caller": redkit's own and the frameworks that call it.
_NOT_THE_CALLER = ("redkit.", "starlette.", "fastapi.", "flask.", "werkzeug.", "django.")


def _is_ours(module: object) -> bool:
    return isinstance(module, str) and (module == "redkit" or module.startswith(_NOT_THE_CALLER))


def warn_caller(message: str, category: type[Warning]) -> None:
    """Warn with ``message``, attributed to the first frame outside redkit and the frameworks."""
    level = 2  # the frame that called warn_caller
    frame = sys._getframe(1)
    while frame.f_back is not None and _is_ours(frame.f_globals.get("__name__")):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)
