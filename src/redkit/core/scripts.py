"""Lua scripts as package resources.

Scripts live as ``*.lua`` files beside the code that uses them (``<package>/lua/<name>.lua``)
and are read once per process. Drivers run them with ``EVALSHA`` and fall back to ``EVAL`` on
``NOSCRIPT``, so nothing has to be preloaded — not after ``SCRIPT FLUSH``, not on a cluster node
that has never seen the script.

**The clock.** A script that reads the time takes it as its first argument, ``ARGV[1]``: the
caller's clock in epoch microseconds, or :data:`SERVER_TIME` (-1) to read the server's
``TIME``. :func:`clocked_script` puts the head that reads it (``core/lua/clock.lua``, which
defines ``NOW_US`` and ``NOW`` in ms) in front of the script's own file.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from importlib import resources

__all__ = ["SERVER_TIME", "Script", "clock_head", "clock_ms", "clocked_script", "load_script"]

#: ``ARGV[1]`` asking a script to read the server's ``TIME`` instead of the caller's clock.
SERVER_TIME = -1


@dataclass(frozen=True)
class Script:
    """A Lua script with its SHA1 digest, as ``EVALSHA`` names it."""

    name: str
    source: str
    sha: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # SHA1 is what Redis itself uses to name scripts; it is not a security measure here.
        digest = hashlib.sha1(self.source.encode("utf-8"), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


@functools.cache
def load_script(package: str, name: str) -> Script:
    """Read ``<package>/lua/<name>.lua`` once and return it as a :class:`Script`."""
    source = (resources.files(package) / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, source)


def clock_head() -> str:
    """The head of every script that reads the time (``core/lua/clock.lua``)."""
    return load_script("redkit.core", "clock").source


def clock_ms(now_ms: int) -> int:
    """``ARGV[1]`` for the caller's clock at epoch ms ``now_ms`` (:data:`SERVER_TIME` as is)."""
    return SERVER_TIME if now_ms == SERVER_TIME else now_ms * 1000


@functools.cache
def clocked_script(package: str, name: str) -> Script:
    """``<package>/lua/<name>.lua`` behind the clock head, as one :class:`Script`."""
    return Script(name, clock_head() + "\n" + load_script(package, name).source)
