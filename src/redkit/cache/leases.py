"""The stampede lease: on a miss, one process across all loads while the others wait.

A key's lease is ``{<entry key>}#lease``, in the entry's cluster slot, so one script sees both.
The process that takes it (``take_lease.lua``) loads and stores the value only while it still
holds it (``store_if_leased.lua``), then gives it back (``release_lease.lua``). The others wait
for the value with sleeps between two reads (no connection held), and take over when the holder
gives up; a crashed holder blocks no one for longer than the lease.

A write leaves ``written`` in the lease of each key it changes (the *fence*): a load that began
before the write then cannot store its older value over the new one.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from redkit.cache.envelope import Entry
from redkit.cache.stats import Counters
from redkit.core.errors import BackendError
from redkit.core.flow import Flow
from redkit.core.ops import Command, ScriptCall, Sleep, command
from redkit.core.replies import as_int
from redkit.core.scripts import load_script

__all__ = ["RELEASE_LEASE", "STORE_IF_LEASED", "TAKE_LEASE", "WRITTEN", "Leases", "lease_key"]

log = logging.getLogger("redkit.cache")

#: Takes a key's lease, unless another caller holds it (or a write fenced it).
TAKE_LEASE = load_script("redkit.cache", "take_lease")
#: Stores a loaded value only while its lease is still held.
STORE_IF_LEASED = load_script("redkit.cache", "store_if_leased")
#: Gives a lease back, if the caller still holds it.
RELEASE_LEASE = load_script("redkit.cache", "release_lease")
#: What a write leaves in a key's lease: loads that began before it must not store.
WRITTEN = "written"
#: Pauses (seconds) between looks at a key another process is loading: short, then longer.
_FIRST_WAIT, _LONGEST_WAIT = 0.005, 0.1


def lease_key(redis_key: str) -> str:
    """The load lease of ``redis_key``, in the same cluster slot (so one script sees both)."""
    start = redis_key.find("{")
    end = redis_key.find("}", start + 1)
    if start != -1 and end > start + 1:  # the key has a hash tag of its own: keep it
        return redis_key + "#lease"
    return "{" + redis_key + "}#lease"


class Leases:
    """The load leases of one cache, ``lease_ms`` long (``None``: no leases, all may load).

    ``read`` reads the live entry of a Redis key: a waiter looks with it for the value that
    the lease holder stores.
    """

    def __init__(
        self,
        lease_ms: int | None,
        counters: Counters,
        read: Callable[[str], Flow[Entry | None]],
    ) -> None:
        self.lease_ms = lease_ms
        self._counters = counters
        self._read = read

    def fence(self, redis_keys: list[str]) -> tuple[Command, ...]:
        """Commands that mark these keys written, for loads that began before (see above)."""
        if not self.lease_ms:
            return ()
        return tuple(command("SET", lease_key(k), WRITTEN, "PX", self.lease_ms) for k in redis_keys)

    def try_take(self, redis_key: str) -> Flow[str | None]:
        """The lease to reload ``redis_key`` now, or ``None`` if another caller holds it.

        Without leases every caller may reload: the token is then empty.
        """
        if not self.lease_ms:
            return ""
        token = secrets.token_hex(8)
        won = yield ScriptCall(TAKE_LEASE, (lease_key(redis_key),), (token, self.lease_ms, WRITTEN))
        return token if as_int(won) == 1 else None

    def take_or_wait(self, redis_key: str) -> Flow[tuple[str | None, Entry | None]]:
        """Take the lease to load ``redis_key``, or wait for the process that holds it.

        Returns ``(token, None)`` when this caller is to load, ``(None, entry)`` when another
        process's load arrived meanwhile, and ``(None, None)`` when it did not arrive within
        the lease: the caller then loads after all (a crashed loader never blocks anyone for
        longer). Waiting holds no connection: it is a sleep between two reads.
        """
        if not self.lease_ms:
            return None, None
        token, entry = yield from self._take_after_miss(redis_key)
        if token or entry:
            return token, entry
        self._counters.add(leases_lost=1)
        deadline = time.monotonic() + self.lease_ms / 1000
        pause = _FIRST_WAIT
        while time.monotonic() < deadline:
            yield Sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, _LONGEST_WAIT)
            entry = yield from self._read(redis_key)
            if entry is not None:
                return None, entry
            # The loader may have given up (its load failed, or a write fenced its value
            # out): take over now instead of waiting out the lease.
            token, entry = yield from self._take_after_miss(redis_key)
            if token or entry:
                return token, entry
        return None, None

    def _take_after_miss(self, redis_key: str) -> Flow[tuple[str | None, Entry | None]]:
        """The lease to load ``redis_key`` after reading a miss, or the entry that came since.

        Another process may have loaded, stored and released between the read and the lease:
        a won lease is followed by one more read, so that load is not done twice.
        """
        token = yield from self.try_take(redis_key)
        if not token:
            return None, None
        entry = yield from self._read(redis_key)
        if entry is not None:
            yield from self.release(redis_key, token)
            return None, entry
        self._counters.add(leases_won=1)
        return token, None

    def store(self, redis_key: str, token: str, data: bytes, px: int) -> ScriptCall:
        """The call that stores ``data`` under ``redis_key`` only while ``token`` holds its lease.

        A write since the load began (the fence) wins over the older value. ``px`` is the key's
        time to live in milliseconds (0: none).
        """
        return ScriptCall(STORE_IF_LEASED, (redis_key, lease_key(redis_key)), (token, data, px))

    def release(self, redis_key: str, token: str | None) -> Flow[None]:
        """Give a load lease back, so waiters stop waiting (they would see the value anyway)."""
        if not token:
            return
        try:
            yield ScriptCall(RELEASE_LEASE, (lease_key(redis_key),), (token,))
        except BackendError as exc:
            log.warning("cache lease of %r not released (it expires): %s", redis_key, exc)
