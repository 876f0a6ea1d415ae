"""A multi-region limiter's work in flight, without a server: counts, handles, analytics sends."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

import pytest

from redkit.ratelimit.inflight import (
    AnalyticsSends,
    AsyncAnalyticsSends,
    PendingCount,
    Work,
    handle_of,
    logged,
)


def test_a_decisions_handle_completes_with_its_last_part_and_before_the_count_drops() -> None:
    count = PendingCount()
    work = Work(count)  # the caller's part
    work.add()  # say, the regions' answers
    assert len(count) == 2
    work.finish()
    assert not work.handle.done()  # the caller still has parts to add
    seen: list[bool] = []
    count_finish = count.finish

    def finish() -> None:  # the handle is complete when the count drops for the last part
        seen.append(work.handle.done())
        count_finish()

    count.finish = finish  # type: ignore[method-assign]
    work.finish()
    assert seen == [True]
    assert work.handle.wait(0)
    assert len(count) == 0
    assert count.wait(0)


def test_a_failed_part_is_logged_and_still_ends(caplog: pytest.LogCaptureFixture) -> None:
    count = PendingCount()
    work = Work(count)
    work.add()
    failed: concurrent.futures.Future[None] = concurrent.futures.Future()
    failed.set_exception(ConnectionError("region gone"))
    with caplog.at_level(logging.WARNING, "redkit.ratelimit"):
        logged("catch-up not written to a region", work, failed)
    assert "catch-up not written to a region: region gone" in caplog.text
    work.finish()
    assert work.handle.done()
    assert count.wait(0)


def test_blocking_analytics_sends_go_one_at_a_time_and_a_burst_joins_the_waiting_one() -> None:
    started, release = threading.Event(), threading.Event()
    sends: list[int] = []

    def send() -> None:
        sends.append(len(sends))
        started.set()
        release.wait(10)

    analytics = AnalyticsSends(send)
    try:
        first = analytics.next()
        assert started.wait(10)  # the first send runs, and holds the thread
        joined = [analytics.next() for _ in range(100)]  # counted meanwhile: one send more
        assert len(set(joined)) == 1
        assert joined[0] is not first
        assert not joined[0].done()  # it starts only after the running one
        release.set()
        joined[0].result(10)
        assert first.done()
        assert sends == [0, 1]
    finally:
        release.set()
        analytics.close()


def test_a_failed_analytics_send_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def send() -> None:
        raise ConnectionError("first region gone")

    analytics = AnalyticsSends(send)
    with caplog.at_level(logging.WARNING, "redkit.ratelimit"):
        assert analytics.next().result(10) is None  # never raised to the waiters
        analytics.close()
    assert caplog.text.count("analytics not written: first region gone") == 1


def test_asyncio_analytics_sends_chain_and_a_burst_joins_the_waiting_one() -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        sends: list[int] = []

        async def send() -> None:
            sends.append(len(sends))
            await release.wait()

        analytics = AsyncAnalyticsSends(send)
        first, new = analytics.next()
        assert new
        await asyncio.sleep(0)  # it starts: what is counted now waits for the next send
        second, new = analytics.next()
        assert new
        assert second is not first
        assert all(analytics.next() == (second, False) for _ in range(100))
        handle = handle_of([first, second])
        await asyncio.sleep(0.01)
        assert sends == [0]  # the second waits for the first
        assert not handle.done()
        release.set()
        await handle
        assert sends == [0, 1]
        assert first.done()
        assert second.done()
        third, new = analytics.next()
        assert new  # nothing waits to start: a new send
        await third

    asyncio.run(scenario())


def test_an_asyncio_send_cancelled_before_it_started_is_not_joined_again() -> None:
    async def scenario() -> None:
        sends: list[int] = []

        async def send() -> None:
            sends.append(len(sends))

        analytics = AsyncAnalyticsSends(send)
        first, new = analytics.next()
        first.cancel()  # before it started (a loop shutting down cancels its tasks)
        await asyncio.sleep(0)
        assert first.cancelled()
        second, new = analytics.next()
        assert new  # a fresh send, not the dead one: later counts still get written
        assert second is not first
        await second
        assert sends == [0]

    asyncio.run(scenario())
