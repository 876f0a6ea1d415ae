"""The cached fixed window's local counts, step by step (no server): the races that a process
with several threads or tasks can run into, played out in a fixed order."""

from __future__ import annotations

from redkit import CachedFixedWindow
from redkit.ratelimit.local import WindowCounts
from redkit.ratelimit.result import RatelimitResult

WINDOW = 60_000
T0 = 1_700_000_000_000  # a window starts here
RESET = T0 + WINDOW


def answer(used: int, reset: int = RESET, limit: int = 3) -> RatelimitResult:
    """What Redis answers to an admitted request that brought the window to ``used``."""
    return RatelimitResult(True, limit, limit - used, reset)


def test_a_request_on_its_way_to_redis_is_counted_before_redis_answers() -> None:
    local = WindowCounts(CachedFixedWindow(3, "1 m"))
    assert local.count("b", 1, 0) is None  # B asks Redis
    assert local.count("a", 1, 0) is None  # so does A, for another identifier
    local.seed("b", answer(1), 1, T0, 0)
    local.answered("b", 1)
    assert local.count("b", 1, 1).success  # C1, locally
    assert local.count("b", 1, 1).success  # C2, locally: the limit of 3 is reached
    assert not local.count("b", 1, 1).success


def test_locally_admitted_requests_leave_room_for_those_on_their_way() -> None:
    # B seeds the window; meanwhile A missed it and asked Redis; C's local admissions must
    # leave A's place free, since Redis does not know about C's yet and will admit A.
    local = WindowCounts(CachedFixedWindow(3, "1 m"))
    assert local.count("id", 1, 0) is None  # B asks
    assert local.count("id", 1, 0) is None  # A asks, before B's answer is in
    local.seed("id", answer(1), 1, T0, 0)  # B admitted: 1 used
    local.answered("id", 1)
    assert local.count("id", 1, 1).success  # C1: 2 used, and A's 1 on its way
    assert not local.count("id", 1, 1).success  # C2 would make 4 with A
    local.seed("id", answer(2), 1, T0, 0)  # Redis admits A (it never saw C1)
    local.answered("id", 1)
    assert not local.count("id", 1, 2).success  # 3 admitted in this process: the limit


def test_a_late_answer_about_an_ended_window_changes_nothing() -> None:
    local = WindowCounts(CachedFixedWindow(3, "1 m"))
    assert local.count("id", 1, 0) is None
    local.seed("id", answer(1, reset=RESET + WINDOW), 1, T0 + WINDOW, 0)  # the next window
    local.answered("id", 1)
    assert local.count("id", 1, 1).success  # 2 used in the new window
    local.seed("id", answer(3), 1, T0, 0)  # a slow answer from the window before
    assert local.count("id", 1, 2).success  # the new window's count was kept: 3 used
    assert not local.count("id", 1, 2).success


def test_pending_counts_are_coalesced_and_put_back_after_a_failure() -> None:
    local = WindowCounts(CachedFixedWindow(10, "1 m"))
    assert local.count("id", 1, 0) is None
    local.seed("id", answer(1, limit=10), 1, T0, 0)
    local.answered("id", 1)
    for _ in range(4):
        assert local.count("id", 1, 1).success
    assert local.count("id", -1, 1).success  # a refund, counted too
    pending = local.take_pending()
    assert pending == [(f"id:{T0 // WINDOW}", 3)]
    assert not local.has_pending()
    local.restore_pending(pending)
    assert local.take_pending() == pending
    local.fold(f"id:{T0 // WINDOW}", 9)  # other processes admitted more meanwhile
    assert local.count("id", 1, 1).success
    assert not local.count("id", 1, 1).success
    local.forget("id")
    assert local.count("id", 1, 1) is None  # after a reset, Redis is asked again
