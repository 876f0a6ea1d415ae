"""Which keys and arguments each guard combination of the rate limiter sends, with no Redis.

The guards are the deny list, dynamic limits and analytics; where the deciding script can reach
the global keys (one standalone server over RESP) they ride in that one script call, elsewhere
(a cluster, Upstash's REST, where a script may touch only its declared keys) the process reads
them itself and the script gets what it read. The ephemeral cache answers known blocks with no
round trip at all. What the scripts do with these arguments is Lua, tested on real servers in
tests/integration/test_ratelimit_dynamic.py, test_ratelimit_protection.py and
test_ratelimit_analytics.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from redkit.core.clock import ServerClock, VirtualClock
from redkit.core.errors import BackendTimeout
from redkit.core.scripts import SERVER_TIME
from redkit.ratelimit.analytics import Analytics
from redkit.ratelimit.ephemeral import EphemeralCache
from redkit.ratelimit.flows import RatelimitFlows
from redkit.ratelimit.limiters import SlidingWindow, TokenBucket
from redkit.ratelimit.scripts import guarded_args, sliding_window_args, token_bucket_args
from support.flowdrive import ANY, cmd, drive, pipeline, script

DENY_LIST, GLOBAL = "rl:denyList:all", "rl:dynamic:global"
RETENTION_MS = 90 * 24 * 3_600_000
#: The guarded script's analytics arguments: none (the script counts nothing), or the
#: retention, the hourly sets' key start and who, as JSON.
NOT_COUNTED: dict[str, Any] = {"retention": None, "events": "", "identifier": ""}
COUNTED: dict[str, Any] = {
    "retention": RETENTION_MS,
    "events": "rl:events:",
    "identifier": '"alice"',
}
NOW = 1_700_000_000_000  # the virtual clock's start
WINDOW = NOW // 10_000  # the sliding window's current bucket at NOW
ALLOWED = [1, 10, 9, NOW + 10_000, 0, NOW]  # allowed, limit, remaining, reset, retry ms, now


def make_flows(
    topology: str = "standalone",
    *,
    protection: bool = False,
    dynamic: bool = False,
    analytics: bool = False,
    ephemeral: bool = False,
    limiter: Any = None,
    on_timeout: str = "allow",
) -> RatelimitFlows:
    """A limiter as the facade builds it for that server: the clock is the server's, except
    over REST (Upstash asks scripts not to read it), where a virtual one stands in."""
    return RatelimitFlows(
        limiter or SlidingWindow(10, "10 s"),
        prefix="rl",
        cluster=topology == "cluster",
        scripts_declare_keys=topology == "rest",
        clock=VirtualClock(NOW) if topology == "rest" else ServerClock(),
        ephemeral_cache=EphemeralCache() if ephemeral else None,
        on_timeout=on_timeout,  # type: ignore[arg-type]
        dynamic_limits=dynamic,
        protection=protection,
        analytics=Analytics("rl") if analytics else None,
    )


def sliding(topology: str, *guard_keys: str, rate: int = 1, **guard: Any) -> Any:
    """The decision's script call: the algorithm alone, or behind the guards given.

    ``guard`` is every argument of :func:`guarded_args` but the clock and the algorithm's own
    (none given: no guard); the builders put each named value in the slot its script reads.
    """
    if topology == "standalone":
        keys: tuple[str, ...] = ("rl:alice",)
        now, clock = SERVER_TIME, -1  # -1: the script reads the server's clock
    elif topology == "cluster":
        keys, now, clock = ("rl:{alice}",), SERVER_TIME, -1  # one hash tag: one slot
    else:  # REST: every key named, the counters of this window and the last
        keys = ("rl:alice", f"rl:alice:{WINDOW}", f"rl:alice:{WINDOW - 1}")
        now, clock = NOW, NOW * 1000  # the caller's clock, sent in µs
    algorithm = sliding_window_args(now=now, rate=rate, limit=10, window=10_000)
    if not guard:
        return script("sliding_window", keys, algorithm)
    args = guarded_args(clock=clock, **guard, algorithm_args=algorithm)
    return script("guarded:sliding_window", (*guard_keys, *keys), args)


# Each guarded call names every guard argument: analytics (NOT_COUNTED or COUNTED), the deny
# values, where the dynamic limit's global override comes from ("": no dynamic limits, "key":
# in KEYS, "value": passed) and the value passed.
S, C, R = "standalone", "cluster", "rest"
DYNAMIC = "rl:alice:dynamic"
GUARDS: list[tuple[str, str, dict[str, bool], list[tuple[Any, Any]], bool]] = [
    # -- standalone: every guard rides in the one script call --------------------------------
    (S, "none", {}, [(sliding(S), ALLOWED)], False),
    (
        S, "deny", {"protection": True},
        [(
            sliding(
                S, DENY_LIST, **NOT_COUNTED, deny_values=("alice",),
                override_from="", global_override=None,
            ),
            ALLOWED,
        )],
        False,
    ),
    (
        S, "dynamic", {"dynamic": True},
        [(
            sliding(
                S, DYNAMIC, GLOBAL, **NOT_COUNTED, deny_values=(),
                override_from="key", global_override=None,
            ),
            ALLOWED,
        )],
        False,
    ),
    (
        S, "analytics", {"analytics": True},
        [(
            sliding(S, **COUNTED, deny_values=(), override_from="", global_override=None),
            ALLOWED,
        )],
        False,
    ),
    (
        S, "deny+dynamic", {"protection": True, "dynamic": True},
        [(
            sliding(
                S, DENY_LIST, DYNAMIC, GLOBAL, **NOT_COUNTED, deny_values=("alice",),
                override_from="key", global_override=None,
            ),
            ALLOWED,
        )],
        False,
    ),
    (
        S, "deny+analytics", {"protection": True, "analytics": True},
        [(
            sliding(
                S, DENY_LIST, **COUNTED, deny_values=("alice",),
                override_from="", global_override=None,
            ),
            ALLOWED,
        )],
        False,
    ),
    (
        S, "dynamic+analytics", {"dynamic": True, "analytics": True},
        [(
            sliding(
                S, DYNAMIC, GLOBAL, **COUNTED, deny_values=(),
                override_from="key", global_override=None,
            ),
            ALLOWED,
        )],
        False,
    ),
    (
        S, "all", {"protection": True, "dynamic": True, "analytics": True},
        [(
            sliding(
                S, DENY_LIST, DYNAMIC, GLOBAL, **COUNTED, deny_values=("alice",),
                override_from="key", global_override=None,
            ),
            ALLOWED,
        )],
        False,
    ),
    # -- cluster: the global keys live in other slots, so the process reads them -------------
    (C, "none", {}, [(sliding(C), ALLOWED)], False),
    (
        C, "deny", {"protection": True},
        [(cmd("SMEMBERS", DENY_LIST), []), (sliding(C), ALLOWED)], False,
    ),
    (
        C, "dynamic, no global limit", {"dynamic": True},
        [
            (cmd("GET", GLOBAL), None),
            (
                sliding(
                    C, "rl:{alice}:dynamic", **NOT_COUNTED, deny_values=(),
                    override_from="value", global_override=None,
                ),
                ALLOWED,
            ),
        ],
        False,
    ),
    (
        C, "dynamic, global limit 5", {"dynamic": True},
        [
            (cmd("GET", GLOBAL), b"5"),
            (
                sliding(
                    C, "rl:{alice}:dynamic", **NOT_COUNTED, deny_values=(),
                    override_from="value", global_override=5,
                ),
                ALLOWED,
            ),
        ],
        False,
    ),
    (C, "analytics", {"analytics": True}, [(sliding(C), ALLOWED)], True),  # tallied here
    (
        C, "all", {"protection": True, "dynamic": True, "analytics": True},
        [
            (cmd("SMEMBERS", DENY_LIST), [b"mallory"]),
            (cmd("GET", GLOBAL), b"5"),
            (
                sliding(
                    C, "rl:{alice}:dynamic", **NOT_COUNTED, deny_values=(),
                    override_from="value", global_override=5,
                ),
                ALLOWED,
            ),
        ],
        True,
    ),
    # -- Upstash's REST: scripts touch only the keys they are given --------------------------
    (R, "none", {}, [(sliding(R), ALLOWED)], False),
    (
        R, "all", {"protection": True, "dynamic": True, "analytics": True},
        [
            (cmd("SMEMBERS", DENY_LIST), []),
            (cmd("GET", GLOBAL), b"7"),
            (
                sliding(
                    R, DYNAMIC, **NOT_COUNTED, deny_values=(),
                    override_from="value", global_override=7,
                ),
                ALLOWED,
            ),
        ],
        True,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("topology", "options", "steps", "tallied"),
    [pytest.param(t, o, s, p, id=f"{t}-{name}") for t, name, o, s, p in GUARDS],
)
def test_each_guard_combination_sends_these_keys_and_arguments(
    topology: str, options: dict[str, bool], steps: list[tuple[Any, Any]], tallied: bool
) -> None:
    flows = make_flows(topology, **options)
    result = drive(flows.limit("alice"), steps).result
    assert (result.success, result.remaining) == (True, 9)
    # Analytics counted by the script leave nothing for the process to send; elsewhere the
    # process tallies the decision and sends it later.
    assert flows.has_pending() is tallied


def test_a_guard_wraps_any_algorithms_call_keeping_its_arguments_last() -> None:
    flows = make_flows(protection=True, dynamic=True, limiter=TokenBucket(2, "1 s", 20))
    reply = [1, 20, 19, NOW + 500, 0, NOW]
    expected = script(
        "guarded:token_bucket",
        (DENY_LIST, DYNAMIC, GLOBAL, "rl:alice"),
        guarded_args(
            clock=-1,
            **NOT_COUNTED,
            deny_values=("alice", "10.0.0.1"),
            override_from="key",
            global_override=None,
            algorithm_args=token_bucket_args(
                now=SERVER_TIME, rate=1, max_tokens=20, refill=2, interval=1000
            ),
        ),
    )
    assert drive(flows.limit("alice", ip="10.0.0.1"), [(expected, reply)]).result.success


def test_every_value_a_request_carries_is_checked_and_a_denied_one_is_remembered() -> None:
    flows = make_flows(protection=True)
    decision = sliding(
        S,
        DENY_LIST,
        **NOT_COUNTED,
        deny_values=("alice", "10.0.0.1", "curl/8", "XX"),
        override_from="",
        global_override=None,
    )
    request = {"ip": "10.0.0.1", "user_agent": "curl/8", "country": "XX"}
    # The script found the second value (the IP) on the list: nothing was consumed.
    result = drive(flows.limit("alice", **request), [(decision, [-1, 2, NOW])]).result
    assert (result.success, result.reason, result.denied_value) == (False, "denyList", "10.0.0.1")
    again = drive(flows.limit("bob", ip="10.0.0.1"), []).result  # no round trip
    assert (again.reason, again.denied_value) == ("denyList", "10.0.0.1")


def test_on_a_cluster_the_deny_list_copy_is_read_once_and_dropped_by_a_change() -> None:
    flows = make_flows("cluster", protection=True)
    denied = drive(flows.limit("alice"), [(cmd("SMEMBERS", DENY_LIST), [b"alice"])]).result
    assert (denied.reason, denied.denied_value) == ("denyList", "alice")  # no decision sent
    bob = script(
        "sliding_window",
        ("rl:{bob}",),
        sliding_window_args(now=SERVER_TIME, rate=1, limit=10, window=10_000),
    )
    drive(flows.limit("bob"), [(bob, ALLOWED)])  # the copy holds: no second SMEMBERS
    drive(flows.deny("carol"), [(cmd("SADD", DENY_LIST, "carol"), 1)])
    drive(flows.limit("bob"), [(cmd("SMEMBERS", DENY_LIST), [b"alice", b"carol"]), (bob, ALLOWED)])


def test_the_ephemeral_cache_answers_a_known_block_with_no_round_trip_until_a_refund() -> None:
    flows = make_flows(ephemeral=True)
    refused = [0, 10, 0, NOW + 60_000, 60_000, NOW]  # retry in a minute
    first = drive(flows.limit("alice"), [(sliding(S), refused)]).result
    assert (first.success, first.retry_after) == (False, 60.0)
    blocked = drive(flows.limit("alice"), []).result
    assert (blocked.success, blocked.reason) == (False, "cacheBlock")
    refund = sliding(S, rate=-1)
    drive(flows.limit("alice", -1), [(refund, [1, 10, 1, NOW + 60_000, 0, NOW])])
    drive(flows.limit("alice"), [(sliding(S), ALLOWED)])  # asked again: the refund may free it


@pytest.mark.parametrize("policy", ["allow", "deny"])
@pytest.mark.parametrize(
    ("topology", "options", "before"),
    [
        (S, {"protection": True, "dynamic": True}, []),
        (C, {"protection": True}, []),  # the deny list read times out
        (C, {"dynamic": True}, []),  # the global limit read times out
        (C, {"protection": True, "dynamic": True}, [(cmd("SMEMBERS", DENY_LIST), [])]),
    ],
    ids=["standalone-decision", "cluster-deny-list", "cluster-global-limit", "cluster-decision"],
)
def test_redis_not_answering_at_any_step_gives_the_timeout_policy(
    policy: str, topology: str, options: dict[str, bool], before: list[tuple[Any, Any]]
) -> None:
    flows = make_flows(topology, on_timeout=policy, **options)
    steps = [*before, (ANY, BackendTimeout("slow"))]
    result = drive(flows.limit("alice"), steps).result
    assert (result.success, result.reason) == (policy == "allow", "timeout")


def test_limit_many_sends_every_guarded_decision_in_one_pipeline() -> None:
    flows = make_flows(protection=True, analytics=True)

    def decision(who: str) -> Any:
        return script(
            "guarded:sliding_window",
            (DENY_LIST, f"rl:{who}"),
            guarded_args(
                clock=-1,
                retention=RETENTION_MS,
                events="rl:events:",
                identifier=f'"{who}"',
                deny_values=(who,),
                override_from="",
                global_override=None,
                algorithm_args=sliding_window_args(
                    now=SERVER_TIME, rate=1, limit=10, window=10_000
                ),
            ),
        )

    results = drive(
        flows.limit_many(["alice", "bob"]),
        [(pipeline(decision("alice"), decision("bob")), [ALLOWED, [-1, 1, NOW]])],
    ).result
    assert [r.success for r in results] == [True, False]
    assert results[1].denied_value == "bob"


def test_a_tally_made_in_the_process_is_sent_as_one_pipeline_per_flush() -> None:
    flows = make_flows("rest", analytics=True)
    drive(flows.limit("alice"), [(sliding(R), ALLOWED)])
    hour = NOW // 3_600_000 * 3_600_000
    keep = hour + 3_600_000 + RETENTION_MS - NOW  # on the limiter's clock, not the server's
    event = '{"identifier":"alice","success":true}'
    expected = pipeline(
        cmd("ZINCRBY", f"rl:events:{hour}", 1, event), cmd("PEXPIRE", f"rl:events:{hour}", keep)
    )
    drive(flows.sync_local(), [(expected, [1, 1])])
    assert not flows.has_pending()
    drive(flows.sync_local(), [])  # nothing left to send


def test_peeking_with_dynamic_limits_guards_the_peek_but_counts_nothing() -> None:
    flows = make_flows(protection=True, dynamic=True, analytics=True)
    # No deny values, no analytics, rate 0.
    peek = sliding(
        S,
        DYNAMIC,
        GLOBAL,
        rate=0,
        **NOT_COUNTED,
        deny_values=(),
        override_from="key",
        global_override=None,
    )
    remaining = drive(flows.get_remaining("alice"), [(peek, [1, 8, 8, NOW + 10_000, 0, NOW])])
    assert remaining.result.remaining == 8
