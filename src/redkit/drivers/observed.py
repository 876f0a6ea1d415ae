"""What a driver reports: round trips, commands, timeouts, errors (feature ``"driver"``).

A driver's :class:`DriverTelemetry` is named after its kind (``"standalone"``, ``"cluster"``,
``"rest"``) and counts, through the observers of :mod:`redkit.core.telemetry`:

- ``round_trips``: requests that went to the server and came back: one per operation sent
  alone (a pipeline is one), one per write of an auto-pipelined connection, one per HTTP
  request of the REST driver (a batch of callers is one). The blocking driver counts one per
  operation even when several threads' operations share one write.
- ``batched_commands``: the commands that rode along, beyond the first of each round trip (a
  pipeline's other items, a batch's): commands sent = ``round_trips + batched_commands``.
  Counted that way, an operation sent alone is one count, not two: the blocking driver makes
  one on every operation.
- ``timeouts``: operations that failed with :class:`~redkit.errors.BackendTimeout`;
  ``errors``: operations that failed with another :class:`~redkit.errors.BackendError` that
  is not an error reply of the server (a refused or lost connection, say).

A circuit breaker in front of the driver reports ``circuit_opened`` and ``circuit_closed``
under the same name (:mod:`redkit.core.breaker`). Counting per write, not per command, keeps
the auto-pipelined path's cost one call per batch.
"""

from __future__ import annotations

from redkit.core.errors import BackendError, BackendTimeout, CommandError
from redkit.core.ops import Pipeline, RedisOp
from redkit.core.telemetry import Telemetry

__all__ = ["DriverTelemetry", "commands_in"]


class DriverTelemetry(Telemetry):
    """A driver's reporter; see the module's documentation for its counters."""

    __slots__ = ()

    def __init__(self, kind: str) -> None:
        """Report as driver ``kind`` (``"standalone"``, ``"cluster"`` or ``"rest"``)."""
        super().__init__("driver", kind)

    def sent(self, commands: int) -> None:
        """One round trip that carried ``commands`` commands."""
        for observer in self._observers():
            observer.count("driver", self.name, "round_trips", 1)
            if commands > 1:
                observer.count("driver", self.name, "batched_commands", commands - 1)

    def failed(self, exc: BaseException) -> None:
        """An operation failed with ``exc``: a timeout, an error, or (a reply) nothing."""
        if isinstance(exc, BackendTimeout):
            self.count("timeouts")
        elif isinstance(exc, BackendError) and not isinstance(exc, CommandError):
            self.count("errors")


def commands_in(op: RedisOp) -> int:
    """The commands ``op`` sends: a pipeline's items, else one."""
    return len(op.ops) if isinstance(op, Pipeline) else 1
