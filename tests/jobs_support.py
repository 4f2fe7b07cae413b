"""What the job tests share: a running bus with a job worker, and a handler that blocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import Event, get_cancelled_exc_class

from anybus import JobContext, JobWorker, MemoryBus, WorkerBus


@asynccontextmanager
async def worker_bus(handler: Any) -> AsyncIterator[WorkerBus]:
    """A running memory bus with a job worker ``w`` whose default handler is ``handler``."""
    async with MemoryBus() as bus:
        await bus.subscribe(JobWorker("w", handlers={None: handler}))
        yield bus


class Blocker:
    """A job handler that reports it started, then waits until cancelled or released."""

    def __init__(self) -> None:
        self.started = Event()
        self.cancelled = Event()
        self.release = Event()

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        self.started.set()
        try:
            await self.release.wait()
        except get_cancelled_exc_class():
            self.cancelled.set()
            raise
        return {"released": True}
