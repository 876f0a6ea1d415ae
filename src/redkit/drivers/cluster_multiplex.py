"""Auto-pipelining on a Redis Cluster: shared connections per node, redirections per operation.

Each master gets connections of its own (:class:`~redkit.drivers.multiplex.MultiplexedConnection`,
opened by redis-py from that node's settings, so TLS and ``AUTH`` hold). An operation goes to
the master that owns the slot of its first key, as redis-py's slot map says; the operations
that tasks issue in one event-loop pass go out in one write per node, and a node that is slow
or gone holds up only the operations sent to it.

Redirections are followed per operation, never per batch:

- ``MOVED`` (the slot has a new owner): the slot map is corrected (redis-py's
  ``NodesManager.move_slot``) and the operation is sent to the new owner.
- ``ASK`` (the slot is being migrated and this key has left): ``ASKING`` and the command go to
  the target in one write on one connection; the slot map is left as it is.
- At most :data:`MAX_REDIRECTIONS` of them, then :class:`BackendUnavailable`.
- ``TRYAGAIN`` and ``CLUSTERDOWN`` (nothing was applied): the operation is re-sent on the
  driver's ordinary path, where redis-py retries and redkit translates as without
  auto-pipelining. In a pipeline, a ``TRYAGAIN`` item is re-sent so, alone, and a
  ``CLUSTERDOWN`` stays in its place as the error, as in redis-py's cluster pipeline.

A connection that breaks fails the operations waiting on it (:class:`BackendUnavailable`, or
:class:`BackendTimeout` past the deadline) and starts one topology refresh in the background,
shared by every caller. What cannot be placed on a node by its first key (commands without a
key, a script without keys, a pipeline with such an item, a slot the map does not cover) and
what the standalone path sends alone (transactions, blocking commands, node queries) takes the
driver's ordinary path. Batched operations always go to the slot's master (a client made with
``read_from_replicas`` reads from replicas on the ordinary path only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis.asyncio
import redis.asyncio.cluster
from redis import exceptions as rx
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from redkit.core.errors import BackendError, BackendTimeout, BackendUnavailable
from redkit.core.ops import Command, RedisOp, ScriptCall
from redkit.drivers.multiplex import MultiplexedConnection
from redkit.drivers.observed import DriverTelemetry
from redkit.drivers.redis import (
    REDIS_ERRORS,
    _batchable,
    _name_batchable,
    _packed,
    _script_args,
    translate_error,
)

if TYPE_CHECKING:
    from redkit.drivers.redis import AsyncRedisDriver

__all__ = ["MAX_REDIRECTIONS", "REFRESH_INTERVAL", "ClusterMultiplexer", "NodeConnections"]

log = logging.getLogger("redkit")

#: ``MOVED`` and ``ASK`` replies one operation follows at most (redis-py's own bound).
MAX_REDIRECTIONS = 16
#: Seconds between two background topology refreshes at least (a dead node asks for many).
REFRESH_INTERVAL = 1.0

# Sent before a command redirected by ASK; its reply (+OK) is dropped.
_ASKING = b"*1\r\n$6\r\nASKING\r\n"
# What the cluster says when nothing was applied and redis-py knows how to wait it out.
_RESENT_ALONE = (rx.TryAgainError, rx.ClusterDownError)


class NodeConnections:
    """The shared connections to one address, opened on demand, ``count`` of them at most.

    A command joins the connection that is gathering this pass's write, else the least
    loaded one; another is opened only while every open one has replies outstanding.
    """

    def __init__(
        self,
        make: Callable[[], redis.asyncio.Connection],
        *,
        deadline: float | None,
        batch_ops: int,
        count: int,
        telemetry: DriverTelemetry | None = None,
    ) -> None:
        """Connections made by ``make`` (a redis-py connection, not yet connected)."""
        self._make = make
        self._telemetry = telemetry
        self._deadline = deadline
        self._batch_ops = batch_ops
        self._count = count
        self._muxes: list[MultiplexedConnection] = []
        self._filling: MultiplexedConnection | None = None
        self._opening: asyncio.Future[MultiplexedConnection] | None = None

    def ready(self) -> MultiplexedConnection | None:
        """The open connection the next command joins, or ``None`` to await :meth:`connected`."""
        filling = self._filling
        if filling is not None and filling.filling and filling.broken is None:
            return filling
        best: MultiplexedConnection | None = None
        for mux in self._muxes:
            if mux.broken is None and (best is None or mux.load < best.load):
                best = mux
        if best is None or (best.load and len(self._muxes) < self._count):
            return None
        self._filling = best
        return best

    async def connected(self) -> MultiplexedConnection:
        """A connection to send on, opened first if need be (one opening at a time)."""
        mux = self.ready()
        if mux is not None:
            return mux
        opening = self._opening
        if opening is None:
            opening = self._opening = asyncio.ensure_future(self._open())
            opening.add_done_callback(self._opened)
        # shield: a caller that gives up does not abort the opening the others wait for.
        mux = await asyncio.shield(opening)
        self._filling = mux
        return mux

    async def _open(self) -> MultiplexedConnection:
        connection = self._make()
        deadline = self._deadline
        try:
            if deadline is None:
                # No driver deadline: the node's socket timeout bounds each write's replies.
                mux = await MultiplexedConnection.open(
                    connection,
                    deadline=connection.socket_timeout,
                    batch_ops=self._batch_ops,
                    telemetry=self._telemetry,
                )
            else:
                async with asyncio.timeout(deadline):  # type: ignore[attr-defined,unused-ignore]
                    mux = await MultiplexedConnection.open(
                        connection,
                        deadline=deadline,
                        batch_ops=self._batch_ops,
                        telemetry=self._telemetry,
                    )
        except TimeoutError:
            await connection.disconnect()
            raise BackendTimeout(f"Redis did not answer within {deadline} s") from None
        except REDIS_ERRORS as exc:
            await connection.disconnect()
            raise translate_error(exc) from exc
        # A broken connection's place is taken by the new one.
        self._muxes = [m for m in self._muxes if m.broken is None]
        self._muxes.append(mux)
        return mux

    def _opened(self, opening: asyncio.Future[MultiplexedConnection]) -> None:
        self._opening = None
        if not opening.cancelled():
            opening.exception()  # retrieved here: every waiting caller raises it itself

    def close(self) -> None:
        """Drop every connection; the commands still waiting fail with ``BackendUnavailable``."""
        muxes, self._muxes, self._filling = self._muxes, [], None
        for mux in muxes:
            mux.close()


class ClusterMultiplexer:
    """An :class:`AsyncRedisDriver`'s auto-pipelining on a ``RedisCluster`` client.

    :meth:`execute` takes every operation of a driver made with ``autopipeline=True`` on a
    cluster client, and hands what it does not batch to the driver's ordinary path.
    """

    def __init__(self, driver: AsyncRedisDriver, *, connections: int) -> None:
        """Batch ``driver``'s operations, ``connections`` shared connections per node at most."""
        client = driver.client
        assert isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._driver = driver
        self._client = client
        self._connections = connections
        self._nodes: dict[str, NodeConnections] = {}
        # Whether a command name's first argument is its key (so it places the command).
        self._keyed: dict[Any, bool] = {}
        self._initializing: asyncio.Future[Any] | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self._last_refresh = float("-inf")

    async def execute(self, op: RedisOp) -> Any:
        """Run ``op``: batched on its node's connections when its first key places it."""
        if self._client._initialize:  # the slot map and command table are learnt on first use
            await self._initialized()
        kind = type(op)
        try:
            if kind is Command:
                args = op.args  # type: ignore[union-attr]
                slot = self._slot(op)  # type: ignore[arg-type]
                if slot is not None:
                    reply = await self._run(slot, _packed(args))
                    if isinstance(reply, _RESENT_ALONE):
                        return await self._driver._alone(op)
                    return self._driver._shaped(args[0], reply)
            elif kind is ScriptCall:
                slot = self._slot(op)  # type: ignore[arg-type]
                if slot is not None:
                    return await self._script(op, slot)  # type: ignore[arg-type]
            else:
                items = _batchable(op)
                if items is not None:
                    slots = [self._slot(item) for item in items]
                    if None not in slots:
                        return await self._pipeline(items, slots)  # type: ignore[arg-type]
        except rx.SlotNotCoveredError:
            pass  # a hole in the slot map: redis-py refreshes it on the ordinary path
        except rx.DataError as exc:  # a key redis-py cannot encode (None, a bool...)
            raise translate_error(exc) from exc
        return await self._driver._alone(op)

    async def _initialized(self) -> None:
        """Wait for the client to learn the topology: one initialization for every caller.

        redis-py's own guard is a lock, which wakes its waiters one loop pass after another:
        the first burst of callers would each send alone. One shared future wakes them all.
        """
        initializing = self._initializing
        if initializing is None:
            initializing = self._initializing = asyncio.ensure_future(self._client.initialize())
            initializing.add_done_callback(self._initialized_once)
        try:
            await asyncio.shield(initializing)
        except REDIS_ERRORS as exc:
            raise translate_error(exc) from exc

    def _initialized_once(self, initializing: asyncio.Future[Any]) -> None:
        self._initializing = None
        if not initializing.cancelled():
            initializing.exception()  # retrieved here: every waiting caller raises it itself

    def _slot(self, item: Command | ScriptCall) -> int | None:
        """The slot of ``item``'s first key, or ``None`` when that does not place it."""
        if isinstance(item, ScriptCall):
            return self._client.keyslot(item.keys[0]) if item.keys else None
        args = item.args
        if len(args) < 2:
            return None
        name = args[0]
        keyed = self._keyed.get(name)
        if keyed is None:
            keyed = self._keyed_by_first_argument(name)
            if len(self._keyed) < 1024:  # names are few; never grow without bound
                self._keyed[name] = keyed
        return self._client.keyslot(args[1]) if keyed else None

    def _keyed_by_first_argument(self, name: Any) -> bool:
        if not _name_batchable(name):
            return False
        spelt = (name.decode() if isinstance(name, bytes) else str(name)).lower()
        if spelt.upper() in self._client.command_flags:
            return False  # redis-py sends it to a node of its choice (PING, KEYS, SCAN...)
        # The server's own command table (COMMAND), as redis-py's key finder reads it.
        info = self._client.commands_parser.commands.get(spelt)
        if not isinstance(info, dict):
            return False
        flags = {f.decode() if isinstance(f, bytes) else str(f) for f in info.get("flags", ())}
        return info.get("first_key_pos") == 1 and not flags & {"movablekeys", "pubsub"}

    def _owner(self, slot: int) -> redis.asyncio.cluster.ClusterNode:
        return self._client.nodes_manager.get_node_from_slot(slot)

    def _at(self, host: str, port: int) -> redis.asyncio.cluster.ClusterNode:
        manager = self._client.nodes_manager
        node = manager.get_node(host=host, port=port)
        if node is None:  # a node added since the map was learnt: made as redis-py makes one
            node = redis.asyncio.cluster.ClusterNode(
                host, port, "primary", **manager.connection_kwargs
            )
        return node

    def _links(self, node: redis.asyncio.cluster.ClusterNode) -> NodeConnections:
        links = self._nodes.get(node.name)
        if links is None:
            driver = self._driver

            def make() -> redis.asyncio.Connection:
                # As ClusterNode.acquire_connection makes one: the cluster level retries.
                settings = dict(node.connection_kwargs)
                settings["retry"] = Retry(NoBackoff(), 0)
                connection: redis.asyncio.Connection = node.connection_class(**settings)
                return connection

            links = self._nodes[node.name] = NodeConnections(
                make,
                deadline=driver._deadline,
                batch_ops=driver._batch_ops,
                count=self._connections,
                telemetry=driver.telemetry,
            )
        return links

    async def _connected(self, node: redis.asyncio.cluster.ClusterNode) -> MultiplexedConnection:
        links = self._links(node)
        mux = links.ready()
        if mux is not None:
            return mux
        try:
            return await links.connected()
        except BackendError:
            self._lost(node.name)
            raise

    async def _run(self, slot: int, packed: bytes, redirect: Any = None) -> Any:
        """The reply to one packed command on ``slot``'s owner, redirections followed.

        The reply as the connection gives it: a value, or the error (an exception instance);
        ``redirect`` is a ``MOVED``/``ASK`` this command already got.
        """
        if redirect is None:  # the common case first: the slot map is right
            node = self._owner(slot)
            links = self._nodes.get(node.name)
            mux = None if links is None else links.ready()
            if mux is None:
                mux = await self._connected(node)
            reply = await mux.send(packed)
            if not isinstance(reply, (rx.AskError, BackendError)):  # MOVED is an ASK too
                return reply
            if isinstance(reply, BackendError):
                self._lost(node.name)
                return reply
        else:
            reply = redirect
        for _ in range(MAX_REDIRECTIONS):
            if isinstance(reply, rx.MovedError):
                await self._moved(reply)
            elif isinstance(reply, rx.AskError):
                node = self._at(reply.host, reply.port)
                # ASKING holds for the next command on its connection: both go in one write.
                reply = await (await self._connected(node)).send_all([_ASKING, packed])[1]
                if isinstance(reply, BackendError):
                    self._lost(node.name)
                if not isinstance(reply, rx.AskError):
                    return reply
                continue
            node = self._owner(slot)
            reply = await (await self._connected(node)).send(packed)
            if isinstance(reply, BackendError):
                self._lost(node.name)
            if not isinstance(reply, rx.AskError):  # MOVED is an ASK too
                return reply
        raise BackendUnavailable(
            f"the cluster redirected an operation on slot {slot} {MAX_REDIRECTIONS} times "
            "(its slots keep moving); try again"
        )

    async def _script(self, call: ScriptCall, slot: int) -> Any:
        script_args = _script_args(call)
        reply = await self._run(slot, _packed(("EVALSHA", call.script.sha, *script_args)))
        if isinstance(reply, rx.NoScriptError):
            # A node that has not seen the script yet, or after a SCRIPT FLUSH: this call only.
            reply = await self._run(slot, _packed(("EVAL", call.script.source, *script_args)))
        if isinstance(reply, _RESENT_ALONE):
            return await self._driver._alone(call)
        return self._driver._shaped("EVAL", reply)

    async def _pipeline(
        self, items: tuple[Command | ScriptCall, ...], slots: list[int]
    ) -> list[Any]:
        """A non-transactional pipeline, split per node as redis-py's cluster pipeline is."""
        packed = [
            _packed(item.args)
            if isinstance(item, Command)
            else _packed(("EVALSHA", item.script.sha, *_script_args(item)))
            for item in items
        ]
        by_node: dict[str, tuple[redis.asyncio.cluster.ClusterNode, list[int]]] = {}
        owners: list[str] = []
        for index, slot in enumerate(slots):
            node = self._owner(slot)  # before anything is sent: a hole sends it all alone
            by_node.setdefault(node.name, (node, []))[1].append(index)
            owners.append(node.name)
        futures: list[asyncio.Future[Any] | None] = [None] * len(items)
        for node, indexes in by_node.values():
            sent = (await self._connected(node)).send_all([packed[i] for i in indexes])
            for index, one in zip(indexes, sent, strict=True):
                futures[index] = one
        results: list[Any] = [None] * len(items)
        again: list[tuple[int, Any]] = []
        for index, (item, waiting) in enumerate(zip(items, futures, strict=True)):
            assert waiting is not None
            reply = await waiting
            if isinstance(reply, BackendError):
                self._lost(owners[index])
                raise reply  # the connection broke: the pipeline as a whole failed
            if isinstance(reply, (rx.AskError, rx.TryAgainError)) or (
                isinstance(item, ScriptCall) and isinstance(reply, rx.NoScriptError)
            ):
                again.append((index, reply))
            else:
                results[index] = self._driver._item(item, reply)
        # Redirected items are sent again one by one, as redis-py's cluster pipeline does.
        for index, reply in again:
            results[index] = await self._again(items[index], slots[index], packed[index], reply)
        return results

    async def _again(self, item: Command | ScriptCall, slot: int, packed: bytes, reply: Any) -> Any:
        """A pipeline item's result after a redirection or a ``NOSCRIPT``, its error in place."""
        try:
            if isinstance(reply, rx.AskError):
                reply = await self._run(slot, packed, redirect=reply)
            if isinstance(item, ScriptCall) and isinstance(reply, rx.NoScriptError):
                reply = await self._run(
                    slot, _packed(("EVAL", item.script.source, *_script_args(item)))
                )
            alone = isinstance(reply, rx.TryAgainError)
        except rx.SlotNotCoveredError:
            alone = True  # a hole in the slot map; this item was not applied, the others were
        if alone:  # on the ordinary path, where redis-py waits it out
            try:
                return await self._driver._alone(item)
            except BackendError as exc:
                return exc
        if isinstance(reply, BackendError):
            raise reply
        return self._driver._item(item, reply)

    async def _moved(self, moved: rx.MovedError) -> None:
        """Correct the slot map for ``moved``'s slot (once: later calls find it corrected)."""
        try:
            await self._client.nodes_manager.move_slot(moved)
        except Exception as exc:  # the map is redis-py's: learn it all over again instead
            log.debug("cluster slot map not corrected for %s: %r", moved, exc)
            self._refresh()

    def _lost(self, name: str) -> None:
        """A connection to node ``name`` failed: ask it last when the topology is refreshed."""
        self._client.nodes_manager.move_node_to_end_of_cached_nodes(name)
        self._refresh()

    def _refresh(self) -> None:
        """Learn the topology again, in the background: one refresh for every caller."""
        running = self._refreshing
        if running is not None and not running.done():
            return
        now = time.monotonic()
        if now - self._last_refresh < REFRESH_INTERVAL:
            return
        self._last_refresh = now
        self._refreshing = asyncio.ensure_future(self._reinitialize())

    async def _reinitialize(self) -> None:
        try:
            await self._client.nodes_manager.initialize()
        except Exception as exc:  # the next failure asks again; callers saw their own errors
            log.debug("cluster topology refresh failed: %r", exc)
            return
        known = self._client.nodes_manager.nodes_cache
        for name in [name for name in self._nodes if name not in known]:
            self._nodes.pop(name).close()  # a node that left the cluster

    def close(self) -> None:
        """Drop every node's connections (their waiting callers fail) and the refresh."""
        if self._refreshing is not None:
            self._refreshing.cancel()
        nodes, self._nodes = self._nodes, {}
        for links in nodes.values():
            links.close()
