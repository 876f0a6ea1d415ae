"""Drivers on redis-py: sync and asyncio, standalone and cluster.

A driver executes the operations of :mod:`redkit.core.ops` and nothing else; it owns all I/O.
redis-py parses with hiredis (a dependency of redkit), and redkit packs with it.

Scripts run with ``EVALSHA`` and are re-sent with ``EVAL`` on ``NOSCRIPT``: after a
``SCRIPT FLUSH``, after a restart, and on a cluster node that has never seen the script.
Inside a transaction a script is always sent with ``EVAL``: a ``NOSCRIPT`` inside ``EXEC``
would leave the other commands of the transaction applied and the script not.

Auto-pipelining (asyncio, opt-in: ``AsyncRedisDriver(..., autopipeline=True)``): concurrent
tasks share a few connections (:mod:`redkit.drivers.multiplex`); the commands, script calls
and non-transactional pipelines they issue in one event-loop pass go out in one write, and
each reply goes back to its own caller, in order. On a cluster, per node, with ``MOVED`` and
``ASK`` followed per operation (:mod:`redkit.drivers.cluster_multiplex`). See
:class:`AsyncRedisDriver`.

The blocking driver on a standalone server sends through one connection shared by every
thread (:mod:`redkit.drivers.shared`): lean for one thread, pipelined for many.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis import exceptions as rx

from redkit.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
)
from redkit.core.ops import Command, Masters, OnNode, Pipeline, RedisOp, ScriptCall
from redkit.drivers.multiplex import DEFAULT_BATCH_OPS
from redkit.drivers.observed import DriverTelemetry, commands_in
from redkit.drivers.shared import SharedConnection, pack_command, shareable

if TYPE_CHECKING:
    from redkit.drivers.cluster_multiplex import ClusterMultiplexer

__all__ = [
    "DEFAULT_BATCH_OPS",
    "DEFAULT_CONNECTIONS",
    "NEVER_PIPELINED",
    "ONE_TIMER",
    "REDIS_ERRORS",
    "AsyncRedisDriver",
    "RedisDriver",
    "translate_error",
]

SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


#: Whether this Python bounds an asyncio operation with one timer (``asyncio.timeout``, 3.11).
#: redis-py's own socket timeout costs a task and two timers per command: it sends through
#: ``asyncio.wait_for`` and arms another timer for each read.
ONE_TIMER = hasattr(asyncio, "timeout")


#: Commands an auto-pipelining driver always sends on their own: they block the connection
#: (a reply that waits would hold up every later reply of its batch) or turn it into a
#: subscriber (whose replies are no longer one per command).
NEVER_PIPELINED = frozenset(
    {
        *(b"BLPOP", b"BRPOP", b"BRPOPLPUSH", b"BLMOVE", b"BLMPOP", b"BZPOPMIN", b"BZPOPMAX"),
        *(b"BZMPOP", b"WAIT", b"WAITAOF", b"XREAD", b"XREADGROUP", b"SUBSCRIBE", b"PSUBSCRIBE"),
        *(b"SSUBSCRIBE", b"UNSUBSCRIBE", b"PUNSUBSCRIBE", b"SUNSUBSCRIBE", b"MONITOR"),
        *(b"MULTI", b"EXEC", b"DISCARD", b"WATCH", b"UNWATCH", b"SELECT", b"RESET", b"QUIT"),
        *(b"CLIENT", b"HELLO", b"AUTH", b"SHUTDOWN", b"DEBUG"),
    }
)

#: Connections an auto-pipelining driver shares its callers' commands over at most: a second
#: one keeps a large reply from holding up every other caller behind it.
DEFAULT_CONNECTIONS = 2


#: What redis-py raises: RedisError, and the cluster client's own exception family.
REDIS_ERRORS = (rx.RedisError, rx.RedisClusterException)


def translate_error(exc: Exception) -> BackendError:
    """Map a redis-py exception to the matching :mod:`redkit.errors` type."""
    # The cluster client wraps "no node reachable" around the socket error: look at the cause.
    cause = exc.__cause__ if isinstance(exc, rx.RedisClusterException) else None
    if isinstance(exc, rx.TimeoutError) or isinstance(cause, rx.TimeoutError):
        return BackendTimeout(f"Redis did not answer in time: {exc}")
    if isinstance(exc, rx.ClusterDownError) or isinstance(cause, rx.ClusterDownError):
        # The server's verdict, not the client's: a master without a replica to take over
        # failed, and cluster-require-full-coverage (on by default) stops every other one.
        return BackendUnavailable(
            f"Redis is unavailable: {exc} (CLUSTERDOWN: a master is unreachable and the "
            "cluster serves no slot while one is uncovered; give masters replicas, or set "
            "cluster-require-full-coverage no so that the other masters keep serving)"
        )
    if isinstance(exc, (rx.ConnectionError, rx.SlotNotCoveredError)) or (
        isinstance(cause, rx.ConnectionError)
    ):
        return BackendUnavailable(f"Redis is unavailable: {exc}")
    if isinstance(exc, (rx.ResponseError, rx.RedisClusterException)):
        # A server error reply, or the cluster client refusing a command (keys in two slots).
        return CommandError(str(exc))
    return BackendError(f"{type(exc).__name__}: {exc}")


def _check_binary_safe(client: SyncClient | AsyncClient) -> None:
    # redkit stores bytes (cached values, packed state); a client that decodes replies to text
    # would corrupt them, so refuse it up front rather than fail on the first binary value.
    if client.get_encoder().decode_responses:
        raise ConfigurationError(
            "redkit needs a redis-py client created with decode_responses=False "
            "(the default); pass a URL or a redkit Connection to let redkit create one"
        )


def _known_node(cluster: Any, name: str) -> Any:
    node = cluster.get_node(node_name=name)
    if node is None:  # a failover or a reshard since Masters answered
        raise BackendUnavailable(f"the cluster node {name} is gone; start over")
    return node


def _one_node(reply: Any, node: Any) -> Any:
    # The cluster client reshapes some replies even when the command ran on one node: most as
    # {node name: reply}, SCAN as ({node name: cursor}, keys). Give back what the node said.
    if isinstance(reply, dict) and len(reply) == 1 and node.name in reply:
        return reply[node.name]
    if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], dict):
        return [_one_node(reply[0], node), reply[1]]
    return reply


def _first_key(op: RedisOp) -> Any:
    """The key that places ``op`` on a cluster node (its first), or ``None``."""
    if isinstance(op, ScriptCall):
        return op.keys[0] if op.keys else None
    if isinstance(op, Command):
        return op.args[1] if len(op.args) > 1 else None
    if isinstance(op, Pipeline):
        for item in op.ops:
            key = _first_key(item)
            if key is not None:
                return key
    return None


def _node_of(cluster: Any, op: RedisOp) -> str | None:
    """The name of the cluster node ``op`` goes to, as far as the client knows it now."""
    if isinstance(op, OnNode):
        return op.node
    key = _first_key(op)
    if key is None:
        return None
    try:
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
    except (*REDIS_ERRORS, LookupError, AttributeError):
        return None  # the topology is not learnt yet, or the slot is not covered
    name: str | None = node.name
    return name


def _script_args(call: ScriptCall) -> tuple[Any, ...]:
    return (len(call.keys), *call.keys, *call.args)


def _queue(pipe: Any, op: Pipeline) -> None:
    # Queuing is synchronous on every redis-py pipeline, sync or asyncio.
    for item in op.ops:
        if isinstance(item, Command):
            pipe.execute_command(*item.args)
        elif op.transaction:
            pipe.execute_command("EVAL", item.script.source, *_script_args(item))
        else:
            pipe.execute_command("EVALSHA", item.script.sha, *_script_args(item))


def _pipeline_results(op: Pipeline, results: list[Any]) -> tuple[list[Any], list[int]]:
    """Translate per-item errors; return the results and the indexes to re-run with EVAL."""
    rerun: list[int] = []
    for index, result in enumerate(results):
        if isinstance(result, rx.NoScriptError) and isinstance(op.ops[index], ScriptCall):
            rerun.append(index)
        elif isinstance(result, REDIS_ERRORS):
            results[index] = translate_error(result)
    return results, rerun


class RedisDriver:
    """Blocking driver on a ``redis.Redis`` or ``redis.cluster.RedisCluster`` client.

    ``client`` may also be a function that creates the client, called on first use: the
    blocking cluster client connects as soon as it is created, and a Redis that is down must
    surface inside :meth:`execute` (where callers apply their failure policy), not before.

    On a standalone client (:func:`~redkit.drivers.shared.shareable`), commands, script calls
    and non-transactional pipelines go through one :class:`~redkit.drivers.shared.SharedConnection`:
    a lean path for one thread, auto-pipelining for many. Transactions, blocking and pub/sub
    commands (:data:`NEVER_PIPELINED`), node queries and arguments hiredis cannot pack take
    redis-py's own path, on the other connections of the pool. ``shared=False`` sends
    everything that way.
    """

    def __init__(
        self,
        client: SyncClient | Callable[[], SyncClient],
        *,
        is_cluster: bool = False,
        shared: bool = True,
    ) -> None:
        if not isinstance(shared, bool):
            raise TypeError(f"shared must be True or False, got {shared!r}")
        self._client: SyncClient | None = None
        self._factory: Callable[[], SyncClient] | None = None
        self._creating = threading.Lock()
        self._share = shared
        self._shared: SharedConnection | None = None
        # Per command name as callers spell it: redis-py's reply callback, or _ALONE.
        self._names: dict[Any, Any] = {}
        # Bound once: the hot path skips an attribute lookup (and redis-py leaves it untyped).
        self._command: Callable[..., Any]
        if isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
            self._adopt(client)
        else:
            self._factory = client
            self.is_cluster = is_cluster
            self._command = self._first_command
        #: What this driver reports (:mod:`redkit.drivers.observed`).
        self.telemetry = DriverTelemetry("cluster" if self.is_cluster else "standalone")

    def _adopt(self, client: SyncClient) -> None:
        _check_binary_safe(client)
        self.is_cluster = isinstance(client, redis.cluster.RedisCluster)
        if self._share and isinstance(client, redis.Redis) and shareable(client):
            self._shared = SharedConnection(client)
        self._client = client
        self._command = client.execute_command

    @property
    def client(self) -> SyncClient:
        """The redis-py client, created on first use."""
        if self._client is None:
            with self._creating:  # one client, even when threads start at once
                if self._client is None:
                    assert self._factory is not None
                    try:
                        self._adopt(self._factory())
                    except REDIS_ERRORS as exc:
                        raise translate_error(exc) from exc
        assert self._client is not None
        return self._client

    def route(self, op: RedisOp) -> str | None:
        """The cluster node ``op`` goes to (``None`` when unknown, or not a cluster).

        A circuit breaker keeps one circuit per node with it (:mod:`redkit.core.breaker`).
        """
        if self._client is None or not self.is_cluster:
            return None
        return _node_of(self._client, op)

    def _first_command(self, *args: Any) -> Any:
        _ = self.client  # creating the client binds _command to it
        return self._command(*args)

    def execute(self, op: RedisOp) -> Any:
        """Run one operation (a command, script call, pipeline, node query) and reply."""
        telemetry = self.telemetry
        if not telemetry.active:
            return self._run(op)
        telemetry.sent(commands_in(op))
        try:
            return self._run(op)
        except BackendError as exc:
            telemetry.failed(exc)
            raise

    def _run(self, op: RedisOp) -> Any:
        shared = self._shared
        if shared is not None:
            kind = type(op)
            if kind is ScriptCall:
                return self._shared_script(shared, op)  # type: ignore[arg-type]
            if kind is Command:
                reply = self._shared_command(shared, op.args)  # type: ignore[union-attr]
                if reply is not _ALONE:
                    return reply
            elif kind is Pipeline and not op.transaction and op.ops:  # type: ignore[union-attr]
                replies = self._shared_pipeline(shared, op)  # type: ignore[arg-type]
                if replies is not None:
                    return replies
        try:
            if isinstance(op, Command):
                return self._command(*op.args)
            if isinstance(op, ScriptCall):
                return self._run_script(op)
            if isinstance(op, Pipeline):
                return self._run_pipeline(op)
            # redis-py leaves its blocking cluster client untyped.
            cluster: Any = self.client if self.is_cluster else None
            if isinstance(op, Masters):
                return [None] if cluster is None else [n.name for n in cluster.get_primaries()]
            if cluster is not None and op.node is not None:
                node = _known_node(cluster, op.node)
                return _one_node(cluster.execute_command(*op.command.args, target_nodes=node), node)
            return self._command(*op.command.args)
        except REDIS_ERRORS as exc:
            raise translate_error(exc) from exc

    # -- the shared connection -------------------------------------------------------------

    def _callback(self, name: Any) -> Any:
        """redis-py's reply callback for command ``name``, ``None``, or ``_ALONE``."""
        callback = self._names.get(name, _UNKNOWN)
        if callback is _UNKNOWN:
            if isinstance(name, str):
                spelt = name.encode()
            elif isinstance(name, bytes):
                spelt = name
            else:
                return _ALONE  # redis-py's path says what is wrong with it
            if b" " in spelt or spelt.upper() in NEVER_PIPELINED:
                callback = _ALONE
            else:
                # What redis-py's parse_response looks up: the name exactly as it was given.
                callbacks = self.client.response_callbacks  # type: ignore[union-attr]
                callback = callbacks.get(name, None)
            if len(self._names) < 1024:  # names are few; never grow without bound
                self._names[name] = callback
        return callback

    def _shared_command(self, shared: SharedConnection, args: tuple[Any, ...]) -> Any:
        callback = self._callback(args[0]) if args else _ALONE
        if callback is _ALONE:
            return _ALONE
        packed = pack_command(args)
        if packed is None:
            return _ALONE  # an argument hiredis cannot pack: redis-py says why
        reply = shared.run(packed, 1)[0]
        if isinstance(reply, Exception):
            raise translate_error(reply) from reply
        return reply if callback is None else callback(reply)

    def _shared_script(self, shared: SharedConnection, call: ScriptCall) -> Any:
        packed = pack_command(("EVALSHA", call.script.sha, *_script_args(call)))
        if packed is None:
            return self._alone(call)
        reply = shared.run(packed, 1)[0]
        if isinstance(reply, rx.NoScriptError):
            # This call only: after a SCRIPT FLUSH or a restart, the script by its source.
            source = pack_command(("EVAL", call.script.source, *_script_args(call)))
            assert source is not None  # the same arguments packed just above
            reply = shared.run(source, 1)[0]
        if isinstance(reply, Exception):
            raise translate_error(reply) from reply
        return reply

    def _shared_pipeline(self, shared: SharedConnection, op: Pipeline) -> list[Any] | None:
        packed: list[bytes] = []
        callbacks: list[Any] = []
        for item in op.ops:
            if isinstance(item, Command):
                callback = self._callback(item.args[0]) if item.args else _ALONE
                one = None if callback is _ALONE else pack_command(item.args)
            else:
                callback = None
                one = pack_command(("EVALSHA", item.script.sha, *_script_args(item)))
            if one is None:
                return None
            packed.append(one)
            callbacks.append(callback)
        results = shared.run(b"".join(packed), len(packed))
        rerun: list[int] = []
        for index, result in enumerate(results):
            if isinstance(result, rx.NoScriptError) and isinstance(op.ops[index], ScriptCall):
                rerun.append(index)
            elif isinstance(result, Exception):
                results[index] = translate_error(result)
            elif callbacks[index] is not None:
                results[index] = callbacks[index](result)
        if rerun:
            sources: list[bytes] = []
            for index in rerun:
                call = op.ops[index]
                assert isinstance(call, ScriptCall)
                source = pack_command(("EVAL", call.script.source, *_script_args(call)))
                assert source is not None  # the same arguments packed just above
                sources.append(source)
            evaluated = shared.run(b"".join(sources), len(sources))
            for index, result in zip(rerun, evaluated, strict=True):
                failed = isinstance(result, Exception)
                results[index] = translate_error(result) if failed else result
        return results

    def _alone(self, op: RedisOp) -> Any:
        try:
            if isinstance(op, ScriptCall):
                return self._run_script(op)
            raise AssertionError(f"not sent alone: {op!r}")  # pragma: no cover
        except REDIS_ERRORS as exc:
            raise translate_error(exc) from exc

    # -- redis-py's own path ---------------------------------------------------------------

    def _run_script(self, call: ScriptCall) -> Any:
        try:
            return self._command("EVALSHA", call.script.sha, *_script_args(call))
        except rx.NoScriptError:
            return self._command("EVAL", call.script.source, *_script_args(call))

    def _run_pipeline(self, op: Pipeline) -> list[Any]:
        pipe = self.client.pipeline(transaction=op.transaction)
        _queue(pipe, op)
        results, rerun = _pipeline_results(op, pipe.execute(raise_on_error=False))
        for index in rerun:
            call = op.ops[index]
            assert isinstance(call, ScriptCall)
            try:
                results[index] = self._command("EVAL", call.script.source, *_script_args(call))
            except rx.ResponseError as exc:
                results[index] = translate_error(exc)
        return results

    def close(self) -> None:
        """Close the client's connections."""
        if self._shared is not None:
            self._shared.close()
        if self._client is not None:
            self._client.close()


#: What RedisDriver._callback answers for a command that never shares a connection.
_ALONE: Any = object()
_UNKNOWN: Any = object()


class AsyncRedisDriver:
    """Asyncio driver on a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``."""

    def __init__(
        self,
        client: AsyncClient,
        *,
        slots: int | None = None,
        slot_wait: float | None = None,
        deadline: float | None = None,
        autopipeline: bool = False,
        batch_ops: int = DEFAULT_BATCH_OPS,
        connections: int = DEFAULT_CONNECTIONS,
    ) -> None:
        """Drive ``client``.

        Args:
            client: the redis-py asyncio client.
            slots: operations in flight at most (one connection each); further tasks wait for
                a slot, up to ``slot_wait`` seconds, then fail with :class:`BackendTimeout`.
                ``None`` leaves it to the client's pool (redis-py's default pool refuses a
                command beyond its ``max_connections``).
            slot_wait: seconds to wait for a slot; ``None`` waits as long as it takes.
            deadline: seconds one operation may take in all (every command it sends and
                reads), then :class:`BackendTimeout`; ``None`` leaves timeouts to the client.
                Needs Python 3.11 (``asyncio.timeout``); see :data:`ONE_TIMER`.
            autopipeline: share connections between concurrent tasks: the commands, script
                calls and non-transactional pipelines that tasks issue in one event-loop pass
                go out in one write, and each reply goes back to its caller in order (see
                :mod:`redkit.drivers.multiplex`). On a cluster each node has connections of
                its own, an operation goes to the owner of its first key's slot, and
                ``MOVED``/``ASK`` are followed per operation (the slot map corrected on
                ``MOVED``), see :mod:`redkit.drivers.cluster_multiplex`. What it keeps:
                errors stay per operation (a ``WRONGTYPE`` fails only its caller, a
                ``NOSCRIPT`` is re-sent with ``EVAL`` for that call only); replies are shaped
                as redis-py shapes them; a transaction pipeline, blocking and pub/sub commands
                (:data:`NEVER_PIPELINED`), node queries, on a cluster commands that no first
                key places: each sent alone, as without it; a
                caller that is cancelled or times out only drops its reply, which is still
                read. ``deadline`` holds per write: a connection that has not answered a write
                within it is dropped, and every operation waiting on it fails with
                :class:`BackendTimeout`; a server that closes the connection fails them with
                :class:`BackendUnavailable`. ``slots`` does not apply (a few connections
                carry everything); the next operation opens a new connection.
            batch_ops: commands in one write at most (a pipeline counts its items); a pass
                with more writes them in several.
            connections: connections the auto-pipelined operations share, at most (on a
                cluster, per node); a new one is opened only while every open one has replies
                outstanding.

        """
        _check_binary_safe(client)
        if deadline is not None and not ONE_TIMER:
            raise ConfigurationError("an operation deadline needs asyncio.timeout (Python 3.11)")
        if not isinstance(autopipeline, bool):
            raise TypeError(f"autopipeline must be True or False, got {autopipeline!r}")
        if isinstance(batch_ops, bool) or not isinstance(batch_ops, int) or batch_ops < 1:
            raise ValueError(
                f"batch_ops must be a whole number of operations >= 1, got {batch_ops!r}"
            )
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise ValueError(f"connections must be a whole number >= 1, got {connections!r}")
        self.client = client
        self.is_cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        #: What this driver reports (:mod:`redkit.drivers.observed`); auto-pipelined
        #: connections count their writes themselves.
        self.telemetry = DriverTelemetry("cluster" if self.is_cluster else "standalone")
        self._command: Callable[..., Awaitable[Any]] = client.execute_command
        # A semaphore, not redis-py's BlockingConnectionPool: taking a free slot costs no
        # suspension and no timer, where that pool takes a Condition and arms a timeout on
        # every command (a quarter of a cache hit's time in the benchmarks).
        self._slots = None if slots is None else asyncio.Semaphore(slots)
        self._slot_count = slots
        self._slot_wait = slot_wait
        self._deadline = deadline
        self._autopipeline = autopipeline
        self._batch_ops = batch_ops
        # redis-py's reply callbacks by command name as spelt.
        self._callbacks: dict[Any, Any] = {}
        # Imported here: that module builds on this one's helpers. A standalone server is one
        # node with its shared connections; a cluster has them per node, and routes.
        from redkit.drivers.cluster_multiplex import ClusterMultiplexer, NodeConnections

        self._cluster_mux: ClusterMultiplexer | None = None
        if autopipeline and self.is_cluster:
            self._cluster_mux = ClusterMultiplexer(self, connections=connections)
        self._shared = NodeConnections(
            self._new_connection,
            deadline=deadline,
            batch_ops=batch_ops,
            count=connections,
            telemetry=self.telemetry,
        )

    def route(self, op: RedisOp) -> str | None:
        """The cluster node ``op`` goes to (``None`` when unknown, or not a cluster).

        A circuit breaker keeps one circuit per node with it (:mod:`redkit.core.breaker`).
        """
        if not self.is_cluster:
            return None
        return _node_of(self.client, op)

    async def execute(self, op: RedisOp) -> Any:
        """Run one operation (a command, script call, pipeline, node query) and reply."""
        # A try block costs nothing until it catches: the failure is counted only then.
        try:
            if self._autopipeline:
                if self._cluster_mux is not None:
                    return await self._cluster_mux.execute(op)
                kind = type(op)
                if kind is Command:
                    args = op.args  # type: ignore[union-attr]
                    if args and _name_batchable(args[0]):
                        return await self._auto_command(args)
                elif kind is ScriptCall:
                    return await self._auto_script(op)  # type: ignore[arg-type]
                else:
                    items = _batchable(op)
                    if items is not None:
                        return await self._auto_pipeline(items)
            return await self._alone(op)
        except BackendError as exc:
            self.telemetry.failed(exc)
            raise

    async def _alone(self, op: RedisOp) -> Any:
        """Run ``op`` on a connection of its own from redis-py's pool (no auto-pipelining)."""
        self.telemetry.sent(commands_in(op))
        slots = self._slots
        if slots is None:
            return await self._within_deadline(op)
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), self._slot_wait)
            except asyncio.TimeoutError:
                raise BackendTimeout(
                    f"all {self._slot_count} connections stayed busy for {self._slot_wait} s"
                ) from None
        else:
            await slots.acquire()  # free: returns without suspending
        try:
            return await self._within_deadline(op)
        finally:
            slots.release()

    async def _within_deadline(self, op: RedisOp) -> Any:
        deadline = self._deadline
        if deadline is None:
            return await self._execute(op)
        try:
            # A cancelled read or write makes redis-py drop that connection: no reply can
            # arrive late on a connection that is reused.
            async with asyncio.timeout(deadline):  # type: ignore[attr-defined,unused-ignore]
                return await self._execute(op)
        except TimeoutError:
            raise BackendTimeout(f"Redis did not answer within {deadline} s") from None

    async def _execute(self, op: RedisOp) -> Any:
        try:
            if isinstance(op, Command):
                return await self._command(*op.args)
            if isinstance(op, ScriptCall):
                return await self._run_script(op)
            if isinstance(op, Pipeline):
                return await self._run_pipeline(op)
            client = self.client
            if isinstance(op, Masters):
                if isinstance(client, redis.asyncio.cluster.RedisCluster):
                    await client.initialize()  # the topology is learnt on first use
                    return [node.name for node in client.get_primaries()]
                return [None]
            if isinstance(client, redis.asyncio.cluster.RedisCluster) and op.node is not None:
                node = _known_node(client, op.node)
                reply = await client.execute_command(*op.command.args, target_nodes=node)
                return _one_node(reply, node)
            return await self._command(*op.command.args)
        except REDIS_ERRORS as exc:
            raise translate_error(exc) from exc
        except AttributeError as exc:
            if not self.is_cluster:
                raise
            # redis-py 8's asyncio cluster client, when a node fails, disconnects every
            # connection of that node, the ones other tasks are writing on included; their
            # write then finds no stream. It is the node's failure, told as one.
            raise BackendUnavailable(
                f"Redis is unavailable: a cluster node failed ({exc})"
            ) from exc

    async def _run_script(self, call: ScriptCall) -> Any:
        try:
            return await self._command("EVALSHA", call.script.sha, *_script_args(call))
        except rx.NoScriptError:
            return await self._command("EVAL", call.script.source, *_script_args(call))

    async def _run_pipeline(self, op: Pipeline) -> list[Any]:
        client = self.client
        if op.transaction and isinstance(client, redis.asyncio.cluster.RedisCluster):
            # redis-py 8 queues each command of a cluster transaction on a thread of its own
            # that runs a new event loop and is joined: a client still to learn its topology
            # would wait there for this loop, which is blocked in the join. Learn it first.
            await client.initialize()
        pipe = client.pipeline(transaction=op.transaction)
        _queue(pipe, op)
        results, rerun = _pipeline_results(op, await pipe.execute(raise_on_error=False))
        for index in rerun:
            call = op.ops[index]
            assert isinstance(call, ScriptCall)
            try:
                results[index] = await self._command(
                    "EVAL", call.script.source, *_script_args(call)
                )
            except rx.ResponseError as exc:
                results[index] = translate_error(exc)
        return results

    async def _auto_command(self, args: tuple[Any, ...]) -> Any:
        packed = _packed(args)
        mux = self._shared.ready() or await self._shared.connected()
        return self._shaped(args[0], await mux.send(packed))

    async def _auto_script(self, call: ScriptCall) -> Any:
        script_args = _script_args(call)
        packed = _packed(("EVALSHA", call.script.sha, *script_args))
        mux = self._shared.ready() or await self._shared.connected()
        reply = await mux.send(packed)
        if isinstance(reply, rx.NoScriptError):
            # After a SCRIPT FLUSH or a restart: this call again, with the script's source.
            packed = _packed(("EVAL", call.script.source, *script_args))
            mux = self._shared.ready() or await self._shared.connected()
            reply = await mux.send(packed)
        return self._shaped("EVAL", reply)

    async def _auto_pipeline(self, items: tuple[Command | ScriptCall, ...]) -> list[Any]:
        packed: list[bytes] = []
        for item in items:
            if isinstance(item, Command):
                packed.append(_packed(item.args))
            else:
                packed.append(_packed(("EVALSHA", item.script.sha, *_script_args(item))))
        mux = self._shared.ready() or await self._shared.connected()
        futures = mux.send_all(packed)
        results: list[Any] = []
        rerun: list[int] = []
        for index, (item, future) in enumerate(zip(items, futures, strict=True)):
            reply = await future
            if isinstance(reply, BackendError):
                raise reply  # the connection broke: the pipeline as a whole failed
            if isinstance(item, ScriptCall) and isinstance(reply, rx.NoScriptError):
                rerun.append(index)
            results.append(self._item(item, reply))
        if rerun:
            calls = [items[index] for index in rerun]
            mux = self._shared.ready() or await self._shared.connected()
            evaluated = mux.send_all(
                [
                    _packed(("EVAL", call.script.source, *_script_args(call)))
                    for call in calls
                    if isinstance(call, ScriptCall)
                ]
            )
            for index, future in zip(rerun, evaluated, strict=True):
                reply = await future
                if isinstance(reply, BackendError):
                    raise reply
                results[index] = self._item(items[index], reply)
        return results

    def _item(self, item: Command | ScriptCall, reply: Any) -> Any:
        """A pipeline item's reply: its error in place (translated), as redis-py's pipeline."""
        try:
            return self._shaped(item.args[0] if isinstance(item, Command) else "EVAL", reply)
        except BackendError as exc:
            return exc

    def _shaped(self, name: Any, reply: Any) -> Any:
        """The reply as redis-py's ``execute_command`` gives it.

        Its callback applied; its error raised, translated.
        """
        if isinstance(reply, Exception):
            if isinstance(reply, BackendError):
                raise reply
            if isinstance(reply, REDIS_ERRORS):
                raise translate_error(reply) from reply
            raise BackendError(f"{type(reply).__name__}: {reply}")
        callback = self._callbacks.get(name, _UNKNOWN)
        if callback is _UNKNOWN:
            callback = self.client.response_callbacks.get(name)
            if len(self._callbacks) < 1024:  # names are few; never grow without bound
                self._callbacks[name] = callback
        return reply if callback is None else callback(reply)

    def _new_connection(self) -> redis.asyncio.Connection:
        client = self.client
        assert isinstance(client, redis.asyncio.Redis)  # a cluster has ClusterMultiplexer
        connection: redis.asyncio.Connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        return connection

    async def aclose(self) -> None:
        """Close the client's connections (the shared ones too: their waiting callers fail)."""
        self._shared.close()
        if self._cluster_mux is not None:
            self._cluster_mux.close()
        await self.client.aclose()


_UNKNOWN = object()


def _packed(args: tuple[Any, ...]) -> bytes:
    """``args`` as one RESP command (hiredis packs in C; redis-py's packer is Python)."""
    packed = pack_command(args)
    if packed is None:
        # bool, None and other types redis-py refuses too: the same error, for this caller.
        wrong: Any = args[-1]
        for arg in args:
            if isinstance(arg, bool) or not isinstance(arg, (bytes, str, int, float)):
                wrong = arg
                break
        raise translate_error(
            rx.DataError(
                f"Invalid input of type: {type(wrong).__name__!r}. "
                "Convert to a bytes, string, int or float first."
            )
        )
    return packed


#: Whether a command name may go into a batch, by name as the caller spelt it.
_NAME_BATCHABLE: dict[Any, bool] = {}


def _name_batchable(name: Any) -> bool:
    known = _NAME_BATCHABLE.get(name)
    if known is None:
        spelt = name.encode() if isinstance(name, str) else bytes(name)
        known = spelt.upper() not in NEVER_PIPELINED
        if len(_NAME_BATCHABLE) < 1024:  # names are few; never grow without bound
            _NAME_BATCHABLE[name] = known
    return known


def _batchable(op: RedisOp) -> tuple[Command | ScriptCall, ...] | None:
    """``op`` as the items it adds to a batch, or ``None`` when it must be sent alone."""
    if isinstance(op, ScriptCall):
        return (op,)
    if isinstance(op, Command):
        return (op,) if op.args and _name_batchable(op.args[0]) else None
    if isinstance(op, Pipeline):
        if op.transaction or not op.ops:
            return None  # MULTI/EXEC is atomic and unsplit: never merged
        for item in op.ops:
            if isinstance(item, Command) and not (item.args and _name_batchable(item.args[0])):
                return None
        return op.ops
    return None  # Masters, OnNode: topology and per-node queries go alone
