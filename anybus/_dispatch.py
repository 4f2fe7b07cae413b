"""The dispatch machinery: one subscriber's inbox and the workers that drain it.

Each subscription has two lanes, each an anyio memory object stream: the *system* lane and the
*data* lane. Two worker tasks drain them, each handling its lane's messages one at a time, so a
system message is handled even while a data handler is busy. The data worker checks, before it
takes each data message, whether a system message is waiting to be started; if so it waits
until the system worker has picked it up. That is the whole priority rule: a system message
overtakes every data message that has not started.

The data worker starts with the first data message, the system worker with the first system
message (most subscriptions of a short life never get one), so a subscription costs one task.
Both run in the bus's host task group, a task each (see :mod:`anybus._lifecycle`).

Workers take messages only with ``receive_nowait()`` and hand them straight to the handler, so a
cancellation can never fall between taking a message and handling it. When a lane is empty the
worker parks on an event that the next delivery sets. Draining what is buffered without a
scheduling round trip per message is what makes the bus fast; every ``YIELD_INTERVAL`` messages
a worker yields anyway, so a subscriber with trivial handlers cannot starve the others.

The inbox itself (the lanes and their counters) is :mod:`anybus._inbox`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from contextvars import Context, ContextVar
from functools import partial
from typing import Any

from anyio import (
    ClosedResourceError,
    EndOfStream,
    Event,
    TaskHandle,
    WouldBlock,
)
from anyio.abc import TaskGroup
from anyio.lowlevel import checkpoint

from ._hooks import Handler, state
from ._inbox import ErrorHook, Hub, Inbox
from ._messages import BusMessage

__all__ = ["ErrorHook", "Hub", "Subscription", "handling"]

logger = logging.getLogger("anybus.dispatch")

#: A worker yields to the scheduler after handling this many messages in a row.
YIELD_INTERVAL = 128
YIELD_MASK = YIELD_INTERVAL - 1

#: In every worker task (and the tasks its handlers start): the bus whose handler runs there.
#: A send into that same bus is admitted over a full bound rather than deadlocking.
handling: ContextVar[Any] = ContextVar("anybus_handling", default=None)


class _StartDataWorker:
    """Stands in a subscription's ``data_waiter`` until its data worker has started: the
    delivery that wakes it starts the worker, so a subscription that waits for its first
    message costs no task switch (and the send path no extra check)."""

    __slots__ = ("sub",)

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub

    def set(self) -> None:
        sub = self.sub
        task_group = sub.task_group
        if task_group is not None and not sub.closed:
            sub._start(task_group, sub._data_worker, "data worker")


class Subscription(Inbox):
    """One subscriber's inbox on a bus, and the workers that drain it."""

    __slots__ = ()

    # --- the workers ----------------------------------------------------------------------

    def spawn(self, task_group: TaskGroup, context: Context) -> None:
        """Start the workers in the bus's ``task_group`` (the system worker only once a
        system message is queued), in ``context`` (the one the bus runs in), whichever task
        happens to start them: a handler never sees the context variables of the sender whose
        message started its worker."""
        if self.passive or self.closed:
            return
        self.task_group = task_group
        self.context = context
        self.stopping = False
        self.handles = [h for h in self.handles if h.status is TaskHandle.Status.PENDING]
        if self.data_backlog():
            self._start(task_group, self._data_worker, "data worker")
        else:
            self.data_waiter = _StartDataWorker(self)
        if self.system_queued:
            self.start_system_worker()
        if self.runs_in_bus:
            self._start(task_group, self._run_in_bus, "run_in_bus")

    def start_system_worker(self) -> None:
        """Start the system worker if dispatching and not started yet (fan-out calls it)."""
        task_group = self.task_group
        if task_group is not None and not self.system_running and not self.closed:
            self.system_running = True
            self._start(task_group, self._system_worker, "system worker")

    def _start(
        self,
        task_group: TaskGroup,
        worker: Callable[[], Coroutine[Any, Any, None]],
        what: str,
    ) -> None:
        self.workers += 1
        name = f"anybus {what} {self.name!r}"
        context = self.context
        if context is None:
            handle = task_group.start_soon(worker, name=name)
        else:  # the new task copies the context it is started from
            handle = context.run(partial(task_group.start_soon, worker, name=name))
        self.handles.append(handle)

    def _parked(self) -> bool:
        """Whether every worker waits on an empty lane (none is handling a message)."""
        return (
            self.data_waiter is not None
            and (not self.system_running or self.system_waiter is not None)
            and not self.runs_in_bus
        )

    def stop(self) -> None:
        """Make the workers end; the lanes stay as they are. See :meth:`wait_ended`.

        Workers parked on empty lanes are woken to find the subscription stopping and return
        (no cancellation to deliver: the cheap way, and the common one); any other is
        cancelled, its handler with it.
        """
        self.task_group = None
        self.stopping = True
        parked = self._parked()
        if isinstance(self.data_waiter, _StartDataWorker):
            self.data_waiter = None  # its data worker never started
        if parked:
            for waiter in (self.data_waiter, self.system_waiter):
                if waiter is not None:
                    waiter.set()
        else:
            for handle in self.handles:
                handle.cancel()

    def end(self) -> None:
        """Make the workers end for good and close the lanes. See :meth:`wait_ended`."""
        self.stop()
        self.close()

    async def wait_ended(self) -> None:
        """Wait until every worker task started so far has ended (not those that a later
        ``spawn()`` starts meanwhile)."""
        for handle in list(self.handles):
            await handle.wait()
            if handle in self.handles:
                self.handles.remove(handle)

    async def _run_in_bus(self) -> None:
        # Not a handler: no escape from the bounds, even when a handler started it.
        handling.set(None)
        try:
            await self.subscriber.run_in_bus(self.bus)
        except Exception as exc:
            logger.error("run_in_bus() of subscriber %r failed", self.name, exc_info=exc)
        finally:
            self.workers -= 1

    def _handler(self) -> Handler:
        """The subscriber's handler, wrapped by the installed instrumentation if there is one
        (asked when a worker starts, and when it wakes to a new install: never per message)."""
        handler: Handler = self.subscriber.on_bus_message
        wrap = state.handler_wrapper
        return handler if wrap is None else wrap(self, handler)

    async def _system_worker(self) -> None:
        handling.set(self.bus)
        assert self.system_receive is not None  # it starts with the first system message
        receive_nowait = self.system_receive.receive_nowait
        generation = state.generation
        handle = self._handler()
        message: BusMessage | None = None
        try:
            while not self.stopping:
                try:
                    message = receive_nowait()
                except WouldBlock:
                    waiter = self.system_waiter = Event()
                    self.hub.notify_idle()
                    await waiter.wait()
                    if state.generation != generation:  # instrumented, or no longer
                        generation = state.generation
                        handle = self._handler()
                    continue
                except (EndOfStream, ClosedResourceError):
                    return
                self.system_waiter = None
                self.system_queued -= 1
                if not self.system_queued and self.gate_waiter is not None:
                    self.gate_waiter.set()
                accepts = self.accepts
                try:
                    if accepts is None or accepts(message):
                        self.system_delivered += 1
                        await handle(message)
                except Exception as exc:
                    await self._failed(message, exc)
                message = None
        finally:
            if message is not None:  # its handler was cancelled
                self.system_abandoned += 1
                self.epoch += 1
            self.system_waiter = None
            self.system_running = False
            self.workers -= 1
            self.hub.notify_idle()

    async def _data_worker(self) -> None:
        handling.set(self.bus)
        receive_nowait = self.data_receive.receive_nowait
        accepts = self.accepts
        generation = state.generation
        handle = self._handler()
        bounded = self.bounded
        if not bounded:
            self._sample_high_water()
        handled = 0
        message: BusMessage | None = None
        try:
            # A worker that starts (or resumes) after stop() takes nothing.
            while not self.stopping:
                if self.system_queued:
                    # A system message is waiting: let it start before any further data.
                    waiter = self.gate_waiter = Event()
                    try:
                        await waiter.wait()
                    finally:
                        if self.gate_waiter is waiter:
                            self.gate_waiter = None
                    continue
                try:
                    message = receive_nowait()
                except WouldBlock:
                    handled = 0
                    waiter = self.data_waiter = Event()
                    self.hub.notify_idle()
                    try:
                        await waiter.wait()
                    finally:
                        if self.data_waiter is waiter:
                            self.data_waiter = None
                    if not bounded:
                        self._sample_high_water()
                    if state.generation != generation:  # instrumented, or no longer
                        generation = state.generation
                        handle = self._handler()
                    continue
                except (EndOfStream, ClosedResourceError):
                    return
                if bounded:
                    queued = self.data_queued - 1
                    self.data_queued = queued
                    if queued < self.room_mark:
                        self._signal_room()
                # The common case, inlined: no filter, a handler that returns normally.
                try:
                    if accepts is None or accepts(message):
                        await handle(message)
                    else:
                        self.data_filtered += 1
                except Exception as exc:
                    await self._failed(message, exc)
                message = None
                handled += 1
                if not handled & YIELD_MASK:
                    await checkpoint()
                    if not bounded:
                        self._sample_high_water()
        finally:
            if message is not None:  # its handler was cancelled
                self.data_abandoned += 1
                self.epoch += 1
            self.workers -= 1
            self.hub.notify_idle()  # a waiter may be waiting for the handler that just ended

    async def _failed(self, message: BusMessage, exc: Exception) -> None:
        self.failures += 1
        self.last_failure = f"{type(exc).__name__}: {exc} (on {message.name})"
        logger.error("subscriber %r failed on %s", self.name, message, exc_info=exc)
        if self.on_error is not None:
            try:
                await self.on_error(self.name, message, exc)
            except Exception as hook_exc:
                logger.error("the handler-error hook failed", exc_info=hook_exc)
