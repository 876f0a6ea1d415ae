"""The concurrency limiter's operations, each one atomic script call written once as a flow."""

from __future__ import annotations

import secrets

from redkit.core import keys
from redkit.core.clock import Clock
from redkit.core.durations import Duration, duration_ms
from redkit.core.errors import NO_ANSWER, InvalidArgumentError
from redkit.core.flow import Flow
from redkit.core.ops import ScriptCall, command
from redkit.core.replies import as_int
from redkit.core.telemetry import Telemetry
from redkit.ratelimit import scripts
from redkit.ratelimit.concurrency.lease import Lease
from redkit.ratelimit.concurrency.limit import ConcurrencyLimit
from redkit.ratelimit.flows import TimeoutPolicy, identifier_part
from redkit.ratelimit.limiters import SERVER_TIME, ratelimit_script

__all__ = ["ConcurrencyFlows"]

#: The last part of every concurrency key: ``<prefix>:<identifier>:concurrency``.
_SUFFIX = ":concurrency"


class ConcurrencyFlows:
    """The flows of one configured concurrency limiter; the facades run them."""

    def __init__(
        self,
        limit: ConcurrencyLimit,
        *,
        prefix: str,
        cluster: bool,
        clock: Clock,
        on_timeout: TimeoutPolicy,
    ) -> None:
        if not isinstance(limit, ConcurrencyLimit):
            raise InvalidArgumentError(
                f"limit must be a ConcurrencyLimit, got {type(limit).__name__}"
            )
        if on_timeout not in ("allow", "deny"):
            raise InvalidArgumentError(f'on_timeout must be "allow" or "deny", got {on_timeout!r}')
        self.limit = limit
        self._prefix_sep = keys.check_prefix(prefix) + ":"
        #: Where acquires, refusals, releases and timeouts are reported (docs/stats.md).
        self.telemetry = Telemetry("concurrency", prefix)
        self.cluster = cluster
        self.clock = clock
        self.on_timeout: TimeoutPolicy = on_timeout
        self._acquire = ratelimit_script("concurrency_acquire")
        self._release = ratelimit_script("concurrency_release")
        self._extend = ratelimit_script("concurrency_extend")
        self._count = ratelimit_script("concurrency_count")

    def key(self, identifier: str | int) -> str:
        """The identifier's sorted set: ``prefix:identifier:concurrency`` (tagged on a cluster)."""
        return self._prefix_sep + identifier_part(identifier, self.cluster) + _SUFFIX

    def _now(self) -> int:
        return SERVER_TIME if self.clock.server else int(self.clock.now_ms())

    def acquire(self, identifier: str | int, lease: Duration | None = None) -> Flow[Lease]:
        """Take a slot of ``identifier`` for ``lease`` (the limiter's lease by default)."""
        key = self.key(identifier)
        lease_ms = self.limit.lease_ms if lease is None else duration_ms(lease, name="lease")
        limit = self.limit.max_in_flight
        token = secrets.token_hex(16)
        try:
            args = scripts.concurrency_acquire_args(
                now=self._now(), token=token, limit=limit, lease=lease_ms
            )
            reply = yield ScriptCall(self._acquire, (key,), args)
        except NO_ANSWER:
            # The script may have run: then the slot stays taken until the lease ends.
            self.telemetry.count("timeout")
            return Lease(self.on_timeout == "allow", limit, 0, identifier, reason="timeout")
        acquired, held, ends, now = (as_int(part) for part in reply)
        remaining = max(0, limit - held)
        if acquired:
            self.telemetry.count("acquired")
            return Lease(True, limit, remaining, identifier, token, ends)
        self.telemetry.count("refused")
        return Lease(False, limit, remaining, identifier, retry_after=max(0, ends - now) / 1000)

    def release(self, lease: Lease) -> Flow[bool]:
        """Give the lease's slot back; false when it was not held (any more), or no answer."""
        _check_lease(lease)
        if not lease._took_slot:
            return False  # refused, or the timeout policy's answer: nothing to give back
        key = self.key(lease.identifier)
        try:
            args = scripts.concurrency_release_args(now=self._now(), token=lease.token)
            released = yield ScriptCall(self._release, (key,), args)
        except NO_ANSWER:
            return False  # the lease ends on its own; an exit path must not fail on it
        if as_int(released):
            self.telemetry.count("released")
            return True
        return False

    def extend(self, lease: Lease, lease_duration: Duration | None = None) -> Flow[bool]:
        """Make a held lease end ``lease_duration`` from now; false when it had ended."""
        _check_lease(lease)
        lease_ms = (
            self.limit.lease_ms
            if lease_duration is None
            else duration_ms(lease_duration, name="lease_duration")
        )
        if not lease._took_slot:
            return False
        key = self.key(lease.identifier)
        try:
            args = scripts.concurrency_extend_args(
                now=self._now(), token=lease.token, lease=lease_ms
            )
            reply = yield ScriptCall(self._extend, (key,), args)
        except NO_ANSWER:
            return False  # not renewed, as far as anyone can tell
        return bool(as_int(reply[0]))

    def in_flight(self, identifier: str | int) -> Flow[int]:
        """How many leases of ``identifier`` are held now."""
        args = scripts.concurrency_count_args(now=self._now())
        held = yield ScriptCall(self._count, (self.key(identifier),), args)
        return as_int(held)

    def reset(self, identifier: str | int) -> Flow[int]:
        """Drop every lease of ``identifier``; return how many keys were deleted (0 or 1)."""
        deleted = yield command("DEL", self.key(identifier))
        return as_int(deleted)


def _check_lease(lease: object) -> None:
    if not isinstance(lease, Lease):
        raise InvalidArgumentError(f"expected a Lease, got {type(lease).__name__}")
