"""One test body on every backend: standalone, cluster or REST, each through sync or async.

:class:`BackendCase` is what the ``backend`` fixture of ``tests/conftest.py`` gives a test: one
of its six cases, with the connection to use and a plain client to look at the server with.
(The name is the tests' own: ``redkit.core`` has no class of that name, and the gateway's
upstream is another thing again.)
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
import redis.cluster

from redkit.core.errors import ConfigurationError
from redkit.core.flow import Flow, run_async, run_sync
from redkit.drivers.connect import Connection
from redkit.drivers.rest import RestConnection
from redkit.ratelimit import AsyncRatelimit, Limiter, Ratelimit
from support.loop import LoopThread

T = TypeVar("T")

#: The token of the tests' REST gateway.
REST_TOKEN = "redkit-test-token"


class BackendCase:
    """A Redis seen through the sync or the async driver: one case of the ``backend`` fixture.

    ``topology`` is ``"standalone"``, ``"cluster"``, or ``"rest"``: the standalone server
    through the REST gateway, where ``conn`` is a :class:`RestConnection` and ``admin`` the
    direct connection that inspects the server.
    """

    def __init__(
        self,
        conn: Connection | RestConnection,
        *,
        topology: str,
        mode: str,
        loop: LoopThread,
        admin: Connection | None = None,
    ) -> None:
        self.conn = conn
        self.topology = topology
        self.mode = mode
        self.loop = loop
        self._admin = admin
        self._limiters: list[Blocking] = []

    @property
    def is_cluster(self) -> bool:
        return self.topology == "cluster"

    @property
    def is_rest(self) -> bool:
        return self.topology == "rest"

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` with the runner of this backend's mode."""
        if not self.is_async:
            return run_sync(flow, self.conn.sync_driver())

        async def drive() -> T:
            return await run_async(flow, self.conn.async_driver())

        return self.loop.run(drive())

    def execute(self, op: Any) -> Any:
        """Execute one operation on this backend's driver."""
        if not self.is_async:
            return self.conn.sync_driver().execute(op)

        async def go() -> Any:
            return await self.conn.async_driver().execute(op)

        return self.loop.run(go())

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fn``; await what it returns on the loop thread when that is awaitable."""
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            return self.loop.run(_awaited(result))
        return result

    def ratelimit(self, limiter: Limiter, **options: Any) -> Any:
        """A ``Ratelimit`` (or, in async mode, an ``AsyncRatelimit``) called as if blocking."""
        facade = AsyncRatelimit if self.is_async else Ratelimit
        made = Blocking(facade(self.conn, limiter, **options), self)
        self._limiters.append(made)
        return made

    def close_limiters(self) -> None:
        """Stop the limiters' background syncs: none may write into the next test's Redis."""
        for made in self._limiters:
            made.close()
        self._limiters.clear()

    # -- looking at the server from outside ------------------------------------------------

    @property
    def admin(self) -> redis.Redis | redis.cluster.RedisCluster:
        """A plain redis-py client (standalone or cluster) for inspecting what was written."""
        direct = self._admin if self._admin is not None else self.conn
        assert isinstance(direct, Connection)
        return direct.sync_driver().client

    def all_keys(self) -> set[str]:
        """Every key in the database (on a cluster: on every master)."""
        return server_keys(self.admin)

    def reset_command_stats(self) -> None:
        admin = self.admin
        if isinstance(admin, redis.cluster.RedisCluster):
            admin.config_resetstat(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        else:
            admin.config_resetstat()

    def command_calls(self, *names: str) -> int:
        """How many times the server ran these commands since the last stats reset."""
        admin = self.admin
        if isinstance(admin, redis.cluster.RedisCluster):
            per_node = admin.info("commandstats", target_nodes=redis.cluster.RedisCluster.PRIMARIES)
            stats = list(per_node.values())
        else:
            stats = [admin.info("commandstats")]
        return sum(
            int(node.get(f"cmdstat_{name}", {}).get("calls", 0)) for node in stats for name in names
        )

    def __repr__(self) -> str:
        return f"<BackendCase {self.topology}-{self.mode}>"


def server_keys(admin: redis.Redis | redis.cluster.RedisCluster) -> set[str]:
    """Every key a plain redis-py client sees: on a cluster, KEYS asked of every master and
    the answers merged (redis-py merges them for ``target_nodes=PRIMARIES``)."""
    if isinstance(admin, redis.cluster.RedisCluster):
        found = admin.keys(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    else:
        found = admin.keys("*")
    # The tests' clients answer bytes; a client made with decode_responses answers str.
    return {key.decode() if isinstance(key, bytes) else key for key in found}


def autopipelined(url: str, **options: Any) -> Connection:
    """``Connection(url, autopipeline=True)``; skips the test where redkit refuses that yet
    (on a cluster, until auto-pipelining supports it)."""
    try:
        return Connection(url, autopipeline=True, **options)
    except ConfigurationError as exc:
        pytest.skip(f"autopipeline=True refused here: {exc}")


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class Blocking:
    """Calls an object's methods, awaiting coroutines on the loop thread.

    One test body thus drives a blocking facade and its asyncio twin alike.
    """

    def __init__(self, target: Any, backend: BackendCase) -> None:
        self.target = target
        self._backend = backend

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.target, name)
        if not callable(attribute):
            return attribute
        return lambda *args, **kwargs: self._backend.call(attribute, *args, **kwargs)


@contextlib.contextmanager
def owned_backend(url: str, mode: str, loop: LoopThread) -> Iterator[BackendCase]:
    """A standalone :class:`BackendCase` on a connection of its own, closed after (sync and
    async clients: no connection is left for the garbage collector to warn about)."""
    backend = BackendCase(Connection(url), topology="standalone", mode=mode, loop=loop)
    try:
        yield backend
    finally:
        if backend.is_async:
            loop.run(backend.conn.aclose())
        backend.conn.close()
