"""Lua scripts as package resources.

Scripts live as ``*.lua`` files beside the code that uses them (``<package>/lua/<name>.lua``)
and are read once per process. Drivers run them with ``EVALSHA`` and fall back to ``EVAL`` on
``NOSCRIPT``, so nothing has to be preloaded — not after ``SCRIPT FLUSH``, not on a cluster node
that has never seen the script.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from importlib import resources

__all__ = ["Script", "load_script"]


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
