"""The namespace's generation: part of every key, so one ``INCR`` leaves every entry behind.

Keys read ``<namespace>[:<version>]:g<generation>:<key>``. The generation lives in the key
``<namespace>[:<version>]#generation`` ('#' keeps it apart from every cache key, which all start
with ``<namespace>:``). Each process reads it at most once per :attr:`Generations.check_s`, so
another process's bump is seen within that bound, and old entries expire on their own.
"""

from __future__ import annotations

import time

from redkit.core.flow import Flow
from redkit.core.ops import command
from redkit.core.replies import as_int

__all__ = ["GENERATION_CHECK_S", "Generations"]

#: Seconds a process trusts the namespace generation it read (see :meth:`Generations.bump`).
GENERATION_CHECK_S = 1.0


class Generations:
    """The generation of one namespace, as this process last read it.

    ``prefix`` is the namespace with its version part, already checked and escaped.
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix + ":"
        #: The Redis key that holds the generation.
        self.key = prefix + "#generation"
        #: Seconds a generation read here is trusted before it is read again.
        self.check_s = GENERATION_CHECK_S
        self._known: tuple[int, float] | None = None  # (generation, when read)

    def known(self) -> str | None:
        """The start of every key, if the generation was read recently enough; else ``None``.

        No flow: the hit path asks this first, so that a hit costs no generator for it.
        """
        known = self._known
        if known is not None and time.monotonic() - known[1] < self.check_s:
            return f"{self._prefix}g{known[0]}:"
        return None

    def current(self) -> Flow[str]:
        """The start of every key: ``<namespace>[:<version>]:g<generation>:``."""
        known = self.known()
        if known is not None:
            return known
        reply = yield command("GET", self.key)
        generation = 0 if reply is None else as_int(reply)
        self._known = (generation, time.monotonic())
        return f"{self._prefix}g{generation}:"

    def bump(self) -> Flow[int]:
        """Start a new generation (``INCR``), seen here at once; return it."""
        generation = as_int((yield command("INCR", self.key)))
        self._known = (generation, time.monotonic())
        return generation

    def forget(self) -> None:
        """Read the generation again next time, whatever :attr:`check_s` says."""
        self._known = None
