"""The gateway's upstream, the Redis it forwards to: raw commands over pooled connections.

The gateway relays replies as Redis sends them, so it writes commands to redis-py
connections and reads the parsed RESP2 replies itself, with none of redis-py's reply
callbacks (which would turn ``HGETALL`` into a dict, ``SET`` into ``True``...).

A standalone server gets a blocking pool: when every connection is busy a request waits for
one (up to the socket timeout). A cluster uses redis-py's cluster client for the topology and
its per-node pools; the gateway routes each command to the node of its keys' slot, fans out the
few keyless commands that concern every node (``KEYS``, ``SCAN``, ``DBSIZE``, ``SCRIPT
LOAD``...), and refreshes the topology and retries once on ``MOVED``.

A batch that runs a script is watched (:mod:`redkit.gateway.watchdog`): past the gateway's time
limit, the script is killed on the node running it.

A pub/sub stream (:meth:`Upstream.subscribe`) gets a connection of its own, outside the pools:
a subscribed connection serves nothing else, so it is never taken from a pool nor put back.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Sequence
from typing import Any, Protocol

import redis.asyncio
import redis.asyncio.cluster
from redis import exceptions as rx
from redis.asyncio.connection import AbstractConnection

from redkit.core.errors import RedkitError, UpstreamError
from redkit.drivers.connect import Connection
from redkit.gateway.protocol import RawCommand, Reply, command_name
from redkit.gateway.watchdog import DEFAULT_SCRIPT_TIMEOUT, Watchdog

__all__ = ["ClusterUpstream", "CrossSlotError", "StandaloneUpstream", "Upstream", "open_upstream"]

#: Connections to a standalone server at most; more concurrent requests wait for one.
DEFAULT_MAX_CONNECTIONS = 64


class CrossSlotError(RedkitError):
    """A transaction's keys are in more than one cluster slot: HTTP 400, with the message."""


class Upstream(Protocol):
    """What the gateway forwards a token's commands to: one Redis, standalone or cluster.

    Not a :class:`redkit.core.driver.Backend`: it relays raw commands and replies as Redis
    sends them, with no flows, encoding or reply conversion.
    """

    async def run(self, commands: Sequence[RawCommand]) -> list[Reply]:
        """Run ``commands`` in order, pipelined; a Redis error is an item, never raised."""
        ...

    async def transaction(self, commands: Sequence[RawCommand]) -> list[Reply]:
        """``MULTI``, ``commands``, ``EXEC`` on one connection: the replies of ``EXEC``.

        Raises ``ResponseError`` when Redis discards the transaction, :class:`CrossSlotError` when
        a cluster cannot run it on one node.
        """
        ...

    async def subscribe(self, command: RawCommand) -> tuple[AbstractConnection, list[Reply]]:
        """Run ``command`` (``SUBSCRIBE``...) on a new connection, outside the pools.

        Returns the connection and the confirmations, one per channel. The caller reads the
        messages that follow and disconnects it. Raises :class:`UpstreamError` when Redis
        cannot be reached, ``ResponseError`` when it refuses.
        """
        ...

    async def aclose(self) -> None:
        """Close every pooled connection."""
        ...


async def _exchange(
    conn: AbstractConnection,
    commands: Sequence[Sequence[bytes]],
    replies: list[Reply] | None = None,
    timeout: float | None = None,
) -> list[Reply]:
    """Write ``commands`` in one go, read one reply each; Redis errors come back as items.

    The replies go into ``replies`` as they are read (the watchdog follows them there), each
    read waiting up to ``timeout`` (default: the connection's socket timeout).
    """
    replies = [] if replies is None else replies
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        for _ in commands:
            try:
                replies.append(await conn.read_response(timeout=timeout))
            except rx.ResponseError as exc:
                replies.append(exc)
        return replies
    except BaseException:
        # A half-read connection must not go back into the pool as it is.
        await conn.disconnect()
        raise


async def _subscribed(conn: AbstractConnection, command: RawCommand) -> list[Reply]:
    """Connect ``conn``, send ``command``, read its confirmations (one per channel)."""
    try:
        await conn.connect()  # type: ignore[no-untyped-call]
        await conn.send_command(*command)
        return [await conn.read_response() for _ in command[1:]]
    except (rx.ConnectionError, rx.TimeoutError) as exc:
        await conn.disconnect()
        raise _failure(exc) from exc
    except BaseException:
        await conn.disconnect()
        raise


def _failure(exc: Exception) -> UpstreamError:
    kind = "did not answer in time" if isinstance(exc, rx.TimeoutError) else "is unavailable"
    return UpstreamError(f"ERR Redis {kind}: {exc}")


def _admin(
    connection_class: type[AbstractConnection], kwargs: dict[str, Any]
) -> AbstractConnection:
    """A connection of the watchdog's own to a pool's node, for SCRIPT KILL.

    Without ``SELECT`` or ``CLIENT SETNAME`` on connect: a busy Redis refuses both, and
    ``SCRIPT KILL`` concerns the whole server.
    """
    return connection_class(**{**kwargs, "db": 0, "client_name": None})


async def _watched(
    watchdog: Watchdog,
    node: str,
    admin: functools.partial[AbstractConnection],
    conn: AbstractConnection,
    commands: Sequence[RawCommand],
    *,
    multi: bool,
) -> Any:
    """Run ``commands`` on ``conn`` under ``watchdog``; ``multi``: as MULTI/EXEC.

    Returns the replies, or for ``multi`` the replies to queueing and EXEC's.
    """
    batch = [[b"MULTI"], *commands, [b"EXEC"]] if multi else list(commands)
    replies = await watchdog.run(node, batch, functools.partial(_exchange, conn, batch), admin)
    return (replies[1:-1], replies[-1]) if multi else replies


def _exec_result(queued: list[Reply], result: Reply) -> list[Reply]:
    if isinstance(result, rx.ResponseError):
        # EXECABORT: name the first reason, as Redis's own text does not.
        reasons = [reply for reply in queued if isinstance(reply, rx.ResponseError)]
        if reasons:
            from redkit.gateway.protocol import error_message

            raise rx.ResponseError(
                "EXECABORT Transaction discarded because of previous errors: "
                + error_message(reasons[0])
            )
        raise result
    if result is None:
        raise rx.ResponseError("EXECABORT Transaction discarded")
    return list(result)


class StandaloneUpstream:
    """A standalone Redis behind one blocking pool."""

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        script_timeout: float | None = DEFAULT_SCRIPT_TIMEOUT,
    ) -> None:
        settings = dict(options)
        most = settings.pop("max_connections", DEFAULT_MAX_CONNECTIONS)
        settings.pop("retry", None)
        self._pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=most, timeout=settings.get("socket_timeout"), **settings
        )
        self._watchdog = Watchdog(script_timeout, settings.get("socket_timeout"))
        kwargs = self._pool.connection_kwargs
        self._node = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        self._admin = functools.partial(_admin, self._pool.connection_class, kwargs)

    async def _with_connection(self, commands: Sequence[RawCommand], *, multi: bool) -> Any:
        try:
            conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        except (rx.ConnectionError, rx.TimeoutError) as exc:
            raise _failure(exc) from exc
        try:
            result = await _watched(
                self._watchdog, self._node, self._admin, conn, commands, multi=multi
            )
            return _exec_result(*result) if multi else result
        except (rx.ConnectionError, rx.TimeoutError) as exc:
            raise _failure(exc) from exc
        finally:
            await self._pool.release(conn)

    async def run(self, commands: Sequence[RawCommand]) -> list[Reply]:
        """Run ``commands`` pipelined on one connection."""
        result: list[Reply] = await self._with_connection(commands, multi=False)
        return result

    async def transaction(self, commands: Sequence[RawCommand]) -> list[Reply]:
        """Run ``commands`` in ``MULTI``/``EXEC`` on one connection."""
        result: list[Reply] = await self._with_connection(commands, multi=True)
        return result

    async def subscribe(self, command: RawCommand) -> tuple[AbstractConnection, list[Reply]]:
        """``command`` on a new connection with the pool's settings, not from the pool."""
        conn = self._pool.connection_class(**self._pool.connection_kwargs)
        return conn, await _subscribed(conn, command)

    async def aclose(self) -> None:
        """Close the pool's connections."""
        await self._pool.disconnect()


# Keyless commands that concern every primary of a cluster, and how to merge the replies.
_FAN_OUT = frozenset({"KEYS", "SCAN", "DBSIZE", "FLUSHALL", "FLUSHDB", "SCRIPT"})


class ClusterUpstream:
    """A Redis Cluster: commands routed by slot over redis-py's per-node pools."""

    def __init__(
        self,
        url: str,
        options: dict[str, Any],
        script_timeout: float | None = DEFAULT_SCRIPT_TIMEOUT,
    ) -> None:
        settings = dict(options)
        settings.pop("retry", None)
        self._client = redis.asyncio.cluster.RedisCluster.from_url(url, **settings)
        self._refresh = asyncio.Lock()
        self._watchdog = Watchdog(script_timeout, settings.get("socket_timeout"))

    async def _ready(self) -> Any:
        try:
            return await self._client.initialize()
        except (rx.RedisError, rx.RedisClusterException, OSError) as exc:
            raise _failure(exc) from exc

    async def _slot(self, command: RawCommand) -> int | None:
        """The slot of ``command``'s keys; ``None`` for a keyless one."""
        name = command_name(command)
        keys: Sequence[Any] | None
        if name in ("EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"):
            try:
                count = int(command[2])
            except (IndexError, ValueError):
                return None  # Redis will say what is wrong with it
            keys = command[3 : 3 + max(count, 0)]
        else:
            try:
                keys = await self._client.commands_parser.get_keys(name, *command[1:])
            except (rx.RedisError, rx.RedisClusterException, IndexError, KeyError):
                return None  # an unknown command: any node answers that it is unknown
        if not keys:
            return None
        slots = {self._client.keyslot(key) for key in keys}
        if len(slots) > 1:
            raise CrossSlotError(f"CROSSSLOT Keys in request don't hash to the same slot ({name})")
        return slots.pop()

    def _node(self, slot: int | None) -> Any:
        if slot is None:
            return self._client.get_default_node()
        return self._client.nodes_manager.get_node_from_slot(slot)

    async def _on_node(
        self, node: Any, commands: Sequence[RawCommand], *, multi: bool = False
    ) -> Any:
        try:
            conn = node.acquire_connection()
        except rx.MaxConnectionsError as exc:
            raise _failure(exc) from exc
        admin = functools.partial(_admin, node.connection_class, node.connection_kwargs)
        try:
            return await _watched(self._watchdog, node.name, admin, conn, commands, multi=multi)
        except (rx.ConnectionError, rx.TimeoutError) as exc:
            raise _failure(exc) from exc
        finally:
            node.release(conn)

    async def _refresh_topology(self) -> None:
        async with self._refresh:
            try:
                await self._client.nodes_manager.initialize()
            except (rx.RedisError, rx.RedisClusterException) as exc:
                raise _failure(exc) from exc

    def _primaries(self) -> list[Any]:
        return sorted(self._client.get_primaries(), key=lambda node: node.name)

    async def _fan_out(self, command: RawCommand) -> Reply:
        """A keyless command about the whole keyspace, run on every primary and merged."""
        name = command_name(command)
        primaries = self._primaries()
        if name == "SCAN":
            return await self._scan(command, primaries)
        replies = await asyncio.gather(*(self._on_node(node, [command]) for node in primaries))
        results = [reply[0] for reply in replies]
        for result in results:
            if isinstance(result, rx.ResponseError):
                return result
        if name == "KEYS":
            return [key for result in results for key in result]
        if name == "DBSIZE":
            return sum(results)
        if name == "SCRIPT" and len(command) > 1 and command[1].upper() == b"EXISTS":
            return [int(all(found)) for found in zip(*results, strict=True)]
        return results[0]

    async def _scan(self, command: RawCommand, primaries: list[Any]) -> Reply:
        # One cursor over every primary: node index + its own cursor * node count.
        count = len(primaries)
        try:
            cursor = int(command[1])
        except (IndexError, ValueError):
            return (await self._on_node(primaries[0], [command]))[0]
        index, inner = cursor % count, cursor // count
        if cursor < 0 or index >= count:
            return rx.ResponseError("ERR invalid cursor")
        page = [command[0], str(inner).encode(), *command[2:]]
        reply = (await self._on_node(primaries[index], [page]))[0]
        if isinstance(reply, rx.ResponseError):
            return reply
        following, keys = int(reply[0]), reply[1]
        # When this node is done: the next one from its start, or 0 (the end) after the last.
        combined = following * count + index if following else (index + 1) % count
        return [str(combined).encode(), keys]

    def _fans_out(self, command: RawCommand) -> bool:
        name = command_name(command)
        if name == "SCRIPT":
            return len(command) > 1 and command[1].upper() in (b"LOAD", b"FLUSH", b"EXISTS")
        return name in _FAN_OUT

    async def run(self, commands: Sequence[RawCommand]) -> list[Reply]:
        """Run ``commands``: batched per node, in order where order can matter."""
        await self._ready()
        replies: list[Reply] = [None] * len(commands)
        batch: dict[Any, list[int]] = {}

        async def flush() -> None:
            nodes = list(batch.items())
            batch.clear()
            results = await asyncio.gather(
                *(self._on_node(node, [commands[i] for i in indexes]) for node, indexes in nodes)
            )
            for (_, indexes), result in zip(nodes, results, strict=True):
                for i, reply in zip(indexes, result, strict=True):
                    replies[i] = reply

        for index, command in enumerate(commands):
            if self._fans_out(command):
                await flush()
                replies[index] = await self._fan_out(command)
                continue
            try:
                slot = await self._slot(command)
            except CrossSlotError as exc:
                replies[index] = rx.ResponseError(str(exc))
                continue
            node = self._node(slot) if slot is not None else random.choice(self._primaries())
            batch.setdefault(node, []).append(index)
        await flush()
        moved = [i for i, reply in enumerate(replies) if isinstance(reply, rx.AskError)]
        if moved:
            # The slot moved (MOVED; ASK during a migration): the command did not run there.
            await self._refresh_topology()
            for i in moved:
                slot = await self._slot(commands[i])
                replies[i] = (await self._on_node(self._node(slot), [commands[i]]))[0]
        return replies

    async def transaction(self, commands: Sequence[RawCommand]) -> list[Reply]:
        """Run ``commands`` atomically on the node of their one slot."""
        await self._ready()
        slots = set()
        for command in commands:
            if self._fans_out(command):
                raise CrossSlotError(
                    f"ERR {command_name(command)} concerns every node of the cluster: "
                    "it cannot run in a transaction"
                )
            slot = await self._slot(command)
            if slot is not None:
                slots.add(slot)
        if len(slots) > 1:
            raise CrossSlotError(
                "CROSSSLOT the keys of a transaction on a Redis Cluster must all hash to one "
                "slot: give them a common {hash tag}"
            )
        slot = slots.pop() if slots else None
        for attempt in range(2):
            queued, result = await self._on_node(self._node(slot), commands, multi=True)
            if attempt == 0 and any(isinstance(reply, rx.AskError) for reply in queued):
                await self._refresh_topology()
                continue
            break
        return _exec_result(queued, result)

    async def subscribe(self, command: RawCommand) -> tuple[AbstractConnection, list[Reply]]:
        """``command`` on a new connection to a primary, not from its pool.

        Any primary does: a cluster broadcasts ``PUBLISH`` (not ``SPUBLISH``) to every node.
        """
        await self._ready()
        node = random.choice(self._primaries())
        conn = node.connection_class(**node.connection_kwargs)
        return conn, await _subscribed(conn, command)

    async def aclose(self) -> None:
        """Close every node's connections."""
        await self._client.aclose()


def open_upstream(
    target: str | Connection,
    *,
    script_timeout: float | None = DEFAULT_SCRIPT_TIMEOUT,
    **options: Any,
) -> StandaloneUpstream | ClusterUpstream:
    """An upstream for a URL or a :class:`redkit.Connection` (its URL and client options).

    ``script_timeout``: the seconds after which a script is killed (``None``: never).
    """
    conn = target if isinstance(target, Connection) else Connection(target)
    settings = {**conn._options, **options}  # the socket timeouts and any redis-py options
    # RESP2, whatever the client's default: its replies are what the REST protocol carries
    # (RESP3 maps, doubles and sets would need reshaping).
    settings["protocol"] = 2
    if conn.is_cluster:
        return ClusterUpstream(conn._client_url, settings, script_timeout)
    return StandaloneUpstream(conn._client_url, settings, script_timeout)
