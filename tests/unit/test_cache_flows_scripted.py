"""The cache's stampede lease, write fence and tag stamps, op by op, with scripted replies.

Each test is the exact exchange one path has with Redis (see ``flowdrive``); no server runs.
What the scripts do with those keys and arguments (who wins a lease, what the fence refuses) is
Lua, and stays tested on real servers in tests/integration/test_cache_stampede.py and
test_cache_tags.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from redkit.cache.envelope import pack, unpack
from redkit.cache.flows import MISSING, CacheFlows, Lookup
from redkit.cache.serializers import JsonSerializer
from redkit.core.errors import BackendTimeout
from redkit.core.ops import Sleep
from support.flowdrive import ANY, Do, Like, Same, call, cmd, drive, pipeline, script

NAMESPACE = "t"
KEY = "t:g0:k"  # the namespace, its generation (0: never bumped), the cache key
LEASE = "{t:g0:k}#lease"  # in the entry's slot, so one script sees both
GENERATION = cmd("GET", "t#generation")
TAG = "t#tag:user%3A1"
LEASE_MS, TTL_MS = 30_000, 60_000
HEX16 = Like(r"[0-9a-f]{16}")


def make_flows(**options: Any) -> CacheFlows:
    settings: dict[str, Any] = {
        "namespace": NAMESPACE,
        "version": None,
        "default_ttl_ms": TTL_MS,
        "negative_ttl_ms": None,
        "lease_ms": LEASE_MS,
        "serializer": JsonSerializer(),
        "secret": None,
    }
    flows = CacheFlows(**{**settings, **options})
    # A test that runs several flows reads the generation once, however slow the machine.
    flows.generation_check_s = 3600.0
    return flows


def entry(value: Any, *, fresh_ms: int = TTL_MS, tags: dict[str, str] | None = None) -> bytes:
    """Bytes another process stored: fresh for ``fresh_ms`` more (negative: stale since)."""
    now = int(time.time() * 1000)
    return pack(
        JsonSerializer(), KEY, value, created_ms=now - 1, fresh_until_ms=now + fresh_ms,
        expires_ms=now + max(fresh_ms, 0) + 600_000, tags=tags,
    )  # fmt: skip


def stored(data: Same) -> Any:
    """What the flow wrote, decoded: (value, tags)."""
    written = unpack(JsonSerializer(), KEY, data.value)
    return written.value, written.tags


def loader() -> str:  # pragma: no cover - the steps answer its Call; it never runs
    raise AssertionError("a scripted loader is never called")


def take(token: Same) -> Any:
    return script("take_lease", (LEASE,), (token, LEASE_MS, "written"))


def store_if_leased(token: Same, data: Same, px: int = TTL_MS) -> Any:
    return script("store_if_leased", (KEY, LEASE), (token, data, px))


def release(token: Same) -> Any:
    return script("release_lease", (LEASE,), (token,))


# -- the stampede lease ----------------------------------------------------------------------


def test_a_miss_wins_the_lease_loads_stores_under_it_and_gives_it_back() -> None:
    flows = make_flows()
    token, data = Same("token", HEX16), Same("data")
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (take(token), 1),
            (cmd("GET", KEY), None),  # a load that landed just before the lease: none
            (call(loader, ()), "v"),
            (store_if_leased(token, data), 1),
            (release(token), 1),
        ],
    )
    assert driven.result == Lookup("v", False)
    assert stored(data) == ("v", {})
    stats = flows.stats
    assert (stats.misses, stats.loads, stats.leases_won, stats.leases_lost) == (1, 1, 1, 0)


def test_a_miss_that_loses_the_lease_waits_for_the_winners_value_without_loading() -> None:
    flows = make_flows()
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (take(Same("token")), 0),
            (Sleep(0.005), None),  # waiting holds no connection: a sleep between two reads
            (cmd("GET", KEY), entry("theirs")),
        ],
    )
    assert driven.result == Lookup("theirs", False)
    stats = flows.stats
    assert (stats.hits, stats.loads, stats.leases_won, stats.leases_lost) == (1, 0, 0, 1)


def test_a_waiter_backs_off_from_5_ms_to_100_ms_between_looks() -> None:
    flows = make_flows()
    steps: list[tuple[Any, Any]] = [
        (GENERATION, None),
        (cmd("GET", KEY), None),
        (take(Same("token")), 0),
    ]
    for pause in (0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1):
        steps += [(Sleep(pause), None), (cmd("GET", KEY), None), (take(Same("again")), 0)]
    steps += [(Sleep(0.1), None), (cmd("GET", KEY), entry("at last"))]
    assert drive(flows.get_or_set("k", loader), steps).result == Lookup("at last", False)


def test_a_waiter_takes_the_lease_over_at_once_when_the_loader_gives_up() -> None:
    # The holder's load failed (or a write fenced it out): its lease is gone, no value came.
    flows = make_flows()
    theirs, mine, data = Same("theirs"), Same("mine", HEX16), Same("data")
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (take(theirs), 0),
            (Sleep(0.005), None),
            (cmd("GET", KEY), None),
            (take(mine), 1),
            (cmd("GET", KEY), None),
            (call(loader, ()), "mine"),
            (store_if_leased(mine, data), 1),
            (release(mine), 1),
        ],
    )
    assert driven.result == Lookup("mine", False)
    assert (flows.stats.leases_lost, flows.stats.leases_won, flows.stats.loads) == (1, 1, 1)


def test_a_lease_won_after_another_process_stored_takes_that_value_and_gives_it_back() -> None:
    """The race of two processes: A reads a miss; B loads, stores and releases; A then wins
    the lease. A reads once more, finds B's value, and does not load it a second time."""
    flows = make_flows()
    token = Same("token", HEX16)
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (take(token), 1),
            (cmd("GET", KEY), entry("from b")),
            (release(token), 1),
        ],
    )
    assert driven.result == Lookup("from b", False)
    assert (flows.stats.loads, flows.stats.leases_won) == (0, 0)


def test_waiters_load_without_a_lease_once_it_runs_out() -> None:
    # The holder died without a word: after the lease, the waiter loads and stores plainly.
    lease_ms = 100
    flows = make_flows(lease_ms=lease_ms)
    data = Same("data")
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (script("take_lease", (LEASE,), (ANY, lease_ms, "written")), 0),
            (Sleep(0.005), Do(lambda: time.sleep(lease_ms / 1000))),  # the lease runs out
            (cmd("GET", KEY), None),
            (script("take_lease", (LEASE,), (ANY, lease_ms, "written")), 0),
            (call(loader, ()), "mine"),
            (cmd("SET", KEY, data, "PX", TTL_MS), True),  # plain: no lease to check
        ],
    )
    assert driven.result == Lookup("mine", False)
    assert stored(data) == ("mine", {})
    assert (flows.stats.leases_lost, flows.stats.leases_won) == (1, 0)


def test_without_leases_a_miss_loads_and_sets_plainly() -> None:
    flows = make_flows(lease_ms=None)
    data = Same("data")
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (call(loader, ()), "v"),
            (cmd("SET", KEY, data, "PX", TTL_MS), True),
        ],
    )
    assert driven.result == Lookup("v", False)


@pytest.mark.parametrize("fails_at", [0, 1, 2], ids=["generation", "read", "lease"])
def test_redis_out_of_reach_before_the_load_means_load_and_store_nothing(fails_at: int) -> None:
    flows = make_flows()
    before: list[tuple[Any, Any]] = [
        (GENERATION, None),
        (cmd("GET", KEY), None),
        (take(Same("token")), 1),
    ][:fails_at]
    steps = [*before, ((GENERATION, cmd("GET", KEY), take(Same("t")))[fails_at], BackendTimeout())]
    driven = drive(flows.get_or_set("k", loader), [*steps, (call(loader, ()), "v")])
    assert driven.result == Lookup("v", False)
    assert flows.stats.errors == 1


def test_a_stale_value_is_served_and_one_refresh_reloads_it_under_the_lease() -> None:
    flows = make_flows(stale_ms=600_000)
    driven = drive(
        flows.get_or_set("k", loader),
        [(GENERATION, None), (cmd("GET", KEY), entry("old", fresh_ms=-1))],
    )
    assert driven.result == Lookup("old", True)  # the caller refreshes in the background
    token, data = Same("token", HEX16), Same("data")
    drive(
        flows.refresh("k", loader, None, ()),
        [
            (take(token), 1),
            (call(loader, ()), "new"),
            (store_if_leased(token, data, TTL_MS + 600_000), 1),  # kept for the stale window
            (release(token), 1),
        ],
    )
    assert stored(data) == ("new", {})
    # Another caller is refreshing already: this one leaves it alone.
    drive(flows.refresh("k", loader, None, ()), [(take(Same("late")), 0)])


def test_a_value_xfetch_picks_for_an_early_reload_is_reloaded_under_the_lease() -> None:
    flows = make_flows(early_refresh=1.0)
    flows._random = lambda: 0.9999999  # XFetch looks far ahead: this read reloads early
    now = int(time.time() * 1000)
    early = pack(
        JsonSerializer(), KEY, "old", created_ms=now - 1000, fresh_until_ms=now + 1000,
        load_ms=500, expires_ms=now + 1000,
    )  # fmt: skip
    token, data = Same("token", HEX16), Same("data")
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), early),
            (take(token), 1),
            (call(loader, ()), "new"),
            (store_if_leased(token, data), 1),
            (release(token), 1),
        ],
    )
    assert driven.result == Lookup("new", False)
    assert flows.stats.early_refreshes == 1
    # Another reader already reloads it: this one is served the value it read.
    driven = drive(
        flows.get_or_set("k", loader), [(cmd("GET", KEY), early), (take(Same("late")), 0)]
    )
    assert driven.result == Lookup("old", False)


# -- the fence a write leaves ----------------------------------------------------------------


def test_a_load_fenced_out_by_a_write_returns_its_value_and_still_gives_the_lease_back() -> None:
    # store_if_leased answers 0: a write came while the load ran (its value is older).
    flows = make_flows()
    token = Same("token", HEX16)
    driven = drive(
        flows.get_or_set("k", loader),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (take(token), 1),
            (cmd("GET", KEY), None),
            (call(loader, ()), "old"),
            (store_if_leased(token, Same("data")), 0),  # not stored, and no plain SET after
            (release(token), 0),
        ],
    )
    assert driven.result == Lookup("old", False)  # the caller still gets what it loaded


FENCE = cmd("SET", LEASE, "written", "PX", LEASE_MS)


@pytest.mark.parametrize("lease", [True, False], ids=["lease", "no-lease"])
@pytest.mark.parametrize("write", ["set", "set_many", "delete", "write_through"])
def test_every_write_fences_the_loads_that_began_before_it(write: str, lease: bool) -> None:
    """The fence is sent with the write, in its pipeline; without leases there is none."""
    flows = make_flows(lease_ms=LEASE_MS if lease else None)
    fence = (FENCE,) if lease else ()
    data = Same("data")
    store = cmd("SET", KEY, data, "PX", TTL_MS)
    flow: Any
    if write == "set":
        # Without a fence the store goes alone, not as a pipeline of one.
        step = (pipeline(store, *fence), [True, True]) if lease else (store, True)
        flow, steps = flows.set("k", "v"), [step]
    elif write == "set_many":
        flow, steps = flows.set_many({"k": "v"}), [(pipeline(store, *fence), [True] * (1 + lease))]
    elif write == "delete":
        unlink = cmd("UNLINK", KEY)
        flow, steps = flows.delete("k"), [(pipeline(unlink, *fence), [1, *[True] * lease])]
    else:

        def write_row() -> str:  # pragma: no cover - answered by the steps
            raise AssertionError

        flow = flows.write_through("k", write_row)
        steps = [(call(write_row, ()), "v"), (pipeline(store, *fence), [True] * (1 + lease))]
    driven = drive(flow, [(GENERATION, None), *steps])
    assert driven.result == {"set": True, "set_many": True, "delete": 1}.get(write, "v")
    if write != "delete":
        assert stored(data) == ("v", {})


def test_a_write_through_whose_store_fails_deletes_the_key_and_fences_it() -> None:
    flows = make_flows()

    def write_row() -> str:  # pragma: no cover - answered by the steps
        raise AssertionError

    refused = BackendTimeout("slow")
    driven = drive(
        flows.write_through("k", write_row),
        [
            (GENERATION, None),
            (call(write_row, ()), "v"),
            (pipeline(cmd("SET", KEY, ANY, "PX", TTL_MS), FENCE), [refused, True]),
            (pipeline(cmd("UNLINK", KEY), FENCE), [1, True]),  # the new value, or nothing
        ],
    )
    assert driven.result == "v"


# -- tag stamps and the invalidation race ----------------------------------------------------


def test_a_load_reads_its_tags_tokens_before_the_loader_runs_and_stamps_the_entry() -> None:
    flows = make_flows()
    token, data = Same("token", HEX16), Same("data")
    drive(
        flows.get_or_set("k", loader, tags=["user:1"]),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),
            (take(token), 1),
            (cmd("GET", KEY), None),
            (pipeline(script("tag_token", (TAG,), (HEX16,))), [b"tok1"]),  # before the load
            (call(loader, ()), "v"),
            (store_if_leased(token, data), 1),
            (release(token), 1),
        ],
    )
    assert stored(data) == ("v", {"user:1": "tok1"})


@pytest.mark.parametrize(
    ("current", "served"),
    [(b"tok1", True), (b"tok2", False), (None, False)],
    ids=["tag-unchanged", "tag-invalidated", "tag-key-gone"],
)
def test_a_tagged_entry_is_served_only_while_its_tags_hold_its_tokens(
    current: bytes | None, served: bool
) -> None:
    flows = make_flows()
    driven = drive(
        flows.get("k", MISSING),
        [
            (GENERATION, None),
            (cmd("GET", KEY), entry("v", tags={"user:1": "tok1"})),
            (pipeline(cmd("GET", TAG)), [current]),
        ],
    )
    assert driven.result == ("v" if served else MISSING)


def test_an_invalidation_between_the_stamp_and_the_write_leaves_that_write_stale() -> None:
    """The race, step by step: the write reads the tag's token, an invalidation replaces it,
    then the write lands with the old token; no reader is ever served it."""
    flows = make_flows(lease_ms=None)
    data, new_token = Same("data"), Same("new token", HEX16)

    def invalidation_lands() -> bool:
        # Another process invalidates the tag while this write is on its way.
        drive(flows.invalidate_tags("user:1"), [(pipeline(cmd("SET", TAG, new_token)), [True])])
        return True

    assert drive(
        flows.set("k", "v", tags=["user:1"]),
        [
            (GENERATION, None),
            (pipeline(script("tag_token", (TAG,), (HEX16,))), [b"old"]),
            (cmd("SET", KEY, data, "PX", TTL_MS), Do(invalidation_lands)),
        ],
    ).result
    assert stored(data) == ("v", {"user:1": "old"})
    driven = drive(
        flows.get("k", MISSING),
        [(cmd("GET", KEY), data.value), (pipeline(cmd("GET", TAG)), [new_token.value])],
    )
    assert driven.result is MISSING
