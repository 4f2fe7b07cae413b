"""One subscriber's inbox: its two lanes (anyio memory object streams) and their counters.

See :mod:`anybus._dispatch` for the workers that drain it. The bound on the data lane is kept
by the counters here (the streams themselves are unbounded), so that sends from a handler into
its own bus can be admitted over the bound instead of deadlocking, and so that the common path
is one comparison.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Awaitable, Callable
from contextvars import Context
from typing import Any, Protocol

from anyio import (
    ClosedResourceError,
    EndOfStream,
    Event,
    TaskHandle,
    WouldBlock,
    create_memory_object_stream,
)
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._messages import BusMessage
from ._statistics import OverflowPolicy, SubscriptionStatistics
from ._subscriber import BusSubscriber

__all__ = ["ErrorHook", "Hub", "Inbox"]

logger = logging.getLogger("anybus.dispatch")

#: ``async def hook(subscriber_name, message, exception)``, awaited after a handler failed.
ErrorHook = Callable[[str, BusMessage, Exception], Awaitable[None]]


class Hub:
    """State a bus shares with its subscriptions."""

    __slots__ = ("data_fanned", "idle_event")

    def __init__(self) -> None:
        #: Data messages fanned out so far: every unbounded inbox got each of them, so an
        #: unbounded subscription derives its counts from this instead of counting each one.
        self.data_fanned = 0
        #: Set (and cleared) when a worker goes idle, for wait_idle().
        self.idle_event: Event | None = None

    def notify_idle(self) -> None:
        event = self.idle_event
        if event is not None:
            self.idle_event = None
            event.set()


class Waker(Protocol):
    """What a delivery sets to wake the task waiting on a lane (an :class:`anyio.Event`)."""

    def set(self) -> None: ...


class Inbox:
    """One subscriber's state on a bus: its two lanes, its counters, its workers' state."""

    __slots__ = (
        "__weakref__",
        "_close_lanes",
        "_lanes",
        "accepts",
        "bounded",
        "bus",
        "busy",
        "closed",
        "context",
        "data_abandoned",
        "data_base",
        "data_filtered",
        "data_lost",
        "data_pushed",
        "data_queued",
        "data_receive",
        "data_removed",
        "data_send",
        "data_waiter",
        "dropped",
        "epoch",
        "failures",
        "gate_waiter",
        "handles",
        "high_water",
        "hub",
        "last_failure",
        "max_buffer",
        "name",
        "on_error",
        "overflow",
        "passive",
        "push_data",
        "refused",
        "room_mark",
        "room_waiter",
        "runs_in_bus",
        "stopping",
        "subscriber",
        "system_abandoned",
        "system_delivered",
        "system_in",
        "system_lost",
        "system_queued",
        "system_receive",
        "system_running",
        "system_send",
        "system_waiter",
        "targets",
        "task_group",
        "threshold",
        "undelivered",
        "workers",
    )

    def __init__(
        self,
        subscriber: BusSubscriber,
        name: str,
        *,
        types: tuple[type[BusMessage], ...] | None,
        targets: frozenset[str] | None = None,
        max_buffer: int | None,
        overflow: OverflowPolicy,
        hub: Hub,
        on_error: ErrorHook | None,
        passive: bool = False,
        bus: Any = None,
    ) -> None:
        self.subscriber = subscriber
        self.bus = bus
        kind = type(subscriber)
        self.runs_in_bus = kind.run_in_bus is not BusSubscriber.run_in_bus
        self.busy = subscriber.is_busy if kind.is_busy is not BusSubscriber.is_busy else None
        self.name = name
        self.accepts = _make_filter(subscriber, types)
        #: Message targets this subscription accepts (``None``: all), applied at fan-out;
        #: a message without a target reaches every subscription.
        self.targets = targets
        self.data_send, self.data_receive = create_memory_object_stream[BusMessage](math.inf)
        # The system lane is made by the first system message (a lane costs about 9 us).
        self.system_send: MemoryObjectSendStream[BusMessage] | None = None
        self.system_receive: MemoryObjectReceiveStream[BusMessage] | None = None
        self.push_data = self.data_send.send_nowait
        # The lanes are private to the subscription: close them when it is collected, so a
        # bus dropped with subscribers attached does not warn about unclosed streams. (A
        # weakref callback, unlike __del__, runs before the garbage collector finalizes the
        # streams of a reference cycle.)
        self._lanes: list[Any] = [self.data_send, self.data_receive]
        self._close_lanes = weakref.finalize(self, _close_all, self._lanes)
        self.passive = passive  # a listener: no workers, the user's task receives
        self.closed = False
        self.hub = hub
        self.data_base = hub.data_fanned  # data messages fanned out before this subscription
        self.on_error = on_error
        self.max_buffer: float = math.inf if max_buffer is None else max_buffer
        self.overflow = overflow
        # Only a bounded inbox counts its data messages as they come and go (the bound needs
        # it); an unbounded one reads its length off the stream when asked, which keeps the
        # common path free of bookkeeping.
        self.bounded = max_buffer is not None
        self.system_queued = 0  # in the system lane, not yet taken
        self.system_in = 0  # ever put in the system lane
        self.system_running = False  # whether the system worker runs now
        self.data_queued = 0  # in the data lane, not yet taken (bounded inboxes only)
        self.high_water = 0
        # fan_out takes the slow path (make_room) once data_queued reaches this: the bound,
        # or the high-water mark when that is lower.
        self.threshold: float = 0
        # Counted only for bounded inboxes; unbounded ones derive it from hub.data_fanned.
        self.data_pushed = 0
        self.data_filtered = 0  # taken, then rejected by the filter
        self.data_removed = 0  # taken out without being handled: dropped oldest, undelivered
        self.data_lost = self.system_lost = 0  # taken out undelivered (a drain's deadline)
        # Messages taken and never handled: their handler was cancelled (by stop() or an
        # unsubscribe). Each such loss, and each drain that takes messages out undelivered,
        # starts a new epoch: a mark of an earlier epoch can no longer be answered exactly.
        self.data_abandoned = self.system_abandoned = 0
        self.epoch = 0
        self.system_delivered = 0
        self.dropped = 0
        self.refused = 0
        self.undelivered = 0
        self.failures = 0
        self.last_failure: str | None = None
        self.system_waiter: Event | None = None  # set by the next system delivery
        self.data_waiter: Waker | None = None  # set by the next data delivery
        self.gate_waiter: Event | None = None  # set when system_queued drops to zero
        self.room_waiter: Event | None = None  # set when the data lane drops below the bound
        self.room_mark: float = -1  # max_buffer while a sender waits for room, else -1
        self.task_group: TaskGroup | None = None  # the dispatch task group, while dispatching
        self.handles: list[TaskHandle[None]] = []  # the worker tasks started, until ended
        self.workers = 0  # worker tasks running now
        self.stopping = False  # the workers are to end (stop() or unsubscribe())
        self.context: Context | None = None  # what the workers start in (see spawn())

    # --- bookkeeping ----------------------------------------------------------------------

    def make_room(self, message: BusMessage, refused: list[Inbox]) -> bool:
        """The slow path of a data delivery: apply the overflow policy, move the high-water
        mark. Returns whether ``message`` may join the lane."""
        if self.data_queued >= self.max_buffer:
            policy = self.overflow
            if policy is OverflowPolicy.ERROR:
                self.refused += 1
                refused.append(self)
                return False
            if policy is not OverflowPolicy.BLOCK:
                self.dropped += 1
                level = logging.WARNING if self.dropped == 1 else logging.DEBUG
                if policy is OverflowPolicy.DROP_NEWEST:
                    logger.log(level, "inbox of %r full: dropped %s (newest)", self.name, message)
                    return False
                oldest = self.data_receive.receive_nowait()
                self.data_queued -= 1
                self.data_removed += 1
                logger.log(level, "inbox of %r full: dropped %s (oldest)", self.name, oldest)
            # Under BLOCK only a send from a handler of this bus gets here (others waited for
            # room first): it is admitted over the bound, so workers answering each other
            # cannot deadlock.
        queued = self.data_queued + 1
        if queued > self.high_water:
            self.high_water = queued
        self.threshold = min(self.max_buffer, self.high_water)
        return True

    def wants(self, message: BusMessage) -> bool:
        """Whether the fan-out puts ``message`` in this inbox (the ``targets`` filter)."""
        targets = self.targets
        return targets is None or message.target is None or message.target in targets

    async def wait_for_room(self) -> None:
        """Wait until the data lane is below its bound (or the subscription is closed)."""
        waiter = self.room_waiter
        if waiter is None:
            waiter = self.room_waiter = Event()
            self.room_mark = self.max_buffer
        await waiter.wait()

    def _signal_room(self) -> None:
        waiter = self.room_waiter
        self.room_waiter = None
        self.room_mark = -1
        if waiter is not None:
            waiter.set()

    def data_in(self) -> int:
        """Data messages ever put in the data lane."""
        return self.data_pushed if self.bounded else self.hub.data_fanned - self.data_base

    def delivered(self) -> int:
        """Messages handed to the subscriber so far (its handler started, or it received)."""
        taken = self.data_in() - self.data_backlog() - self.data_removed
        return self.system_delivered + taken - self.data_filtered

    def settled(self) -> tuple[int, int]:
        """How many (system, data) messages this subscription is done with: handled to the
        end, refused by a filter, or dropped by the overflow policy — not counting those it
        lost (taken out undelivered, or whose handler was cancelled).

        A worker that is not parked may be in the middle of its last message: that one is not
        counted (conservatively).
        """
        system_done = self.system_in - self.system_queued - self.system_lost
        system_done -= self.system_abandoned
        data_done = self.data_in() - self.data_backlog() - self.data_lost - self.data_abandoned
        if self.workers and not self.passive:
            if self.system_running and self.system_waiter is None:
                system_done -= 1
            if self.data_waiter is None and self.gate_waiter is None:
                data_done -= 1
        return max(0, system_done), max(0, data_done)

    def mark(self) -> tuple[int, int, int]:
        """Where this subscription stands, for a delivery mark: (system, data, epoch), in the
        terms of :meth:`settled`."""
        return (
            self.system_in - self.system_lost - self.system_abandoned,
            self.data_in() - self.data_lost - self.data_abandoned,
            self.epoch,
        )

    def data_backlog(self) -> int:
        """The number of data messages waiting in the inbox."""
        if self.bounded:
            return self.data_queued
        return self.data_receive.statistics().current_buffer_used

    def _sample_high_water(self) -> None:
        # Unbounded inboxes sample their length when their worker resumes: that is when it
        # peaks, as only the worker takes messages out.
        backlog = self.data_receive.statistics().current_buffer_used
        if backlog > self.high_water:
            self.high_water = backlog

    def is_idle(self, dispatching: bool) -> bool:
        """Whether nothing is queued and, if dispatching, no handler is running."""
        # A worker that is not parked on its empty lane is handling a message.
        busy_worker = self.data_waiter is None or (
            self.system_running and self.system_waiter is None
        )
        if dispatching and not self.passive and busy_worker:
            return False
        if self.system_queued or self.data_backlog():
            return False
        return self.busy is None or not self.busy()  # work of its own, as a JobWorker's jobs

    def take_all(self) -> list[BusMessage]:
        """Take every queued message out of the lanes (system first), without handling it."""
        taken: list[BusMessage] = []
        for receive in filter(None, (self.system_receive, self.data_receive)):
            while True:
                try:
                    taken.append(receive.receive_nowait())
                except (WouldBlock, EndOfStream, ClosedResourceError):
                    break
        data = len(taken) - self.system_queued
        self.data_removed += data
        self.data_lost += data
        self.system_lost += self.system_queued
        if taken:
            self.epoch += 1
        self.system_queued = self.data_queued = 0
        self._signal_room()
        return taken

    def statistics(self) -> SubscriptionStatistics:
        """A snapshot of this subscription."""
        return SubscriptionStatistics(
            name=self.name,
            queued_system=self.system_queued,
            queued_data=self.data_backlog(),
            delivered=self.delivered(),
            dropped=self.dropped,
            refused=self.refused,
            undelivered=self.undelivered,
            handler_failures=self.failures,
            last_failure=self.last_failure,
            high_water_mark=self.high_water,
            max_buffer=None if self.max_buffer == math.inf else int(self.max_buffer),
            overflow=self.overflow,
        )

    def push_system(self, message: BusMessage) -> None:
        """Put ``message`` in the system lane (made by the first); closed: ClosedResourceError."""
        send = self.system_send
        if send is None:
            if self.closed:
                raise ClosedResourceError
            send, self.system_receive = create_memory_object_stream[BusMessage](math.inf)
            self.system_send = send
            self._lanes += (send, self.system_receive)
        send.send_nowait(message)

    def close(self) -> None:
        """Close both lanes, discarding whatever they still hold; wake whoever waits on them."""
        self.closed = True
        self._close_lanes()
        self._signal_room()
        for waiter in (self.data_waiter, self.system_waiter):
            if waiter is not None:
                waiter.set()

    def take_nowait(self) -> BusMessage:
        """For listeners: take the next accepted message, system first.

        Raises:
            WouldBlock: if nothing is queued.
            ClosedResourceError: if the subscription was closed.
        """
        while True:
            system = self.system_queued > 0
            if system:
                assert self.system_receive is not None  # made by the first system message
                message = self.system_receive.receive_nowait()
                self.system_queued -= 1
            else:
                if not self.bounded:
                    self._sample_high_water()
                message = self.data_receive.receive_nowait()
                if self.bounded:
                    self.data_queued -= 1
                    if self.data_queued < self.room_mark:
                        self._signal_room()
            if not (self.system_queued or self.data_backlog()):
                self.hub.notify_idle()
            if self.accepts is None or self.accepts(message):
                if system:
                    self.system_delivered += 1
                return message
            if not system:
                self.data_filtered += 1


def _make_filter(
    subscriber: BusSubscriber, types: tuple[type[BusMessage], ...] | None
) -> Callable[[BusMessage], bool] | None:
    # Skip the filter call entirely when the subscriber keeps the default (accept all).
    overridden = type(subscriber).accepts_bus_message is not BusSubscriber.accepts_bus_message
    accepts = subscriber.accepts_bus_message if overridden else None
    if not types:
        return accepts
    if accepts is None:
        return lambda message: isinstance(message, types)
    return lambda message: isinstance(message, types) and accepts(message)


def _close_all(streams: list[Any]) -> None:
    """Close the lanes (memory object streams)."""
    for stream in streams:
        stream.close()
