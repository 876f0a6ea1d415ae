"""The gateway's script time limit: a script that runs too long is killed, not waited for.

A script (``EVAL``, ``EVALSHA``, ``EVAL_RO``, ``EVALSHA_RO``, ``FCALL``, ``FCALL_RO``) holds its
Redis server for as long as it runs, and Redis's own ``lua-time-limit``
(``busy-reply-threshold`` in Redis 7) only makes it answer ``BUSY`` to every other client; it
never stops the script. So when a batch that holds a script has waited on its connection for
longer than the gateway's limit, :class:`Watchdog` sends ``SCRIPT KILL`` (``FUNCTION KILL`` for
a function) to the same node over a connection of its own, never one of the busy pool's. Redis
then answers the script's caller with an error, which the gateway words as its own, and the
caller's connection stays usable.

- The limit counts from when the batch is sent: in ``/pipeline`` and ``/multi-exec`` it is the
  time of the whole batch on that connection (on a cluster, of the node's share of it).
- Redis reads other clients, ``SCRIPT KILL`` included, only once a script has run past its
  ``lua-time-limit`` (5 s by default), so the kill lands at the larger of the two limits. The
  watchdog reads the server's (``CONFIG GET lua-time-limit``) the first time it guards a script
  on a node, and reads replies for long enough for the kill to land.
- ``SCRIPT KILL`` stops whatever script is running on that server: on a server shared with
  other clients, the one that holds it past the limit, whoever sent it.
- A script that has written cannot be killed (``UNKILLABLE``): it runs to its end, or until
  ``SHUTDOWN NOSAVE``. The watchdog logs that as an error, drops the caller's connection and
  answers an error instead of waiting for the script.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from redis import exceptions as rx
from redis.asyncio.connection import AbstractConnection

from redkit.core.errors import InvalidArgumentError
from redkit.gateway.protocol import RawCommand, Reply, command_name, error_message

__all__ = ["DEFAULT_SCRIPT_TIMEOUT", "SCRIPT_COMMANDS", "Watchdog"]

log = logging.getLogger("redkit.gateway")

#: The gateway's default limit on a script's run, in seconds: Redis's own default
#: ``lua-time-limit``, after which Redis answers ``BUSY`` to everyone anyway.
DEFAULT_SCRIPT_TIMEOUT = 5.0

#: The commands that run a script, and what kills each.
SCRIPT_COMMANDS = {
    "EVAL": b"SCRIPT",
    "EVALSHA": b"SCRIPT",
    "EVAL_RO": b"SCRIPT",
    "EVALSHA_RO": b"SCRIPT",
    "FCALL": b"FUNCTION",
    "FCALL_RO": b"FUNCTION",
}

#: Redis's default ``lua-time-limit``, assumed where ``CONFIG GET`` is refused.
_REDIS_DEFAULT_LIMIT = 5.0
#: Seconds between kills while scripts of the batch still run past the limit (one killed, the
#: pipeline's next script starts, already late).
_POLL = 0.1

#: Runs the batch on the pooled connection: appends each reply to the list as it is read, with
#: the given read timeout (``None``: the connection's own).
Exchange = Callable[[list[Reply], "float | None"], Awaitable[list[Reply]]]
#: A new, unconnected connection to the batch's node, for the kill.
Opener = Callable[[], AbstractConnection]


def _kills(commands: Sequence[RawCommand], answered: int) -> list[bytes]:
    """What kills the scripts of ``commands`` that have no reply yet."""
    rest = commands[answered:]
    if rest and command_name(rest[0]) == "EXEC":
        # EXEC's reply answers the whole queue. Clients cannot send EXEC: it is the gateway's.
        rest = commands
    kinds = {SCRIPT_COMMANDS.get(command_name(command)) for command in rest}
    return sorted(kind for kind in kinds if kind is not None)[::-1]  # SCRIPT, then FUNCTION


@dataclass
class _Watch:
    #: A kill was sent: the batch's reply may say so before the kill's own answer is read.
    sent: bool = False
    unkillable: bool = False


class Watchdog:
    """Kills the scripts of a batch that runs past ``limit`` seconds on its connection.

    Args:
        limit: seconds; ``None`` turns the watch off (a script runs as long as it runs).
        socket_timeout: the pooled connections' read timeout: a watched batch's reads wait the
            effective limit plus this.

    """

    def __init__(self, limit: float | None, socket_timeout: float | None) -> None:
        if limit is not None and not limit > 0:
            raise InvalidArgumentError(
                f"the script time limit must be positive seconds, got {limit!r}"
            )
        self.limit = limit
        self._socket_timeout = socket_timeout
        self._server_limits: dict[str, float] = {}

    def watches(self, commands: Sequence[RawCommand]) -> bool:
        """Whether ``commands`` run a script that the limit applies to."""
        return self.limit is not None and any(
            command_name(command) in SCRIPT_COMMANDS for command in commands
        )

    async def run(
        self, node: str, commands: Sequence[RawCommand], exchange: Exchange, opener: Opener
    ) -> list[Reply]:
        """``exchange()``, with the kill of its scripts once they run past the limit.

        ``node`` names the server (``host:port``) for the log and for its ``lua-time-limit``;
        ``opener`` gives a connection to it. A killed script's reply becomes the gateway's
        error; after ``UNKILLABLE`` the replies not read yet are that error.
        """
        if self.limit is None or not self.watches(commands):
            return await exchange([], None)
        limit = self.limit
        server_limit = await self._server_limit(node, opener)
        margin = self._socket_timeout
        # The kill lands at max(limit, server_limit); the reply comes right after it.
        timeout = None if margin is None else max(limit, server_limit) + _POLL + margin
        replies: list[Reply] = []
        watch = _Watch()
        reader = asyncio.ensure_future(exchange(replies, timeout))
        guard = asyncio.ensure_future(self._guard(limit, node, commands, replies, opener, watch))
        try:
            await asyncio.wait({reader, guard}, return_when=asyncio.FIRST_COMPLETED)
            if watch.unkillable and not reader.done():
                # Waiting would hold the request until the script ends, if ever. Cancelled, the
                # exchange drops the connection, whose reply is still to come.
                reader.cancel()
                await asyncio.wait({reader})
                log.error(
                    "a script on %s ran past the gateway's time limit of %g s and cannot be "
                    "killed: it has written. Redis answers BUSY to every client until it ends; "
                    "only SHUTDOWN NOSAVE stops it (losing the writes since the last save)",
                    node,
                    limit,
                )
                error = rx.ResponseError(_unkillable_message(limit))
                return replies + [error] * (len(commands) - len(replies))
            result = await reader
        finally:
            reader.cancel()
            guard.cancel()
            await asyncio.gather(reader, guard, return_exceptions=True)
        if watch.sent:
            message = _killed_message(limit, server_limit)
            result = [
                _reworded(reply, message, nested=command_name(command) == "EXEC")
                for command, reply in zip(commands, result, strict=True)
            ]
        return result

    async def _guard(
        self,
        limit: float,
        node: str,
        commands: Sequence[RawCommand],
        replies: list[Reply],
        opener: Opener,
        watch: _Watch,
    ) -> None:
        """After the limit, kill the batch's running scripts until it is answered."""
        await asyncio.sleep(limit)
        conn: AbstractConnection | None = None
        try:
            while kills := _kills(commands, len(replies)):
                for kind in kills:
                    if conn is None:
                        conn = opener()
                    try:
                        # The answer comes once Redis reads other clients: at its own limit.
                        watch.sent = True
                        await conn.send_command(kind, b"KILL")
                        await conn.read_response(timeout=self._kill_timeout(node))
                    except rx.ResponseError as exc:
                        if error_message(exc).startswith("UNKILLABLE"):
                            watch.unkillable = True
                            return
                        # NOTBUSY: no such script runs (not started yet, or just ended).
                    except (rx.ConnectionError, rx.TimeoutError, OSError) as exc:
                        log.warning("cannot send %s KILL to %s: %s", kind.decode(), node, exc)
                        await conn.disconnect()
                        conn = None
                    else:
                        log.warning(
                            "killed a script on %s: it ran past the gateway's time limit of %g s",
                            node,
                            limit,
                        )
                await asyncio.sleep(_POLL)
        except Exception:  # a bug here must not fail the request, which goes on unwatched
            log.exception("the script watchdog failed")
        finally:
            if conn is not None:
                await conn.disconnect()

    def _kill_timeout(self, node: str) -> float:
        return self._server_limits.get(node, _REDIS_DEFAULT_LIMIT) + (
            self._socket_timeout or _REDIS_DEFAULT_LIMIT
        )

    async def _server_limit(self, node: str, opener: Opener) -> float:
        """The node's ``lua-time-limit`` in seconds: read once, else Redis's default."""
        known = self._server_limits.get(node)
        if known is not None:
            return known
        conn = opener()
        try:
            await conn.send_command(b"CONFIG", b"GET", b"lua-time-limit")
            reply = await conn.read_response(timeout=_REDIS_DEFAULT_LIMIT + _POLL)
            seconds = max(0.0, int(reply[1]) / 1000) if len(reply) == 2 else _REDIS_DEFAULT_LIMIT
        except rx.ResponseError as exc:
            if error_message(exc).startswith("BUSY"):
                return _REDIS_DEFAULT_LIMIT  # a script runs now: ask again next time
            # CONFIG renamed or refused by an ACL, as on managed services: assume the default.
            log.info("cannot read lua-time-limit on %s (%s): assuming 5 s", node, exc)
            seconds = _REDIS_DEFAULT_LIMIT
        except (rx.RedisError, OSError, ValueError, TypeError, IndexError) as exc:
            log.info("cannot read lua-time-limit on %s (%s): assuming 5 s", node, exc)
            return _REDIS_DEFAULT_LIMIT
        finally:
            await conn.disconnect()
        self._server_limits[node] = seconds
        if self.limit is not None and seconds > self.limit:
            log.warning(
                "Redis on %s takes SCRIPT KILL only after its lua-time-limit of %g s: scripts "
                "there run that long, past the gateway's limit of %g s (lower it with "
                "CONFIG SET lua-time-limit)",
                node,
                seconds,
                self.limit,
            )
        return seconds


def _killed_message(limit: float, server_limit: float) -> str:
    later = ""
    if server_limit > limit:
        later = f" (Redis lets a script be killed only past its lua-time-limit, {server_limit:g} s)"
    return (
        f"ERR the script ran past the gateway's time limit of {limit:g} s and was killed{later}: "
        "raise the limit with --script-timeout (REDKIT_GATEWAY_SCRIPT_TIMEOUT, "
        "Gateway(script_timeout=...)), or make the script do less per call"
    )


def _unkillable_message(limit: float) -> str:
    return (
        f"UNKILLABLE the script ran past the gateway's time limit of {limit:g} s, but it has "
        "written already, so Redis cannot kill it: it runs on, and Redis answers BUSY to every "
        "client until it ends (only SHUTDOWN NOSAVE stops it, losing the writes since the last "
        "save)"
    )


def _reworded(reply: Reply, message: str, *, nested: bool) -> Reply:
    """``reply`` (for EXEC: each item) with Redis's kill error in the gateway's words."""
    if isinstance(reply, rx.ResponseError) and "killed by user" in str(reply):
        return rx.ResponseError(message)
    if nested and isinstance(reply, list):
        return [_reworded(item, message, nested=False) for item in reply]
    return reply
