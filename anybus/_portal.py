"""Using a bus from threads: :class:`BusPortal`, over anyio's blocking portal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar, final

from anyio.from_thread import BlockingPortal

from ._bus import WorkerBus, check_bus
from ._hooks import state
from ._job_calls import request as request_job
from ._jobs import JobResult, Presence
from ._messages import BusMessage

__all__ = ["BusPortal", "open_thread_portal"]

_T = TypeVar("_T")


@final
class BusPortal:
    """A thread-safe handle on a bus, for code that runs outside the event loop.

    Get one with ``async with open_thread_portal(bus) as portal:`` and hand it to threads. Each
    method runs the call in the bus's event loop and blocks the calling thread until it
    returns, raising what the call raised. Calling from the event loop's own thread raises
    :class:`RuntimeError` (it would deadlock); code there awaits the bus directly.

    When the ``async with`` block ends, calls still running are cancelled (their threads get
    :class:`concurrent.futures.CancelledError`) and later calls raise :class:`RuntimeError`.
    """

    def __init__(self, bus: WorkerBus, portal: BlockingPortal) -> None:
        self.bus = bus
        self._portal = portal

    @classmethod
    @asynccontextmanager
    async def _open(cls, bus: WorkerBus) -> AsyncIterator[BusPortal]:
        try:
            async with BlockingPortal() as portal:
                try:
                    yield cls(bus, portal)
                finally:
                    await portal.stop(cancel_remaining=True)
        except BaseExceptionGroup as group:
            # The portal's task group wraps what the block raised: raise that, as it is.
            if len(group.exceptions) == 1:
                error = group.exceptions[0]
                raise error from error.__cause__  # its own cause, not the group
            raise

    def send(self, message: BusMessage) -> None:
        """Send ``message`` on the bus (as :meth:`WorkerBus.send`), from a thread."""
        self._call(partial(self.bus.send, message))

    def request(
        self,
        worker: str,
        payload: Mapping[str, Any] | None = None,
        *,
        job_name: str | None = None,
        timeout: float | None = None,
        source: str | None = None,
        presence: Presence = "wait",
    ) -> JobResult:
        """Run a job and return its result (as :func:`~anybus.request`), from a thread.

        ``timeout`` bounds the wait as in :func:`~anybus.request`; without one, the thread
        blocks until the worker answers or the portal closes.
        """

        async def request() -> JobResult:
            return await request_job(
                self.bus,
                worker,
                payload,
                job_name=job_name,
                timeout=timeout,
                source=source,
                presence=presence,
            )

        return self._call(request)

    def call(self, function: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Run ``await function(*args)`` in the bus's event loop and return its result."""
        return self._call(partial(function, *args))

    def _call(self, function: Callable[[], Awaitable[_T]]) -> _T:
        # Traced, the call runs in this thread's trace context (a span the thread is in).
        wrap = state.from_thread
        run = function if wrap is None else wrap(function)
        result: _T = self._portal.call(run)
        return result

    def __repr__(self) -> str:
        return f"<BusPortal for {self.bus!r}>"


@asynccontextmanager
async def open_thread_portal(bus: WorkerBus) -> AsyncIterator[BusPortal]:
    """Let threads use ``bus``: ``async with open_thread_portal(bus) as portal:``.

    The :class:`~anybus.BusPortal` is thread-safe: a thread calls ``portal.send(message)`` or
    ``portal.request(worker, payload)`` and blocks until the call, run in this event loop,
    returns. Leaving the block cancels calls still running (those threads get
    :class:`concurrent.futures.CancelledError`); calls made after it raise
    :class:`RuntimeError`.

    Raises:
        TypeError: ``bus`` is not a bus.
    """
    check_bus(bus)
    async with BusPortal._open(bus) as portal:
        yield portal
