"""Auto-pipelining under load: thousands of tasks, a random mix of operations, faults mid-run.

The tests use the interface only: ``Connection(url, autopipeline=True)``, its
``async_driver()`` and the operations of :mod:`redkit.core.ops`. They hold for any
implementation of auto-pipelining behind it. Each run draws its mix of operations from a seed
that it prints (pytest shows it with a failure); ``REDKIT_LOAD_SEED=<seed>`` replays that mix
(the interleaving on the event loop and the server's timing still vary from run to run).

Each runs on a standalone server and on a 3-master cluster.
test_autopipeline.py holds the small, targeted cases; these are the mixed, randomized runs.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import redis.asyncio

from redkit.core.ops import Command, Pipeline, ScriptCall, command
from redkit.core.scripts import Script
from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from redkit.drivers.redis import AsyncRedisDriver
from redkit.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CommandError,
    RedkitError,
)
from support.backends import autopipelined

# Timeouts, cancellations and a restart under a deliberate load: run without other workers'
# tests competing for the two cores (tasks.py test runs the `alone` tests after the rest).
pytestmark = pytest.mark.alone

#: Keys of every caller's own counter start here times (caller + 1): a reply names its caller.
BASE = 1_000_000
#: The list that INCR fails on (WRONGTYPE), and the pair that only MULTI/EXEC increments.
LIST_KEY = "ld:list"
PAIR = ("{t}a", "{t}b")
#: Arguments redis cannot encode (a caller's bug): each must fail its own call only.
UNENCODABLE: tuple[Any, ...] = (None, True, [1], {"a": 1}, object())
#: The timeouts of callers that give up early, in s: 0 gives up before the first send.
GIVE_UP_AFTER = (0.0, 0.00001, 0.0001, 0.001, 0.005)
#: Whether a call its caller gave up on is applied before the caller's next reply, or never
#: (each command is packed, or refused, before it joins a write: the test at the end).
GIVEN_UP_STAYS_IN_PLACE = True

_scripts = itertools.count()


def fresh_script(seed: int, body: str) -> Script:
    """A script no server has seen yet: its first calls miss, as after a restart."""
    return Script("load", f"-- autopipeline load {seed} {next(_scripts)} {time.time_ns()}\n{body}")


def draw_seed(what: str) -> int:
    """The run's seed: REDKIT_LOAD_SEED, or a new one; printed, so a failure can be replayed."""
    seed = int(os.environ.get("REDKIT_LOAD_SEED") or random.SystemRandom().randrange(2**32))
    print(f"{what}: replay with REDKIT_LOAD_SEED={seed}")
    return seed


@dataclass
class Target:
    """The Redis under test: its URL, and plain clients on every master to look and meddle."""

    topology: str
    url: str
    nodes: list[tuple[str, int]]

    def admins(self) -> list[redis.Redis]:
        return [redis.Redis(host=host, port=port) for host, port in self.nodes]

    def async_admins(self) -> list[redis.asyncio.Redis]:
        return [redis.asyncio.Redis(host=host, port=port) for host, port in self.nodes]

    def admin(self) -> redis.Redis | redis.cluster.RedisCluster:
        """One client for the whole keyspace (a cluster client on a cluster)."""
        host, port = self.nodes[0]
        if self.topology == "cluster":
            return redis.cluster.RedisCluster(host=host, port=port)
        return redis.Redis(host=host, port=port)


def target_of(server: EmbeddedRedis | EmbeddedCluster) -> Target:
    if isinstance(server, EmbeddedCluster):
        server.flushall()
        return Target("cluster", server.url, [("127.0.0.1", port) for port in server.ports])
    with server.client() as admin:
        admin.flushall()
    return Target("standalone", server.url, [("127.0.0.1", server.port or 0)])


@pytest.fixture(params=["standalone", "cluster"])
def target(request: pytest.FixtureRequest) -> Target:
    """The session's standalone server, then its cluster; emptied first."""
    name = "redis_cluster" if request.param == "cluster" else "redis_server"
    return target_of(request.getfixturevalue(name))


# -- the mixed run ------------------------------------------------------------------------------

#: What a caller's step does, with its weight in the random mix.
STEPS = {
    "incr": 30,  # INCR its own key
    "script": 14,  # the same by a script
    "pipeline": 10,  # INCR, GET, script on its key, and sometimes a WRONGTYPE, in one Pipeline
    "own transaction": 5,  # two INCRs of its key in MULTI/EXEC
    "pair transaction": 5,  # INCR both keys of PAIR in MULTI/EXEC
    "observe pair": 5,  # MGET PAIR: both keys always equal
    "wrongtype": 5,  # INCR on LIST_KEY: a CommandError for this caller only
    "bad argument": 5,  # INCRBY its key by an argument redis cannot encode
    "give up": 8,  # asyncio.wait_for with a tiny timeout around an INCR
    "cancelled": 8,  # task.cancel() on an INCR, after 0 to 3 loop passes
}


@dataclass
class Caller:
    """One task's plan and what it knows of its own counter.

    Its counter's value, less its base, is at least ``low`` and at most ``low + pending``:
    each call it gave up on or cancelled may or may not be applied (``pending`` of them are
    not accounted for yet). An answered INCR is therefore one more than the last answered
    one, plus how many of the pending calls were applied in between; nothing else. With
    :data:`GIVEN_UP_STAYS_IN_PLACE`, a pending call not applied by then never is.
    """

    n: int
    steps: list[tuple[str, Any]]
    low: int = 0
    pending: int = 0
    pair_seen: list[int] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"ld:{self.n}"

    @property
    def base(self) -> int:
        return (self.n + 1) * BASE

    def counted(self, reply: Any, by: int = 0) -> None:
        """A reply of the counter's value after adding ``by``: check it, learn from it."""
        count = int(reply) - self.base
        assert self.low + by <= count <= self.low + self.pending + by, (
            f"caller {self.n}: {reply!r} is not its own counter's value (expected "
            f"{self.base + self.low + by} plus at most {self.pending} calls given up)"
        )
        if GIVEN_UP_STAYS_IN_PLACE:
            self.pending = 0  # the others never will be
        else:
            self.pending -= count - self.low - by  # those were applied, by now
        self.low = count

    def incremented(self, reply: Any) -> None:
        """An answered INCR."""
        assert isinstance(reply, int), (self.n, reply)
        self.counted(reply, 1)

    def maybe_incremented(self) -> None:
        self.pending += 1


def plan(rng: random.Random, callers: int) -> list[Caller]:
    names, weights = list(STEPS), list(STEPS.values())
    planned = []
    for n in range(callers):
        steps: list[tuple[str, Any]] = []
        for name in rng.choices(names, weights, k=rng.randint(2, 6)):
            if name == "pipeline":
                detail: Any = rng.random() < 0.3  # with a WRONGTYPE item
            elif name == "bad argument":
                detail = rng.choice(UNENCODABLE)
            elif name == "give up":
                detail = rng.choice(GIVE_UP_AFTER)
            elif name == "cancelled":
                detail = rng.randint(0, 3)
            else:
                detail = None
            steps.append((name, detail))
        planned.append(Caller(n, steps))
    return planned


async def perform(
    driver: AsyncRedisDriver, caller: Caller, script: Script, name: str, detail: Any
) -> None:
    """One step of ``caller``, checked against what it knows."""
    key = caller.key
    incr = command("INCR", key)
    if name == "incr":
        caller.incremented(await driver.execute(incr))
    elif name == "script":
        caller.incremented(await driver.execute(ScriptCall(script, (key,), (1,))))
    elif name == "pipeline":
        items: list[Command | ScriptCall] = [
            incr,
            command("GET", key),
            ScriptCall(script, (key,), (1,)),
        ]
        if detail:
            items.insert(1, command("INCR", LIST_KEY))
        replies = await driver.execute(Pipeline(tuple(items)))
        assert len(replies) == len(items), (caller.n, replies)
        if detail:
            wrong = replies.pop(1)
            assert isinstance(wrong, CommandError), wrong
            assert "WRONGTYPE" in str(wrong), wrong
        first, read, scripted = replies
        caller.incremented(first)
        assert read == str(first).encode(), (caller.n, first, read)
        caller.incremented(scripted)
    elif name == "own transaction":
        first, second = await driver.execute(Pipeline((incr, incr), transaction=True))
        caller.incremented(first)
        caller.incremented(second)
    elif name == "pair transaction":
        a, b = await driver.execute(
            Pipeline(tuple(command("INCR", k) for k in PAIR), transaction=True)
        )
        assert a == b, f"caller {caller.n}: a transaction left {PAIR} at {a} and {b}"
        caller.pair_seen.append(a)
    elif name == "observe pair":
        a, b = await driver.execute(command("MGET", *PAIR))
        assert a == b, f"caller {caller.n} saw {PAIR} at {a!r} and {b!r}: half a transaction"
    elif name == "wrongtype":
        with pytest.raises(CommandError, match="WRONGTYPE"):
            await driver.execute(command("INCR", LIST_KEY))
    elif name == "bad argument":
        with pytest.raises(RedkitError) as raised:
            await driver.execute(command("INCRBY", key, detail))
        # The caller's own mistake, not a fault of the connection (which others share).
        assert not isinstance(raised.value, (BackendUnavailable, BackendTimeout)), raised.value
    elif name == "give up":
        try:
            caller.incremented(await asyncio.wait_for(driver.execute(incr), detail))
        except asyncio.TimeoutError:
            caller.maybe_incremented()
    else:
        assert name == "cancelled"
        call = asyncio.ensure_future(driver.execute(incr))
        for _ in range(detail):
            await asyncio.sleep(0)
        call.cancel()
        try:
            caller.incremented(await call)
        except asyncio.CancelledError:
            caller.maybe_incremented()


async def flush_scripts_until(done: asyncio.Event, target: Target, rng: random.Random) -> int:
    """SCRIPT FLUSH on every master, from a client of its own, again and again; the count."""
    admins = target.async_admins()
    flushes = 0
    try:
        while not done.is_set():
            for admin in admins:
                await admin.script_flush()
            flushes += 1
            await asyncio.sleep(rng.choice((0, 0.001, 0.003)))
    finally:
        for admin in admins:
            await admin.aclose()
    return flushes


def test_thousands_of_callers_with_a_random_mix_each_get_their_own_replies(
    target: Target,
) -> None:
    seed = draw_seed("mixed run")
    rng = random.Random(seed)
    callers = plan(rng, 2000)
    script = fresh_script(seed, "return redis.call('INCRBY', KEYS[1], ARGV[1])")
    conn = autopipelined(target.url)
    admin = target.admin()
    try:
        admin.rpush(LIST_KEY, "x")
        setup = admin.pipeline(transaction=False)
        for caller in callers:
            setup.set(caller.key, caller.base)
        setup.execute()
    finally:
        admin.close()

    async def run_caller(driver: AsyncRedisDriver, caller: Caller) -> None:
        for name, detail in caller.steps:
            await perform(driver, caller, script, name, detail)

    async def body() -> int:
        driver = conn.async_driver()
        done = asyncio.Event()
        flusher = asyncio.ensure_future(flush_scripts_until(done, target, random.Random(seed)))
        try:
            await asyncio.gather(*(run_caller(driver, caller) for caller in callers))
        finally:
            done.set()
        flushes = await flusher
        # The driver is still in step: each counter is where its caller's replies left it,
        # give or take the calls it gave up on, and the next INCR of each follows on.
        values = await asyncio.gather(*(driver.execute(command("GET", c.key)) for c in callers))
        for caller, value in zip(callers, values, strict=True):
            caller.counted(value)
        replies = await asyncio.gather(*(driver.execute(command("INCR", c.key)) for c in callers))
        for caller, reply in zip(callers, replies, strict=True):
            caller.incremented(reply)
        return flushes

    async def main() -> int:
        try:
            # A guard against a hang, not a speed assertion.
            return await asyncio.wait_for(body(), 120)
        finally:
            await conn.aclose()

    flushes = asyncio.run(main())
    assert flushes >= 1
    admin = target.admin()
    try:
        # A fresh client agrees with every caller's last reply.
        reads = admin.pipeline(transaction=False)
        for caller in callers:
            reads.get(caller.key)
        for caller, value in zip(callers, reads.execute(), strict=True):
            caller.counted(value)
        assert admin.lrange(LIST_KEY, 0, -1) == [b"x"]
        # Each pair transaction was applied once, whole: its replies are 1..N, each once.
        pairs = sorted(value for caller in callers for value in caller.pair_seen)
        assert pairs == list(range(1, len(pairs) + 1))
        expected_pair = str(len(pairs)).encode() if pairs else None
        assert [admin.get(key) for key in PAIR] == [expected_pair] * 2
    finally:
        admin.close()


# -- a restart mid-run --------------------------------------------------------------------------


@dataclass
class Restart:
    """A server of the test's own, with the function that restarts it (or one of its nodes)."""

    target: Target
    restart: Callable[[], object]


@pytest.fixture(params=["standalone", "cluster"])
def restartable(request: pytest.FixtureRequest) -> Iterator[Restart]:
    """A standalone server of the test's own, then a cluster whose first master restarts."""
    if request.param == "cluster":
        # Skip before starting a whole cluster for nothing.
        autopipelined(request.getfixturevalue("redis_cluster").url)
        with EmbeddedCluster(3) as cluster:
            yield Restart(target_of(cluster), lambda: cluster.restart_node(0))
    else:
        with EmbeddedRedis() as server:
            yield Restart(target_of(server), server.restart)


@dataclass
class Outcome:
    """One call: when it started and ended (loop time), and its reply or typed error."""

    started: float
    ended: float
    reply: Any = None
    error: BackendUnavailable | BackendTimeout | None = None


@pytest.mark.slow
def test_a_restart_mid_run_fails_waiting_callers_typed_then_serves_again(
    restartable: Restart,
) -> None:
    seed = draw_seed("restart")
    rng = random.Random(seed)
    callers, socket_timeout = 300, 1.0
    conn = autopipelined(restartable.target.url, socket_timeout=socket_timeout)
    # A script whose reply names its key: the reply is surely this caller's own.
    script = fresh_script(seed, "return {KEYS[1], redis.call('INCR', KEYS[1])}")
    kinds = [rng.choice(("command", "script", "pipeline")) for _ in range(callers)]

    async def call(driver: AsyncRedisDriver, n: int) -> Any:
        key = f"rs:{n}"
        if kinds[n] == "command":
            return await driver.execute(command("INCR", key))
        if kinds[n] == "script":
            named, count = await driver.execute(ScriptCall(script, (key,), ()))
            assert named == key.encode(), (n, named)
            return count
        count, read = await driver.execute(Pipeline((command("INCR", key), command("GET", key))))
        if isinstance(count, BackendError):
            raise count  # in a pipeline, an error stands in its item's place
        assert read == str(count).encode(), (n, count, read)
        return count

    async def caller(driver: AsyncRedisDriver, n: int, after: int) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome] = []
        # Until `after` calls have been answered since the restart was over.
        while sum(1 for o in outcomes if o.error is None and o.started > window[1]) < after:
            outcome = Outcome(loop.time(), 0.0)
            try:
                outcome.reply = await call(driver, n)
            except (BackendUnavailable, BackendTimeout) as exc:
                # Only the typed errors of a server gone or silent: anything else fails the test.
                outcome.error = exc
            outcome.ended = loop.time()
            outcomes.append(outcome)
            if outcome.error is not None:
                await asyncio.sleep(0.01)  # a refused connect fails at once: no busy loop
        return outcomes

    # The restart runs on this thread, the callers on a loop thread of their own: on Linux a
    # server dies with the thread that started it, and an executor's thread does not last.
    window = [float("inf"), float("inf")]  # when the restart began and ended, loop time
    running, restarted = threading.Event(), threading.Event()

    async def body() -> list[list[Outcome]]:
        loop = asyncio.get_running_loop()
        driver = conn.async_driver()
        tasks = [asyncio.ensure_future(caller(driver, n, 3)) for n in range(callers)]
        await asyncio.sleep(0.2)
        window[0] = loop.time()
        running.set()
        assert await loop.run_in_executor(None, restarted.wait, 30), "the restart did not end"
        window[1] = loop.time()
        return await asyncio.gather(*tasks)

    async def main() -> list[list[Outcome]]:
        try:
            # A guard against a hang, not a speed assertion: every caller hears in time.
            return await asyncio.wait_for(body(), 60)
        finally:
            await conn.aclose()

    result: list[list[list[Outcome]]] = []
    failure: list[BaseException] = []

    def in_thread() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:  # re-raised below, on the test's thread
            failure.append(exc)
        finally:
            running.set()

    thread = threading.Thread(target=in_thread)
    thread.start()
    try:
        assert running.wait(30)
        if not failure:
            restartable.restart()
    finally:
        restarted.set()
        thread.join(90)
    assert not thread.is_alive()
    if failure:
        raise failure[0]
    [runs] = result
    errors = [o.error for outcomes in runs for o in outcomes if o.error is not None]
    print(f"{len(errors)} calls failed: {sorted({type(error).__name__ for error in errors})}")
    # The restart was felt: calls in flight or sent while the server was away failed.
    assert errors, "no call failed: the restart happened outside the run"
    for n, outcomes in enumerate(runs):
        # No call outlived its deadline by much (a generous bound: the machine is shared).
        slowest = max(o.ended - o.started for o in outcomes)
        assert slowest < 10 * socket_timeout, (n, slowest)
        # Answered calls in a row count up by one; only a failed call (applied or not) or
        # the restart (the new server starts from nothing) may break the sequence.
        for before, now in itertools.pairwise(outcomes):
            across = before.started < window[1] and now.ended > window[0]
            if before.error is None and now.error is None and not across:
                assert now.reply == before.reply + 1, (n, before.reply, now.reply)
        assert outcomes[-1].error is None
    admin = restartable.target.admin()
    try:
        # The new server holds what the last replies said.
        assert [admin.get(f"rs:{n}") for n in range(callers)] == [
            str(outcomes[-1].reply).encode() for outcomes in runs
        ]
    finally:
        admin.close()


# -- a call given up stays in its place -------------------------------------------------------


def test_a_call_given_up_is_never_applied_after_its_callers_next_call(target: Target) -> None:
    conn = autopipelined(target.url)
    ahead = 50

    async def main() -> None:
        driver = conn.async_driver()
        # One batch: a bad argument first, then other callers' operations, then this one's.
        bad = asyncio.ensure_future(driver.execute(command("SET", "gu:bad", None)))  # type: ignore[arg-type]
        others = [
            asyncio.ensure_future(driver.execute(command("INCR", f"gu:{n}"))) for n in range(ahead)
        ]
        given_up = asyncio.ensure_future(driver.execute(command("SET", "gu:mine", "given up")))
        for _ in range(3):  # the batch leaves, and fails to encode
            await asyncio.sleep(0)
        given_up.cancel()
        # The caller moves on: its next write must be the last of its writes to land.
        assert await driver.execute(command("SET", "gu:mine", "final")) is True
        await asyncio.gather(bad, *others, return_exceptions=True)
        await asyncio.sleep(0.1)  # whatever was still in flight has landed

    async def run() -> None:
        try:
            await asyncio.wait_for(main(), 30)
        finally:
            await conn.aclose()

    asyncio.run(run())
    admin = target.admin()
    try:
        assert admin.get("gu:mine") == b"final"
        # The others were all answered and applied once each.
        assert [admin.get(f"gu:{n}") for n in range(ahead)] == [b"1"] * ahead
    finally:
        admin.close()
