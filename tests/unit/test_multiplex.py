"""The multiplexed connection driven with no socket: bytes in, bytes out, futures resolved.

As h11's tests drive a connection: the transport only records what is written, and the test
feeds the server's bytes to ``data_received`` itself, split wherever it likes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hiredis
import pytest
from redis import exceptions as rx

from redkit.core.errors import BackendTimeout, BackendUnavailable
from redkit.drivers.multiplex import MultiplexedConnection


class RecordingTransport(asyncio.Transport):
    """Keeps every write; ``abort`` marks it closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True


def opened(
    *, deadline: float | None = None, batch_ops: int = 256, batch_bytes: int = 1 << 20
) -> tuple[Any, Any]:
    mux = MultiplexedConnection(deadline=deadline, batch_ops=batch_ops, batch_bytes=batch_bytes)
    transport = RecordingTransport()
    mux.connection_made(transport)
    return mux, transport


def pack(*args: Any) -> bytes:
    packed: bytes = hiredis.pack_command(args)
    return packed


def test_one_write_per_pass_and_replies_in_order() -> None:
    async def main() -> None:
        mux, transport = opened()
        futures = [mux.send(pack("INCR", f"k{n}")) for n in range(5)]
        assert transport.writes == []  # nothing until the pass ends
        await asyncio.sleep(0)
        assert transport.writes == [b"".join(pack("INCR", f"k{n}") for n in range(5))]
        # Replies split at awkward places: inside a reply, and two in one chunk.
        mux.data_received(b":1\r\n:")
        mux.data_received(b"2\r\n:3\r\n$1\r")
        mux.data_received(b"\nx\r\n*2\r\n:1\r\n$-1\r\n")
        assert [f.result() for f in futures] == [1, 2, 3, b"x", [1, None]]

    asyncio.run(main())


def test_an_error_reply_is_the_value_of_its_own_future_only() -> None:
    async def main() -> None:
        mux, _ = opened()
        first, second, third = (mux.send(pack("X")) for _ in range(3))
        mux.data_received(b":1\r\n-WRONGTYPE bad\r\n-NOSCRIPT No matching script\r\n")
        assert first.result() == 1
        assert isinstance(second.result(), rx.ResponseError)
        assert str(second.result()) == "WRONGTYPE bad"
        assert isinstance(third.result(), rx.NoScriptError)  # redis-py's own error table
        assert mux.broken is None

    asyncio.run(main())


def test_a_cancelled_callers_reply_is_read_and_dropped() -> None:
    async def main() -> None:
        mux, _ = opened()
        gone, kept = mux.send(pack("A")), mux.send(pack("B"))
        gone.cancel()
        mux.data_received(b"+for-a\r\n+for-b\r\n")
        assert kept.result() == b"for-b"

    asyncio.run(main())


def test_a_full_batch_is_written_at_once() -> None:
    async def main() -> None:
        mux, transport = opened(batch_ops=3)
        for n in range(7):
            mux.send(pack("PING", str(n)))
        assert len(transport.writes) == 2  # 3 + 3 at once; the 7th at the end of the pass
        await asyncio.sleep(0)
        assert len(transport.writes) == 3

    asyncio.run(main())


def test_a_batch_is_written_once_it_holds_its_bytes() -> None:
    async def main() -> None:
        value = "v" * 1000
        one = len(pack("SET", "k", value))
        mux, transport = opened(batch_bytes=3 * one)  # three of these commands fill a batch
        futures = [mux.send(pack("SET", "k", value)) for _ in range(7)]
        assert [len(w) for w in transport.writes] == [3 * one, 3 * one]  # at once, unsplit
        await asyncio.sleep(0)
        assert [len(w) for w in transport.writes] == [3 * one, 3 * one, one]
        mux.data_received(b"+OK\r\n" * 7)  # the replies still match across the writes
        assert [f.result() for f in futures] == [b"OK"] * 7

    asyncio.run(main())


def test_a_reply_nobody_asked_for_breaks_the_connection() -> None:
    async def main() -> None:
        mux, transport = opened()
        future = mux.send(pack("PING"))
        mux.data_received(b"+PONG\r\n+EXTRA\r\n")
        assert future.result() == b"PONG"
        assert isinstance(mux.broken, BackendUnavailable)
        assert transport.aborted
        late = mux.send(pack("PING"))  # refused at once, typed
        assert isinstance(late.result(), BackendUnavailable)

    asyncio.run(main())


def test_bytes_that_are_not_resp_break_the_connection() -> None:
    async def main() -> None:
        mux, _ = opened()
        future = mux.send(pack("PING"))
        mux.data_received(b"?garbage\r\n")
        assert isinstance(future.result(), BackendUnavailable)

    asyncio.run(main())


def test_the_connection_lost_fails_every_waiting_caller() -> None:
    async def main() -> None:
        mux, _ = opened()
        futures = [mux.send(pack("PING")) for _ in range(3)]
        mux.data_received(b"+PONG\r\n")
        mux.connection_lost(ConnectionResetError("reset by peer"))
        assert futures[0].result() == b"PONG"
        for future in futures[1:]:
            assert isinstance(future.result(), BackendUnavailable)
            assert "reset by peer" in str(future.result())
        # A fresh error each: one instance raised in many tasks would share its traceback.
        assert futures[1].result() is not futures[2].result()

    asyncio.run(main())


def test_a_write_unanswered_by_its_deadline_drops_the_connection() -> None:
    async def main() -> None:
        mux, transport = opened(deadline=0.05)
        answered = mux.send(pack("PING"))
        await asyncio.sleep(0)
        mux.data_received(b"+PONG\r\n")
        waiting = mux.send(pack("PING"))
        await asyncio.sleep(0.2)
        assert answered.result() == b"PONG"
        assert isinstance(waiting.result(), BackendTimeout)
        assert transport.aborted

    asyncio.run(main())


def test_writes_answered_in_time_keep_the_connection() -> None:
    async def main() -> None:
        mux, transport = opened(deadline=0.05)
        for _ in range(5):  # more writes than one deadline: each answered before its own
            future = mux.send(pack("PING"))
            await asyncio.sleep(0.02)
            mux.data_received(b"+PONG\r\n")
            assert future.result() == b"PONG"
        await asyncio.sleep(0.1)
        assert mux.broken is None
        assert not transport.aborted

    asyncio.run(main())


def test_close_fails_the_waiting_callers() -> None:
    async def main() -> None:
        mux, transport = opened()
        future = mux.send(pack("PING"))
        mux.close()
        assert isinstance(future.result(), BackendUnavailable)
        assert transport.aborted

    asyncio.run(main())


@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_replies_fed_a_byte_at_a_time_still_match(chunk: int) -> None:
    async def main() -> None:
        mux, _ = opened()
        futures = mux.send_all([pack("GET", f"k{n}") for n in range(4)])
        stream = b"$3\r\none\r\n$-1\r\n*1\r\n$3\r\ntwo\r\n:4\r\n"
        for start in range(0, len(stream), chunk):
            mux.data_received(stream[start : start + chunk])
        assert [f.result() for f in futures] == [b"one", None, [b"two"], 4]

    asyncio.run(main())
