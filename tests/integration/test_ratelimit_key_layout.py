"""No identifier reaches a key of another kind (standalone, cluster, sync, async, REST)."""

from __future__ import annotations

from redkit import FixedWindow, TokenBucket
from redkit.core import keys
from redkit.core.clock import VirtualClock
from support.backends import BackendCase

T0 = 1_700_000_000_000


def test_an_identifier_ending_in_dynamic_leaves_the_plain_one_working(backend: BackendCase) -> None:
    rl = backend.ratelimit(
        TokenBucket(1, "1 h", 3), dynamic_limits=True, clock=VirtualClock(T0), prefix="kl"
    )
    assert rl.limit("user:bob:dynamic").success  # once a hash at kl:user:bob:dynamic
    assert [rl.limit("user:bob").success for _ in range(4)] == [True] * 3 + [False]


def test_reserved_identifiers_never_touch_the_deny_list(backend: BackendCase) -> None:
    rl = backend.ratelimit(
        FixedWindow(5, "1 m"), enable_protection=True, clock=VirtualClock(T0), prefix="kd"
    )
    rl.deny("evil")
    for identifier in ("denyList:all", "events:1699999200000", "dynamic:global"):
        assert rl.limit(identifier).success
        rl.reset(identifier)
    result = rl.limit("evil")
    assert (result.success, result.reason) == (False, "denyList")


def test_a_hash_named_identifier_has_its_own_bucket(backend: BackendCase) -> None:
    rl = backend.ratelimit(FixedWindow(1, "1 m"), clock=VirtualClock(T0), prefix="kh")
    long_id = "x" * 600
    assert rl.limit(long_id).success
    forged = "#" + keys.digest(long_id)
    assert rl.limit(forged).success  # not the long identifier's spent bucket
    assert not rl.limit(long_id).success


def test_ordinary_identifiers_keep_upstash_keys() -> None:
    from redkit.ratelimit.flows import identifier_part

    for identifier in ("user:42", "1.2.3.4", "::1", "alice@example.com", "api"):
        assert identifier_part(identifier, False) == identifier
    assert identifier_part("a:dynamic", False) == "#a%3Adynamic"
    assert identifier_part("#tag", False) == "#%23tag"
