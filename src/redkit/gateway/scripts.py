"""Scripts written for Upstash, run on stock Redis: the ``allow-key-locking`` flag.

Upstash's SDKs start their scripts with ``#!lua flags=allow-key-locking``. Stock Redis 7
rejects that flag and Redis 6 cannot compile a ``#!`` line at all. The gateway removes the flag
(the whole line when it was the only one) before ``EVAL`` and ``SCRIPT LOAD``, and remembers
the SHA1 of the text the client sent, so that ``EVALSHA <that sha>`` runs the rewritten script,
``SCRIPT LOAD`` answers the SHA the client expects, and ``SCRIPT EXISTS`` agrees with it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock

from redkit.gateway.protocol import RawCommand, command_name

__all__ = ["ScriptMap", "Translated", "sha1_hex", "strip_key_locking"]

_SHEBANG = b"#!lua"
_FLAG = b"allow-key-locking"


def sha1_hex(script: bytes) -> bytes:
    """The SHA1 of ``script`` as Redis names it: 40 lower-case hex digits."""
    return hashlib.sha1(script).hexdigest().encode()  # Redis names scripts so


def strip_key_locking(script: bytes) -> bytes | None:
    """``script`` without the ``allow-key-locking`` flag, or ``None`` if it has none.

    ``#!lua flags=allow-key-locking`` (the SDKs' line) is removed whole; with other flags
    (``flags=allow-key-locking,no-writes``) only this one goes, for Redis 7 to read the rest.
    """
    if not script.startswith(_SHEBANG):
        return None
    end = script.find(b"\n")
    line, rest = (script, b"") if end < 0 else (script[:end], script[end + 1 :])
    words = line.rstrip(b"\r").split()
    if words[0] != _SHEBANG:
        return None
    options = words[1:]
    kept: list[bytes] = []
    found = False
    for option in options:
        if option.startswith(b"flags="):
            flags = [flag for flag in option[len(b"flags=") :].split(b",") if flag]
            found = found or _FLAG in flags
            flags = [flag for flag in flags if flag != _FLAG]
            if flags:
                kept.append(b"flags=" + b",".join(flags))
        else:
            kept.append(option)
    if not found:
        return None
    if not kept:
        # An empty line keeps the line numbers of error messages right.
        return b"\n" + rest
    return b" ".join([_SHEBANG, *kept]) + b"\n" + rest


@dataclass
class Translated:
    """A command rewritten for Redis, and how to put its reply back in the client's terms.

    Attributes:
        command: what to send.
        fallback: for an ``EVALSHA`` of a remembered script: the same call as ``EVAL`` with
            the rewritten source, to send on ``NOSCRIPT``.
        reply_sha: for ``SCRIPT LOAD``: the SHA to answer instead of Redis's.
        exists_of: for ``SCRIPT EXISTS``: unused.

    """

    command: RawCommand
    fallback: RawCommand | None = None
    reply_sha: bytes | None = None


class ScriptMap:
    """SHA of the client's text -> the rewritten source; bounded, least recently used out."""

    def __init__(self, capacity: int = 4096) -> None:
        self._sources: OrderedDict[bytes, bytes] = OrderedDict()
        self._capacity = capacity
        self._lock = Lock()

    def remember(self, original: bytes, stripped: bytes) -> bytes:
        """Map the SHA of ``original`` to ``stripped``; return that SHA."""
        sha = sha1_hex(original)
        with self._lock:
            self._sources[sha] = stripped
            self._sources.move_to_end(sha)
            while len(self._sources) > self._capacity:
                self._sources.popitem(last=False)
        return sha

    def source(self, sha: bytes) -> bytes | None:
        """The rewritten source whose client-side SHA is ``sha`` (any case), if known."""
        with self._lock:
            found = self._sources.get(sha.lower())
            if found is not None:
                self._sources.move_to_end(sha.lower())
            return found

    def translate(self, command: RawCommand, *, inline: bool = False) -> Translated:
        """``command`` as Redis must see it.

        ``inline`` (pipelines, transactions): an ``EVALSHA`` of a remembered script becomes
        an ``EVAL`` of its rewritten source at once, since a ``NOSCRIPT`` retry there would
        run out of order.
        """
        name = command_name(command)
        if name in ("EVAL", "EVAL_RO") and len(command) > 1:
            stripped = strip_key_locking(command[1])
            if stripped is not None:
                self.remember(command[1], stripped)
                return Translated([command[0], stripped, *command[2:]])
        elif name in ("EVALSHA", "EVALSHA_RO") and len(command) > 1:
            source = self.source(command[1])
            if source is not None:
                as_eval = [b"EVAL_RO" if name == "EVALSHA_RO" else b"EVAL", source, *command[2:]]
                if inline:
                    return Translated(as_eval)
                return Translated([command[0], sha1_hex(source), *command[2:]], fallback=as_eval)
        elif name == "SCRIPT" and len(command) > 2:
            sub = command[1].upper()
            if sub == b"LOAD":
                stripped = strip_key_locking(command[2])
                if stripped is not None:
                    sha = self.remember(command[2], stripped)
                    return Translated([*command[:2], stripped, *command[3:]], reply_sha=sha)
            elif sub == b"EXISTS":
                shas = []
                for sha in command[2:]:
                    source = self.source(sha)
                    shas.append(sha if source is None else sha1_hex(source))
                return Translated([*command[:2], *shas])
        return Translated(command)
