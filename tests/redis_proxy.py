"""A TCP proxy in front of a Redis server that a test can partition: while it is paused, it
forwards nothing either way, and what was sent meanwhile arrives when it resumes — late, as
after a network partition (the connections stay open, as TCP keeps them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketStream, TaskGroup

from .redis_support import free_port


class PausableProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_port``; :meth:`pause` and :meth:`resume`."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._flowing = anyio.Event()
        self._flowing.set()
        self.paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def pause(self) -> None:
        """Hold everything sent either way from now on (a partition)."""
        self.paused = True
        self._flowing = anyio.Event()

    def resume(self) -> None:
        """Deliver what was held, and forward again."""
        self.paused = False
        self._flowing.set()

    async def _pump(self, source: SocketStream, sink: SocketStream) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await source.receive()
                await self._flowing.wait()  # taken during a partition: held until it heals
                await sink.send(data)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            await sink.aclose()

    async def _handle(self, client: SocketStream) -> None:
        async with client:
            try:
                server = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
            except OSError:
                return
            async with server, anyio.create_task_group() as group:
                group.start_soon(self._pump, client, server)
                group.start_soon(self._pump, server, client)

    async def serve(self, task_group: TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=self.port)

        async def accept() -> None:
            async with listener:
                await listener.serve(self._handle)

        task_group.start_soon(accept)


@asynccontextmanager
async def pausable_proxy(upstream_port: int) -> AsyncIterator[PausableProxy]:
    """A running :class:`PausableProxy` to ``upstream_port``, closed on exit."""
    proxy = PausableProxy(upstream_port)
    async with anyio.create_task_group() as task_group:
        await proxy.serve(task_group)
        try:
            yield proxy
        finally:
            proxy.resume()
            task_group.cancel_scope.cancel(reason="the test is done with its proxy")
