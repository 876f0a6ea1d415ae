"""From a URL or the environment to a :class:`Connection`.

``redis://`` and ``rediss://`` (TLS) name a standalone server, ``unix:///path`` a server on a
unix socket, ``redis+cluster://`` and ``rediss+cluster://`` any node of a Redis Cluster;
``embedded://`` and ``embedded+cluster://?masters=3`` a real server (or cluster) that redkit
starts for the life of the process (:func:`redkit.drivers.embedded.serve_embedded_url`). A
:class:`Connection` validates its URL at once but opens nothing until first used; it then
creates a sync client, an asyncio client, or both, on demand.

``https://`` (or ``http://``) with a ``token`` names an Upstash database through its REST API:
a :class:`~redkit.drivers.rest.RestConnection` (it needs httpx: ``pip install redkit[upstash]``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from redkit.core.driver import register_adapter
from redkit.core.durations import positive_seconds
from redkit.core.errors import ConfigurationError
from redkit.drivers.pool import DriverPool
from redkit.drivers.redis import ONE_TIMER, AsyncRedisDriver, RedisDriver

if TYPE_CHECKING:
    from redkit.drivers.rest import RestConnection

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "Connection",
    "connect",
    "from_env",
    "mask_url",
]

log = logging.getLogger("redkit")

#: Seconds to wait for a TCP (or unix socket) connection to open.
DEFAULT_CONNECT_TIMEOUT = 2.0
#: Connections an asyncio client opens to a standalone server (or to each cluster node) at
#: most; more tasks wait.
DEFAULT_ASYNC_CONNECTIONS = 100
#: Seconds to wait for any reply. Rate limiters and caches add their own, shorter budgets.
DEFAULT_SOCKET_TIMEOUT = 5.0

_STANDALONE = ("redis", "rediss", "unix")
_CLUSTER = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_EMBEDDED = ("embedded", "embedded+cluster")
_UPSTASH_VARIABLES = (
    ("UPSTASH_REDIS_REST_URL", "UPSTASH_REDIS_REST_TOKEN"),
    ("KV_REST_API_URL", "KV_REST_API_TOKEN"),
)


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _validate(url: object, variable: str | None) -> tuple[bool, str]:
    """Check ``url``; return (is_cluster, the URL redis-py understands)."""

    def fail(why: str) -> ConfigurationError:
        return ConfigurationError(
            f"{variable or 'the URL'} is not a usable Redis URL: {why}", variable=variable
        )

    if not isinstance(url, str):
        raise fail(f"expected a string, got {type(url).__name__}")
    if not url.strip():
        raise fail("it is empty")
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    except ValueError as exc:
        raise fail(f"{exc} in {mask_url(url)!r}") from exc
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        raise fail(
            f"{mask_url(url)!r} is an HTTP URL: Upstash's REST API needs its token, as in "
            "redkit.connect(url, token=...)"
        )
    if scheme not in _STANDALONE and scheme not in _CLUSTER:
        known = ", ".join(f"{s}://" for s in (*_STANDALONE, *_CLUSTER, *_EMBEDDED))
        raise fail(f"unknown scheme {parts.scheme + '://'!r} (expected one of {known})")
    if scheme == "unix":
        if not parts.path:
            raise fail("a unix:// URL needs a socket path, as in unix:///run/redis.sock")
    elif not parts.hostname:
        raise fail(f"no host in {mask_url(url)!r}")
    elif port == 0:
        raise fail("port 0 is not a port a server listens on")
    if scheme != "unix":
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise fail(f"the database must be a number, got {db!r}")
        if scheme in _CLUSTER and db not in ("", "0"):
            raise fail("Redis Cluster has only database 0")
    if scheme in _STANDALONE:
        return False, url.strip()
    # redis-py knows no "+cluster" schemes: it is told by the client class instead.
    return True, urlunsplit(parts._replace(scheme=_CLUSTER[scheme]))


def _is_embedded(url: str) -> bool:
    return urlsplit(url.strip()).scheme.lower() in _EMBEDDED


def _embedded_server(url: str, variable: str | None) -> str:
    # embedded.py imports this module (for Connection): imported here, when first asked for.
    from redkit.drivers.embedded import serve_embedded_url

    return serve_embedded_url(url, variable)


class Connection:
    """A Redis, standalone or cluster, that redkit facades can use sync and async.

    Create one with :func:`connect` or :func:`from_env` and share it: every facade built on it
    uses the same connection pools. Clients are created on first use; the asyncio client is
    created once per event loop, since asyncio connections belong to the loop that opened them.
    Socket and connect timeouts are always on. With ``autopipeline=True`` (the default) the
    asyncio drivers share connections between concurrent tasks, on a standalone server as on a
    cluster (there per node, redirections followed per operation; see
    :class:`~redkit.drivers.redis.AsyncRedisDriver`).
    """

    #: Stock Redis lets a script touch keys it was not given (see :mod:`redkit.core.driver`).
    scripts_declare_keys = False

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        variable: str | None = None,
        autopipeline: bool = True,
        **client_options: Any,
    ) -> None:
        if isinstance(url, str) and _is_embedded(url):
            url = _embedded_server(url, variable)
        self.is_cluster, self._client_url = _validate(url, variable)
        if not isinstance(autopipeline, bool):
            raise TypeError(f"autopipeline must be True or False, got {autopipeline!r}")
        #: Whether the asyncio drivers auto-pipeline (see :class:`AsyncRedisDriver`; on a
        #: cluster per node), and the blocking driver shares one connection between threads
        #: (see :class:`RedisDriver`; standalone only). On by default.
        self.autopipeline = autopipeline
        positive_seconds(socket_timeout, "socket_timeout")
        positive_seconds(connect_timeout, "connect_timeout")
        self.url = url
        self._options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
            **client_options,
            "decode_responses": False,
        }
        self._subscriptions: list[Callable[[], None]] = []
        # One driver per requested timeout: redis-py sets timeouts per client, not per call.
        self._drivers: DriverPool[RedisDriver, AsyncRedisDriver] = DriverPool(
            self._new_sync_driver, self._new_async_driver
        )

    def __repr__(self) -> str:
        kind = "cluster" if self.is_cluster else "standalone"
        return f"<redkit.Connection {kind} {mask_url(self.url)!r}>"

    def _options_within(self, timeout: float | None) -> dict[str, Any]:
        """Client options whose connect and socket timeouts do not exceed ``timeout``."""
        if timeout is None:
            return self._options
        return {
            **self._options,
            "socket_timeout": min(timeout, self._options["socket_timeout"]),
            "socket_connect_timeout": min(timeout, self._options["socket_connect_timeout"]),
        }

    def sync_driver(self, *, timeout: float | None = None) -> RedisDriver:
        """The blocking driver, created on first use; ``timeout`` bounds each of its waits."""
        return self._drivers.sync(timeout)

    def async_driver(self, *, timeout: float | None = None) -> AsyncRedisDriver:
        """The asyncio driver of the running event loop, created on first use in that loop."""
        return self._drivers.async_(timeout)

    def _new_sync_driver(self, timeout: float | None) -> RedisDriver:
        # The blocking cluster client connects at once to learn the topology: it is created
        # on first use, so that a cluster that is down fails inside a call.
        options = self._options_within(timeout)
        if self.is_cluster:
            url = self._client_url
            driver = RedisDriver(
                lambda: redis.cluster.RedisCluster.from_url(
                    url, retry=_cluster_retry(timeout, Retry), **options
                ),
                is_cluster=True,
            )
        else:
            driver = RedisDriver(
                redis.Redis.from_url(self._client_url, retry=_standalone_retry(Retry), **options),
                shared=self.autopipeline,
            )
        return driver

    def _new_async_driver(self, timeout: float | None) -> AsyncRedisDriver:
        options = self._options_within(timeout)
        client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
        if self.is_cluster:
            # As on a standalone server, more tasks than connections wait for one instead of
            # failing: redis-py's cluster client refuses a node's 101st concurrent command.
            settings = dict(options)
            most = settings.pop("max_connections", DEFAULT_ASYNC_CONNECTIONS)
            client = redis.asyncio.cluster.RedisCluster.from_url(
                self._client_url,
                retry=_cluster_retry(timeout, AsyncRetry),
                max_connections=most,
                **settings,
            )
            seconds = options["socket_timeout"]
            driver = AsyncRedisDriver(
                client,
                slots=most,
                slot_wait=seconds,
                # The shared connections read no socket timeout of redis-py's: each write
                # of theirs has this deadline instead (the ordinary path keeps the client's).
                deadline=seconds if self.autopipeline and ONE_TIMER else None,
                autopipeline=self.autopipeline,
            )
        else:
            # More tasks than connections wait for one (up to the socket timeout) instead
            # of failing: redis-py's default pool refuses the 101st concurrent command.
            settings = dict(options)
            most = settings.pop("max_connections", DEFAULT_ASYNC_CONNECTIONS)
            seconds = settings["socket_timeout"]
            if ONE_TIMER:
                # One deadline per operation, kept by the driver, instead of redis-py's timeout
                # on each socket wait (a task and two timers per command).
                settings["socket_timeout"] = None
            client = redis.asyncio.Redis.from_url(
                self._client_url,
                max_connections=most,
                retry=_standalone_retry(AsyncRetry),
                **settings,
            )
            driver = AsyncRedisDriver(
                client,
                slots=most,
                slot_wait=seconds,
                deadline=seconds if ONE_TIMER else None,
                autopipeline=self.autopipeline,
            )
        return driver

    def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> Callable[[], None]:
        """Call ``on_message`` with each message on ``channel``, from a daemon thread.

        The subscription has a connection of its own (on a cluster, messages published on any
        node reach every node). It reconnects by itself after an error. Returns the function
        that stops it.
        """
        client: Any
        if self.is_cluster:
            client = redis.cluster.RedisCluster.from_url(self._client_url, **self._options)
        else:
            client = redis.Redis.from_url(self._client_url, **self._options)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(**{channel: lambda message: on_message(message["data"])})

        def survive(error: BaseException, pubsub: Any, thread: Any) -> None:
            # A dropped connection is re-established on the next read; don't spin meanwhile.
            log.warning("subscription to %r: %s; retrying", channel, error)
            time.sleep(0.5)

        thread = pubsub.run_in_thread(sleep_time=0.2, daemon=True, exception_handler=survive)

        def stop() -> None:
            if stop in self._subscriptions:  # once, whoever asks first
                self._subscriptions.remove(stop)
                thread.stop()
                thread.join(5)
                pubsub.close()
                client.close()

        self._subscriptions.append(stop)
        return stop

    def close(self) -> None:
        """Close the blocking clients and subscriptions; :meth:`aclose` closes the asyncio ones."""
        for stop in list(self._subscriptions):
            stop()
        self._drivers.close()

    async def aclose(self) -> None:
        """Close the asyncio clients of the running loop, and the blocking clients."""
        await self._drivers.aclose_loop()
        self.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_R = TypeVar("_R", Retry, AsyncRetry)


def _standalone_retry(kind: type[_R]) -> _R:
    # One quick reconnect when a pooled connection turns out dead; never a retry after a
    # timeout, which would double the wait and could apply a write twice. ``kind`` is
    # redis-py's asyncio Retry for an asyncio client (it warns about a blocking one).
    return kind(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _cluster_retry(timeout: float | None, kind: type[_R]) -> _R:
    # A cluster retries to follow topology changes (failover, resharding); keep that short.
    # redis-py's cluster client retries timeouts too, whatever the Retry says, and a retry
    # re-sends the command: so a caller with a time budget gets no retries at all (a moved
    # slot is still followed: redirections are not retries).
    if timeout is not None:
        return kind(NoBackoff(), 0)
    return kind(ExponentialBackoff(cap=0.5, base=0.05), 2)


def _is_http(url: object) -> bool:
    return isinstance(url, str) and url.strip().lower().startswith(("http://", "https://"))


def _rest(url: str, **options: Any) -> RestConnection:
    try:
        from redkit.drivers.rest import RestConnection
    except ImportError as exc:  # httpx is an optional dependency
        raise ConfigurationError(
            f"Upstash's REST API needs httpx ({exc}): pip install 'redkit[upstash]'"
        ) from exc
    return RestConnection(url, **options)


def connect(url: str, **options: Any) -> Connection | RestConnection:
    """Validate ``url`` and return a connection to it (nothing is opened yet).

    A ``redis://``, ``rediss://``, ``unix://`` or ``redis+cluster://`` URL gives a
    :class:`Connection`. Options: ``socket_timeout`` and ``connect_timeout`` in seconds, and
    any keyword that redis-py's ``from_url`` accepts (``max_connections``, ``ssl_ca_certs``...).
    The asyncio facades share round trips between concurrent tasks (auto-pipelining, on a
    cluster per node, see :class:`~redkit.drivers.redis.AsyncRedisDriver`), and the blocking
    ones between threads (:class:`~redkit.drivers.redis.RedisDriver`, standalone);
    ``autopipeline=False`` turns both off.

    ``embedded://`` starts a real ``redis-server`` for the life of the process (once per
    process: every connection to that URL shares it), ``embedded+cluster://?masters=3`` a real
    cluster; a name (``embedded://sessions``) gives a server of its own. For development and
    tests, with nothing installed but the ``embedded`` extra; it is stopped at exit.

    An ``https://`` URL with ``token=`` (an Upstash database's REST URL and token; ``http://``
    for a local gateway) gives a :class:`~redkit.drivers.rest.RestConnection`, whose options
    are ``socket_timeout``, ``connect_timeout``, ``retries``, ``retry_backoff``,
    ``key_locking``, ``read_your_writes``, ``max_connections``, ``cluster`` (the server
    behind the API is a Redis Cluster, such as ``redkit gateway`` in front of one) and
    ``autopipeline`` (on there: concurrent asyncio callers share ``/pipeline`` requests;
    ``autopipeline=False`` sends one request per operation).

    Raises:
        ConfigurationError: for a malformed or unsupported URL, or a REST URL without token.

    """
    if _is_http(url):
        if "token" not in options:
            raise ConfigurationError(
                "an http(s):// URL is a REST URL: give its token too, as in "
                "redkit.connect(url, token=...)",
                variable="token",
            )
        return _rest(url, **options)
    return Connection(url, **options)


def from_env(
    environ: Mapping[str, str] | None = None, **options: Any
) -> Connection | RestConnection:
    """A connection configured by the environment.

    ``REDIS_URL`` comes first (a :class:`Connection`). Without it, ``UPSTASH_REDIS_REST_URL``
    and ``UPSTASH_REDIS_REST_TOKEN`` name an Upstash database over REST, or else Vercel's
    ``KV_REST_API_URL`` and ``KV_REST_API_TOKEN`` (a :class:`~redkit.drivers.rest.RestConnection`).
    ``options`` go to the connection (see :func:`connect`).

    Raises:
        ConfigurationError: naming the variable, when no URL is set, when one is malformed, or
            when a REST URL comes without its token.

    """
    env = os.environ if environ is None else environ
    url = env.get("REDIS_URL")
    if url is not None:
        return Connection(url, variable="REDIS_URL", **options)
    for url_var, token_var in _UPSTASH_VARIABLES:
        rest_url = env.get(url_var)
        if rest_url:
            token = env.get(token_var)
            if not token:
                raise ConfigurationError(
                    f"{url_var} is set but {token_var} is not: set it to the database's REST "
                    "token (shown in the Upstash console)",
                    variable=token_var,
                )
            return _rest(
                rest_url, token=token, variable=url_var, token_variable=token_var, **options
            )
    raise ConfigurationError(
        "REDIS_URL is not set: set it to redis://host:port, rediss://..., unix:///path or "
        "redis+cluster://host:port; or set UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN",
        variable="REDIS_URL",
    )


def _adapt(obj: object) -> Connection | _ClientBackend | None:
    if isinstance(obj, str):
        return Connection(obj)  # a REST URL needs its token: Connection says so
    if isinstance(obj, (redis.Redis, redis.cluster.RedisCluster)):
        return _ClientBackend(sync=RedisDriver(obj))
    if isinstance(obj, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
        return _ClientBackend(asyncio_=AsyncRedisDriver(obj))
    return None


class _ClientBackend:
    """A user's own redis-py client, used as it is (its pool, its options, its timeouts)."""

    scripts_declare_keys = False

    def __init__(
        self, *, sync: RedisDriver | None = None, asyncio_: AsyncRedisDriver | None = None
    ) -> None:
        self._sync = sync
        self._async = asyncio_
        driver = sync or asyncio_
        self.is_cluster = driver is not None and driver.is_cluster

    def sync_driver(self, *, timeout: float | None = None) -> RedisDriver:
        if self._sync is None:
            raise TypeError(
                "this is an asyncio redis-py client: it serves the Async* facades only; give "
                "the blocking ones a redis.Redis client or a redkit Connection"
            )
        return self._sync

    def async_driver(self, *, timeout: float | None = None) -> AsyncRedisDriver:
        if self._async is None:
            raise TypeError(
                "this is a blocking redis-py client: it serves the blocking facades only; give "
                "the Async* ones a redis.asyncio client or a redkit Connection"
            )
        return self._async


register_adapter(_adapt)
