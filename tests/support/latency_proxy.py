"""A TCP proxy on loopback that delays every chunk by a set time, in each direction.

It stands for a far region: ``with LatencyProxy(port, delay_ms=100) as proxy:`` listens on
``proxy.port`` (127.0.0.1) and forwards to ``127.0.0.1:port``; each chunk read on one side is
written to the other ``delay_ms`` after it was read, order kept, so the delay is added to the
round trip twice (once each way) without limiting the throughput. The proxy runs its own event
loop in a thread of its own; leaving the block closes the listener and every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

_CHUNK = 65536


class LatencyProxy:
    """Forward ``127.0.0.1:<port>`` to ``host:target_port``, ``delay_ms`` later each way."""

    def __init__(self, target_port: int, delay_ms: float, host: str = "127.0.0.1") -> None:
        if delay_ms < 0:
            raise ValueError(f"delay_ms must be >= 0, got {delay_ms!r}")
        self.target = (host, target_port)
        self.delay = delay_ms / 1000
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """A Redis URL of the proxy."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> LatencyProxy:
        """Listen (on a free port) and serve until :meth:`stop`."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self.port = future.result(10)
        return self

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            up_reader, upstream = await asyncio.open_connection(*self.target)
            await asyncio.gather(self._pump(reader, upstream), self._pump(up_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._links.discard(task)
            for side in (writer, upstream):
                if side is not None:
                    side.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await side.wait_closed()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``delay`` after it was read, in order."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await chunks.get()
                if not data:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()  # the other side closed: pass it on, after the delayed chunks

        delivery = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(_CHUNK)
                chunks.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await delivery
        finally:
            delivery.cancel()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await delivery

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()  # after the links: 3.12 waits for them

    def stop(self) -> None:
        """Close the listener and every link, then end the loop and its thread."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
