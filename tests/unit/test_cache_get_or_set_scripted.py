"""``get_or_set`` as both facades run it: one read, then the load through their single flight.

The facades hand the flow two functions: ``share`` (their single flight, which runs the load's
flow once for the callers of one key) and ``later`` (their background refresh). Here the steps
answer those calls themselves, and drive the flow ``share`` is given; no server runs.
"""

from __future__ import annotations

import time
from typing import Any

from redkit.cache.envelope import pack
from redkit.cache.flows import CacheFlows, Lookup
from redkit.cache.serializers import JsonSerializer
from redkit.core.errors import BackendTimeout
from support.flowdrive import Do, Like, Same, call, cmd, drive, script

KEY, LEASE = "t:g0:k", "{t:g0:k}#lease"
GENERATION = cmd("GET", "t#generation")
LEASE_MS, TTL_MS = 30_000, 60_000
HEX16 = Like(r"[0-9a-f]{16}")


def make_flows(**options: Any) -> CacheFlows:
    settings: dict[str, Any] = {
        "namespace": "t",
        "version": None,
        "default_ttl_ms": TTL_MS,
        "negative_ttl_ms": None,
        "lease_ms": LEASE_MS,
        "serializer": JsonSerializer(),
        "secret": None,
    }
    flows = CacheFlows(**{**settings, **options})
    flows.generation_check_s = 3600.0
    return flows


def entry(value: Any, *, fresh_ms: int = TTL_MS, load_ms: int = 0) -> bytes:
    now = int(time.time() * 1000)
    return pack(
        JsonSerializer(), KEY, value, created_ms=now - 1, fresh_until_ms=now + fresh_ms,
        load_ms=load_ms, expires_ms=now + max(fresh_ms, 0) + 600_000,
    )  # fmt: skip


def loader() -> str:  # pragma: no cover - the steps answer its Call; it never runs
    raise AssertionError("a scripted loader is never called")


def share(flight: str, fill: Any) -> Any:  # pragma: no cover - answered by the steps
    raise AssertionError("the steps answer the single flight")


def later(flight: str, refresh: Any, key: Any) -> None:  # pragma: no cover - as share
    raise AssertionError("the steps answer the background refresh")


def test_a_cold_miss_reads_once_then_loads_in_the_single_flight_without_reading_again() -> None:
    flows = make_flows()
    fill, token = Same("fill"), Same("token", HEX16)

    def the_flight() -> Any:  # the leader of the single flight runs the load's own flow
        loaded = drive(
            fill.value(),
            [
                (script("take_lease", (LEASE,), (token, LEASE_MS, "written")), 1),
                (cmd("GET", KEY), None),  # after the lease only: another may have stored
                (call(loader, ()), "v"),
                (script("store_if_leased", (KEY, LEASE)), 1),
                (script("release_lease", (LEASE,), (token,)), 1),
            ],
        )
        return loaded.result

    driven = drive(
        flows.get_or_set("k", loader, share=share, later=later),
        [
            (GENERATION, None),
            (cmd("GET", KEY), None),  # the one read before the flight
            (call(share, ("0:k", fill)), Do(the_flight)),
        ],
    )
    assert driven.result == Lookup("v", False)
    assert (flows.stats.misses, flows.stats.loads, flows.stats.hits) == (1, 1, 0)


def test_a_fresh_hit_needs_no_flight_and_no_refresh() -> None:
    flows = make_flows()
    driven = drive(
        flows.get_or_set("k", loader, share=share, later=later),
        [(GENERATION, None), (cmd("GET", KEY), entry("v"))],
    )
    assert driven.result == Lookup("v", False)
    assert flows.stats.hits == 1


def test_a_stale_hit_is_served_and_its_refresh_handed_to_the_background() -> None:
    flows = make_flows(stale_ms=600_000)
    refresh = Same("refresh")
    driven = drive(
        flows.get_or_set("k", loader, share=share, later=later),
        [
            (GENERATION, None),
            (cmd("GET", KEY), entry("old", fresh_ms=-1)),
            (call(later, ("refresh:0:k", refresh, "k")), None),
        ],
    )
    assert driven.result == Lookup("old", True)
    assert flows.stats.stale_served == 1
    # What the background runs: the refresh under the lease, no read first.
    drive(refresh.value(), [(script("take_lease", (LEASE,)), 0)])


def test_xfetch_throws_its_dice_once_per_call() -> None:
    """The read decides "early" once; the flight does not read and decide again."""
    flows = make_flows(early_refresh=1.0)
    throws: list[float] = []

    def dice() -> float:
        throws.append(0.9999999)  # looks far ahead: this read reloads early
        return throws[-1]

    flows._random = dice
    fill = Same("fill")

    def the_flight() -> Any:  # another reader holds the lease: the read value is served
        return drive(fill.value(), [(script("take_lease", (LEASE,)), 0)]).result

    driven = drive(
        flows.get_or_set("k", loader, share=share, later=later),
        [
            (GENERATION, None),
            (cmd("GET", KEY), entry("old", fresh_ms=1000, load_ms=500)),
            (call(share, ("0:k", fill)), Do(the_flight)),
        ],
    )
    assert driven.result == Lookup("old", False)
    assert len(throws) == 1
    assert (flows.stats.hits, flows.stats.early_refreshes) == (1, 0)


def test_with_redis_out_of_reach_the_flight_only_loads() -> None:
    flows = make_flows()
    fill = Same("fill")

    def the_flight() -> Any:  # no Redis: the load's flow asks for nothing but the loader
        return drive(fill.value(), [(call(loader, ()), "v")]).result

    driven = drive(
        flows.get_or_set("k", loader, share=share, later=later),
        [
            (GENERATION, None),
            (cmd("GET", KEY), BackendTimeout("no answer")),
            (call(share, ("0:k", fill)), Do(the_flight)),
        ],
    )
    assert driven.result == Lookup("v", False)
    assert (flows.stats.errors, flows.stats.misses, flows.stats.loads) == (1, 1, 1)
