"""The dispatch machinery: one subscriber's inbox and the workers that drain it.

Each subscription has two lanes, each an anyio memory object stream: the *system* lane and the
*data* lane. Two worker tasks drain them, each handling its lane's messages one at a time, so a
system message is handled even while a data handler is busy. The data worker checks, before it
takes each data message, whether a system message is waiting to be started; if so it waits
until the system worker has picked it up. That is the whole priority rule: a system message
overtakes every data message that has not started.

Workers take messages only with ``receive_nowait()`` and hand them straight to the handler, so a
cancellation can never fall between taking a message and handling it. When a lane is empty the
worker parks on an event that the next delivery sets. Draining what is buffered without a
scheduling round trip per message is what makes the bus fast; every ``YIELD_INTERVAL`` messages
a worker yields anyway, so a subscriber with trivial handlers cannot starve the others.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Iterable
from typing import Any

from anyio import (
    CancelScope,
    ClosedResourceError,
    EndOfStream,
    Event,
    WouldBlock,
    create_memory_object_stream,
    create_task_group,
)
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._messages import BusMessage, BusSystemMessage
from ._subscriber import BusSubscriber

logger = logging.getLogger("anybus.dispatch")

#: A worker yields to the scheduler after handling this many messages in a row.
YIELD_INTERVAL = 64


class Subscription:
    """One subscriber's state on a bus: its two lanes and, while dispatching, its workers."""

    __slots__ = (
        "__weakref__",
        "_close_lanes",
        "accepts",
        "data_receive",
        "data_send",
        "data_waiter",
        "done",
        "gate_waiter",
        "name",
        "push_data",
        "push_system",
        "scope",
        "subscriber",
        "system_queued",
        "system_receive",
        "system_send",
        "system_waiter",
    )

    def __init__(self, subscriber: BusSubscriber, name: str) -> None:
        self.subscriber = subscriber
        self.name = name
        # Skip the filter call entirely when the subscriber keeps the default (accept all).
        overridden = type(subscriber).accepts_bus_message is not BusSubscriber.accepts_bus_message
        self.accepts = subscriber.accepts_bus_message if overridden else None
        self.system_send, self.system_receive = create_memory_object_stream[BusMessage](math.inf)
        self.data_send, self.data_receive = create_memory_object_stream[BusMessage](math.inf)
        self.push_system = self.system_send.send_nowait
        self.push_data = self.data_send.send_nowait
        # The lanes are private to the subscription: close them when it is collected, so a
        # bus dropped with subscribers attached does not warn about unclosed streams. (A
        # weakref callback, unlike __del__, runs before the garbage collector finalizes the
        # streams of a reference cycle.)
        self._close_lanes = weakref.finalize(
            self,
            _close_all,
            (self.system_send, self.system_receive, self.data_send, self.data_receive),
        )
        #: System messages delivered to the lane and not yet taken by the system worker.
        self.system_queued = 0
        self.system_waiter: Event | None = None  # set by the next system delivery
        self.data_waiter: Event | None = None  # set by the next data delivery
        self.gate_waiter: Event | None = None  # set when system_queued drops to zero
        self.scope: CancelScope | None = None  # the workers' scope, while dispatching
        self.done: Event | None = None  # set when the workers have ended

    def queued(self) -> tuple[int, int]:
        """Return the number of (system, data) messages waiting in the lanes."""
        return (
            self.system_receive.statistics().current_buffer_used,
            self.data_receive.statistics().current_buffer_used,
        )

    def close(self) -> None:
        """Close both lanes, discarding whatever they still hold."""
        self._close_lanes()

    async def serve(self, scope: CancelScope, done: Event) -> None:
        """Run both workers inside ``scope`` until it is cancelled; then set ``done``."""
        try:
            with scope:
                async with create_task_group() as task_group:
                    task_group.start_soon(
                        self._system_worker, name=f"anybus system worker {self.name!r}"
                    )
                    await self._data_worker()
        finally:
            done.set()

    async def _system_worker(self) -> None:
        receive_nowait = self.system_receive.receive_nowait
        while True:
            try:
                message = receive_nowait()
            except WouldBlock:
                waiter = self.system_waiter = Event()
                try:
                    await waiter.wait()
                finally:
                    if self.system_waiter is waiter:
                        self.system_waiter = None
                continue
            except (EndOfStream, ClosedResourceError):
                return
            self.system_queued -= 1
            if not self.system_queued and self.gate_waiter is not None:
                self.gate_waiter.set()
            await self._handle(message)

    async def _data_worker(self) -> None:
        receive_nowait = self.data_receive.receive_nowait
        accepts = self.accepts
        handle = self.subscriber.on_bus_message
        handled = 0
        while True:
            if self.system_queued:
                # A system message is waiting: let it start before any further data message.
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
                try:
                    await waiter.wait()
                finally:
                    if self.data_waiter is waiter:
                        self.data_waiter = None
                continue
            except (EndOfStream, ClosedResourceError):
                return
            # The common case, inlined: no filter, a handler that returns normally.
            try:
                if accepts is None or accepts(message):
                    await handle(message)
            except Exception as exc:
                self._log_failure(message, exc)
            handled += 1
            if handled == YIELD_INTERVAL:
                handled = 0
                await checkpoint()

    async def _handle(self, message: BusMessage) -> None:
        accepts = self.accepts
        try:
            if accepts is None or accepts(message):
                await self.subscriber.on_bus_message(message)
        except Exception as exc:
            self._log_failure(message, exc)

    def _log_failure(self, message: BusMessage, exc: Exception) -> None:
        logger.error("subscriber %r failed on %s", self.name, message, exc_info=exc)


def _close_all(
    streams: Iterable[MemoryObjectSendStream[Any] | MemoryObjectReceiveStream[Any]],
) -> None:
    for stream in streams:
        stream.close()


def fan_out(targets: Iterable[Subscription], message: BusMessage) -> None:
    """Put ``message`` in the matching lane of every subscription in ``targets``.

    Never blocks: the lanes are unbounded. Wakes each worker parked on an empty lane.
    """
    if isinstance(message, BusSystemMessage):
        for sub in targets:
            sub.system_queued += 1
            sub.push_system(message)
            waiter = sub.system_waiter
            if waiter is not None:
                sub.system_waiter = None
                waiter.set()
    else:
        for sub in targets:
            sub.push_data(message)
            waiter = sub.data_waiter
            if waiter is not None:
                sub.data_waiter = None
                waiter.set()
