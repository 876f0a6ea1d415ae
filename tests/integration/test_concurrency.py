"""The concurrency limiter on real servers: standalone and cluster, sync and async."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from redkit import connect
from redkit.core import keys
from redkit.core.clock import VirtualClock
from redkit.core.errors import BackendError, InvalidArgumentError, InvalidKeyError
from redkit.ratelimit.concurrency import AsyncConcurrency, Concurrency, ConcurrencyLimit, Lease
from support.backends import BackendCase, Blocking
from support.loop import LoopThread
from support.probes import closed_port

T0 = 1_700_000_000_000
# Virtual-clock leases are long: the key's TTL runs on the server's real clock.
LEASE = ConcurrencyLimit(2, "60 s")


class Boom(Exception):
    pass


def limiter_for(backend: BackendCase, limit: ConcurrencyLimit, **options: Any) -> Any:
    facade = AsyncConcurrency if backend.is_async else Concurrency
    return Blocking(facade(backend.conn, limit, **options), backend)


def key_of(backend: BackendCase, identifier: str, prefix: str = "@upstash/ratelimit") -> str:
    """The identifier's key as docs/concurrency.md states it."""
    if backend.is_cluster:
        return f"{prefix}:{{{keys.escape(identifier)}}}:concurrency"
    return f"{prefix}:{identifier}:concurrency"


# -- acquire, release, extend -------------------------------------------------------------


def test_acquires_up_to_the_limit_then_refuses(backend: BackendCase) -> None:
    limiter = limiter_for(backend, ConcurrencyLimit(3, "30 s"))  # the server's clock
    leases = [limiter.acquire("job") for _ in range(4)]
    assert [lease.success for lease in leases] == [True, True, True, False]
    assert [bool(lease) for lease in leases] == [True, True, True, False]
    assert [lease.remaining for lease in leases] == [2, 1, 0, 0]
    assert all(lease.limit == 3 and lease.identifier == "job" for lease in leases)
    assert all(lease.reason is None for lease in leases)
    tokens = {lease.token for lease in leases[:3]}
    assert len(tokens) == 3
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)
    now = time.time() * 1000
    assert all(now + 25_000 < lease.expires_at < now + 35_000 for lease in leases[:3])
    assert all(lease.retry_after == 0.0 for lease in leases[:3])
    refused = leases[3]
    assert (refused.token, refused.expires_at) == ("", 0)
    assert 25 < refused.retry_after <= 30
    assert limiter.in_flight("job") == 3
    assert limiter.in_flight("other") == 0


def test_release_frees_a_slot_and_twice_is_harmless(backend: BackendCase) -> None:
    limiter = limiter_for(backend, LEASE, clock=VirtualClock(T0))
    first, second = limiter.acquire("job"), limiter.acquire("job")
    refused = limiter.acquire("job")
    assert not refused
    assert limiter.release(first) is True
    assert limiter.in_flight("job") == 1
    third = limiter.acquire("job")
    assert (third.success, third.remaining) == (True, 0)
    assert limiter.release(first) is False  # already given back: nothing happens
    assert limiter.release(refused) is False  # never held a slot
    assert limiter.in_flight("job") == 2
    assert limiter.release(second)
    assert limiter.release(third)
    assert limiter.in_flight("job") == 0
    assert backend.all_keys() == set()  # the set goes with its last lease


def test_extend_keeps_a_lease_alive_past_its_original_end(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    limiter = limiter_for(backend, ConcurrencyLimit(1, "60 s"), clock=clock)
    lease = limiter.acquire("job")
    assert lease.expires_at == T0 + 60_000
    clock.advance(50_000)
    assert limiter.extend(lease) is True  # now ends at T0 + 110 s
    clock.advance(20_000)  # past the original end
    assert limiter.in_flight("job") == 1
    refused = limiter.acquire("job")
    assert (refused.success, refused.retry_after) == (False, 40.0)
    assert limiter.extend(lease, "120 s") is True  # ends at T0 + 190 s
    key = key_of(backend, "job")
    assert backend.admin.zscore(key, lease.token) == T0 + 190_000
    assert 115_000 < backend.admin.pttl(key) <= 120_000  # the key lives as long as the lease
    clock.advance(120_000)
    assert limiter.in_flight("job") == 0
    assert limiter.extend(lease) is False  # an ended lease is never revived
    assert limiter.release(lease) is False
    assert backend.all_keys() == set()


def test_an_expired_lease_frees_its_slot(backend: BackendCase) -> None:
    clock = VirtualClock(T0)
    limiter = limiter_for(backend, LEASE, clock=clock)
    first = limiter.acquire("job")
    clock.advance(10_000)
    second = limiter.acquire("job")
    refused = limiter.acquire("job")
    assert (refused.success, refused.retry_after) == (False, 50.0)  # until the first ends
    clock.advance(50_000)  # the first lease ends now: held while now < its end
    assert limiter.in_flight("job") == 1
    third = limiter.acquire("job")
    assert (third.success, third.remaining) == (True, 0)
    # The ended lease was swept, so the set holds only live leases.
    members = backend.admin.zrange(key_of(backend, "job"), 0, -1)
    assert sorted(members) == sorted([second.token.encode(), third.token.encode()])
    assert limiter.release(first) is False
    assert limiter.extend(first) is False


def test_a_lease_of_its_own_length(backend: BackendCase) -> None:
    limiter = limiter_for(backend, LEASE, clock=VirtualClock(T0))
    lease = limiter.acquire("job", lease="90 s")
    assert lease.expires_at == T0 + 90_000
    assert limiter.acquire("job").expires_at == T0 + 60_000
    assert 85_000 < backend.admin.pttl(key_of(backend, "job")) <= 90_000  # the longest one


def test_a_refused_acquire_writes_nothing_and_each_call_is_one_round_trip(
    backend: BackendCase,
) -> None:
    clock = VirtualClock(T0)
    limiter = limiter_for(backend, ConcurrencyLimit(1, "60 s"), clock=clock)
    # Loads every script on the node that holds "job" (on a cluster another identifier may
    # live on another node), so no NOSCRIPT retry is counted below.
    warm = limiter.acquire("job")
    limiter.extend(warm)
    limiter.release(warm)
    limiter.in_flight("job")
    lease = limiter.acquire("job")
    key = key_of(backend, "job")
    before = (backend.admin.zrange(key, 0, -1, withscores=True), backend.admin.pttl(key))
    clock.advance(1000)
    backend.reset_command_stats()
    assert not limiter.acquire("job")
    assert not limiter.acquire("job")
    assert backend.command_calls("zadd", "zrem", "zremrangebyscore", "pexpire", "del") == 0
    assert backend.command_calls("evalsha", "eval") == 2
    assert backend.admin.zrange(key, 0, -1, withscores=True) == before[0]
    assert backend.admin.pttl(key) <= before[1]
    backend.reset_command_stats()
    assert limiter.extend(lease)
    assert limiter.release(lease)
    assert backend.command_calls("evalsha", "eval") == 2


def test_exact_key_layout(backend: BackendCase) -> None:
    limiter = limiter_for(backend, LEASE, clock=VirtualClock(T0))
    first = limiter.acquire("user:1")
    second = limiter.acquire("user:1", lease="90 s")
    key = key_of(backend, "user:1")
    expected = "@upstash/ratelimit:{user%3A1}:concurrency" if backend.is_cluster else None
    assert key == (expected or "@upstash/ratelimit:user:1:concurrency")
    assert backend.all_keys() == {key}
    assert backend.admin.type(key) == b"zset"
    assert backend.admin.zrange(key, 0, -1, withscores=True) == [
        (first.token.encode(), T0 + 60_000),
        (second.token.encode(), T0 + 90_000),
    ]
    jobs = limiter_for(backend, LEASE, clock=VirtualClock(T0), prefix="jobs")
    jobs.acquire("user:1")
    assert backend.all_keys() == {key, key_of(backend, "user:1", prefix="jobs")}
    assert limiter.reset("user:1") == 1
    assert limiter.reset("user:1") == 0
    assert backend.all_keys() == {key_of(backend, "user:1", prefix="jobs")}


# -- context managers ---------------------------------------------------------------------


def test_the_context_manager_releases_on_exit_even_when_the_body_raises(
    backend: BackendCase,
) -> None:
    if backend.is_async:
        backend.loop.run(_async_context_manager(AsyncConcurrency(backend.conn, LEASE)))
        return
    limiter = Concurrency(backend.conn, LEASE)
    with limiter.acquire("job") as lease:
        assert lease
        assert limiter.in_flight("job") == 1
    assert limiter.in_flight("job") == 0

    def fail_while_holding() -> None:
        with limiter.acquire("job"):
            assert limiter.in_flight("job") == 1
            raise Boom

    with pytest.raises(Boom):
        fail_while_holding()
    assert limiter.in_flight("job") == 0
    # A refused lease runs the body too (it checks the lease) and gives back nobody's slot.
    held = [limiter.acquire("job"), limiter.acquire("job")]
    with limiter.acquire("job") as refused:
        assert not refused
    assert limiter.in_flight("job") == 2
    for lease in held:
        assert limiter.release(lease)


async def _async_context_manager(limiter: AsyncConcurrency) -> None:
    async with limiter.acquire("job") as lease:
        assert lease
        assert await limiter.in_flight("job") == 1
    assert await limiter.in_flight("job") == 0

    async def fail_while_holding() -> None:
        async with limiter.acquire("job"):
            assert await limiter.in_flight("job") == 1
            raise Boom

    with pytest.raises(Boom):
        await fail_while_holding()
    assert await limiter.in_flight("job") == 0
    # A cancelled body gives its slot back too.
    entered = asyncio.Event()

    async def hold() -> None:
        async with limiter.acquire("job"):
            entered.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(hold())
    await entered.wait()
    assert await limiter.in_flight("job") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await limiter.in_flight("job") == 0
    held = [await limiter.acquire("job"), await limiter.acquire("job")]
    async with limiter.acquire("job") as refused:
        assert not refused
    assert await limiter.in_flight("job") == 2
    # An awaited async lease has no blocking release: a plain `with` says so.
    with pytest.raises(TypeError, match="async with"), held[0]:
        pass
    for lease in held:
        assert await limiter.release(lease)


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", [None, 1.5, b"job", "", True, ["job"], "\ud800"])
def test_bad_identifiers_are_refused(backend: BackendCase, identifier: Any) -> None:
    limiter = limiter_for(backend, LEASE)
    for method in (limiter.acquire, limiter.in_flight, limiter.reset):
        with pytest.raises(InvalidKeyError):
            method(identifier)
    assert backend.all_keys() == set()


def test_odd_identifiers_get_keys_of_their_own(backend: BackendCase) -> None:
    limiter = limiter_for(backend, ConcurrencyLimit(1, "60 s"), clock=VirtualClock(T0))
    odd = ["a", "a*", "ab", "a?", "[a]", "{a}", "a}", "{", "a:b", "ユーザー 😀", "x" * 10_000]
    for identifier in odd:
        assert limiter.acquire(identifier), identifier
    for identifier in odd:
        assert not limiter.acquire(identifier), identifier
    found = backend.all_keys()
    assert len(found) == len(odd)
    assert all(len(k.encode()) < 300 for k in found)  # the huge one is stored as a digest
    assert key_of(backend, "ユーザー 😀") in found
    assert limiter.reset("a*") == 1
    assert [limiter.in_flight(i) for i in odd] == [0 if i == "a*" else 1 for i in odd]
    # An int identifier is written in decimal: 42 and "42" are one identifier.
    assert limiter.acquire(42)
    assert limiter.in_flight("42") == 1


def test_bad_arguments_say_what_is_wrong(backend: BackendCase) -> None:
    limiter = limiter_for(backend, LEASE)
    with pytest.raises(InvalidArgumentError, match="lease must be at least 1 ms"):
        limiter.acquire("job", lease="0 s")
    with pytest.raises(InvalidArgumentError, match="lease must look like"):
        limiter.acquire("job", lease="a while")
    lease = limiter.acquire("job")
    with pytest.raises(InvalidArgumentError, match="lease_duration must be"):
        limiter.extend(lease, -5)
    for bad in ("token", None, lease.token):
        with pytest.raises(InvalidArgumentError, match="expected a Lease"):
            limiter.release(bad)
        with pytest.raises(InvalidArgumentError, match="expected a Lease"):
            limiter.extend(bad)
    assert limiter.in_flight("job") == 1
    with pytest.raises(TypeError, match="ConcurrencyLimit"):
        limiter_for(backend, 3)


# -- Redis slow or down -------------------------------------------------------------------

MARGIN = 1.5


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - started


@pytest.mark.parametrize("policy", ["allow", "deny"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_hung_redis_gets_the_policys_answer_in_time(
    hung_port: int, mode: str, policy: str, loop_thread: LoopThread
) -> None:
    conn = connect(f"redis://127.0.0.1:{hung_port}")
    backend = BackendCase(conn, topology="standalone", mode=mode, loop=loop_thread)
    limiter = limiter_for(backend, LEASE, timeout=0.3, on_timeout=policy)
    for _ in range(2):  # also once a (dead) connection sits in the pool
        lease, took = timed(limiter.acquire, "job")
        assert (lease.success, lease.reason) == (policy == "allow", "timeout")
        assert (lease.token, lease.remaining, lease.expires_at) == ("", 0, 0)
        assert 0.2 < took < 0.3 + MARGIN
        # Nothing is held, so nothing is given back: no round trip at all.
        released, took = timed(limiter.release, lease)
        assert (released, took < 0.2) == (False, True)  # under the 0.3 s a round trip waits
        assert limiter.extend(lease) is False
    # A lease that does hold a slot cannot be released or renewed either, but never raises.
    held = Lease(True, 2, 1, "job", "ab" * 16, T0)
    for method in (limiter.release, limiter.extend):
        answer, took = timed(method, held)
        assert answer is False
        assert took < 0.3 + MARGIN
    # Questions have no policy to answer them: they raise.
    with pytest.raises(BackendError):
        limiter.in_flight("job")
    if mode == "async":
        loop_thread.run(conn.aclose())
    conn.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:{port}", "redis+cluster://127.0.0.1:{port}"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redis_that_is_down_gets_the_policys_answer(
    url: str, mode: str, loop_thread: LoopThread
) -> None:
    conn = connect(url.format(port=closed_port()))
    topology = "cluster" if "cluster" in url else "standalone"
    backend = BackendCase(conn, topology=topology, mode=mode, loop=loop_thread)
    limiter = limiter_for(backend, LEASE, timeout=0.5, on_timeout="deny")
    lease, took = timed(limiter.acquire, "job")
    assert (lease.success, lease.reason) == (False, "timeout")
    assert took < 0.5 + MARGIN
    # The context manager rides it out too: the body runs, and the exit has nothing to do.
    ran = []
    if backend.is_async:

        async def body() -> None:
            async with AsyncConcurrency(conn, LEASE, timeout=0.5).acquire("job") as lease:
                ran.append(lease)

        loop_thread.run(body())
        loop_thread.run(conn.aclose())
    else:
        with Concurrency(conn, LEASE, timeout=0.5).acquire("job") as lease:
            ran.append(lease)
    assert [(lease.success, lease.reason) for lease in ran] == [(True, "timeout")]
    conn.close()
