"""Tags: an entry is stamped with each tag's current token; replacing the token invalidates.

Invalidating a tag is O(1) whatever it covers: ``SET`` a new random token under
``<namespace>[:<version>]#tag:<tag>``. An entry is served only while every tag it was stamped
with still holds the token it was stamped with. The stamp is read *before* the value is
produced, so an invalidation that lands between the read and the write leaves the entry with an
old token, and it is never served.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from redkit.cache.envelope import Entry
from redkit.core import keys
from redkit.core.errors import BackendError, InvalidArgumentError
from redkit.core.flow import Flow
from redkit.core.ops import Pipeline, ScriptCall, command
from redkit.core.replies import as_text
from redkit.core.scripts import load_script

__all__ = ["Tags"]

#: Reads a tag's token, creating it on first use.
TAG_TOKEN = load_script("redkit.cache", "tag_token")


class Tags:
    """The tags of one namespace (``prefix``: the namespace with its version part)."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix + "#tag:"

    def key(self, tag: str) -> str:
        """The Redis key of ``tag``'s token; a tag that is not a non-empty str is refused."""
        if not isinstance(tag, str) or not tag:
            raise InvalidArgumentError(f"a tag must be a non-empty str, got {tag!r}")
        return self._prefix + keys.escape(tag)

    def stamp(self, tags: Iterable[str]) -> Flow[dict[str, str]]:
        """The current token of each tag (created on first use), to stamp an entry with.

        Read before the value is produced: see the module's docstring.
        """
        wanted = sorted(set(tags))
        if not wanted:
            return {}
        calls = tuple(
            ScriptCall(TAG_TOKEN, (self.key(tag),), (secrets.token_hex(8),)) for tag in wanted
        )
        replies = yield Pipeline(calls)
        for reply in replies:
            if isinstance(reply, BackendError):
                raise reply
        return {tag: as_text(reply) for tag, reply in zip(wanted, replies, strict=True)}

    def still_valid(self, entries: list[Entry]) -> Flow[list[bool]]:
        """Whether each entry's tags still hold the tokens it was stamped with."""
        tags = sorted({tag for entry in entries for tag in entry.tags})
        if not tags:
            return [True] * len(entries)
        replies = yield Pipeline(tuple(command("GET", self.key(tag)) for tag in tags))
        current = {}
        for tag, reply in zip(tags, replies, strict=True):
            if isinstance(reply, BackendError):
                raise reply
            current[tag] = None if reply is None else as_text(reply)
        return [all(current[t] == token for t, token in e.tags.items()) for e in entries]

    def renew(self, tags: tuple[str, ...]) -> Flow[int]:
        """Give each tag a new token, in one round trip: every entry stamped before is stale."""
        names = [self.key(tag) for tag in tags]
        if not names:
            return 0
        replies = yield Pipeline(tuple(command("SET", n, secrets.token_hex(8)) for n in names))
        for reply in replies:
            if isinstance(reply, BackendError):
                raise reply
        return len(names)
