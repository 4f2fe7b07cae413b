"""The bus: lifecycle, the send path and draining; it is given the transport that carries it."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Final, Self

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    Event,
    create_task_group,
    current_time,
    move_on_after,
    sleep_forever,
)
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled

from ._dispatch import ErrorHook, Subscription, handling
from ._exceptions import BusStateError
from ._messages import BusLocalMessage, BusMessage, BusSystemMessage
from ._registry import SubscriptionRegistry
from ._statistics import BusStatistics, OverflowPolicy, Undelivered
from ._transport import DeliveryMark, MemoryTransport, Transport

__all__ = ["WorkerBus", "current_bus"]

logger = logging.getLogger("anybus.bus")

#: ``send()`` yields to the scheduler once every this many calls (a power of two).
SEND_YIELD_INTERVAL = 128
SEND_YIELD_MASK = SEND_YIELD_INTERVAL - 1

#: Seconds the minimal cleanup of a stop may take, shielded: ending the transport's intake,
#: and waiting for cancelled workers to end before the transport acknowledges what they did.
STOP_CLEANUP_TIMEOUT: Final = 10.0

_NOT_RUNNING = (
    "{bus!r} is not running: send inside 'async with bus:' or after "
    "'await task_group.start(bus.run)'"
)

# How send() routes each message class, cached by class: data, system, local-only.
_DATA, _SYSTEM, _LOCAL = 0, 1, 2
_KINDS: dict[type, int] = {}


def _kind_of(message: object) -> int:
    kind = type(message)
    if not isinstance(message, BusMessage):
        if isinstance(message, type) and issubclass(message, BusMessage):
            raise TypeError(
                f"send() takes a message, got the class {message.__name__}: "
                f"send an instance, {message.__name__}(source=...)"
            )
        raise TypeError(
            f"send() takes a BusMessage (a BusDataMessage, a BusSystemMessage, ...), "
            f"got {type(message).__name__} {message!r}"
        )
    if isinstance(message, BusLocalMessage):
        value = _LOCAL
    elif isinstance(message, BusSystemMessage):
        value = _SYSTEM
    else:
        value = _DATA
    _KINDS[kind] = value
    return value


def current_bus() -> WorkerBus | None:
    """The bus whose subscriber's handler is running in the current task, if any.

    Set in every worker task of a subscription (and so in the tasks its handlers start);
    ``None`` elsewhere, in :meth:`BusSubscriber.run_in_bus <anybus.BusSubscriber.run_in_bus>`
    among them. A send into this bus from there is admitted over a full ``block`` bound.
    """
    bus: WorkerBus | None = handling.get()
    return bus


class _Dispatch:
    """The state of one period of dispatching, from ``start()`` to ``stop()``."""

    __slots__ = ("done", "scope", "task_group")

    def __init__(self) -> None:
        self.scope = CancelScope()
        self.done = Event()
        self.task_group: TaskGroup | None = None


class WorkerBus(SubscriptionRegistry):
    """Pub/sub bus connecting workers to each other and to a runner.

    Each subscriber has its own inbox and its own workers; system messages overtake queued data
    messages. The bus owns the subscriptions, their dispatch and its lifecycle; the
    ``transport`` it is given (see :class:`~anybus.Transport`) carries messages to the other
    buses. Without one, the transport is this process's memory (as :class:`MemoryBus`).

    Run a bus in one of two ways; both own every task the bus starts:

    * ``async with bus:`` — the bus opens its own task group and starts its transport;
      leaving the block stops the transport's intake, drains what is queued (up to
      ``exit_drain`` seconds), stops dispatch, lets the transport acknowledge what was
      handled and close, and returns once every task of the bus has ended. Inside the
      block, :meth:`stop` halts dispatch and :meth:`start` resumes it.
    * ``await task_group.start(bus.run)`` — the bus runs inside the caller's task group
      until :meth:`stop` is called or the caller's scope is cancelled.

    A bus sends only while it runs (:meth:`send` raises :class:`BusStateError` before and
    after). Subscribing works at any time; while the bus is not dispatching (before it runs,
    or after :meth:`stop` inside the block), messages wait in the subscribers' inboxes and are
    handled once it starts, system messages first.

    Args:
        transport: what carries the messages (default: a :class:`~anybus.MemoryTransport`).
        max_buffer: default bound on each subscriber's queued data messages (``None``:
            unbounded). System messages are never bounded.
        overflow: default policy when a bounded inbox is full (see :class:`OverflowPolicy`).
        exit_drain: seconds that leaving ``async with bus:`` without an exception waits for
            queued messages to be handled; what is left then is discarded, counted and logged.
            ``None`` leaves it queued instead.
        on_handler_error: ``async def hook(subscriber_name, message, exception)``, awaited by
            the worker after a handler raised (and the failure was logged).

    Raises:
        ValueError: if ``max_buffer`` is below 1, ``overflow`` names no policy, or
            ``exit_drain`` is negative.
    """

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        super().__init__(
            max_buffer=max_buffer, overflow=overflow, on_handler_error=on_handler_error
        )
        if exit_drain is not None and (not isinstance(exit_drain, int | float) or exit_drain < 0):
            raise ValueError(
                f"exit_drain must be a number of seconds >= 0 (or None), got {exit_drain!r}"
            )
        self._transport: Transport = MemoryTransport() if transport is None else transport
        # The memory transport's publish() is deliver(): send() takes the short way instead.
        self._direct = type(self._transport) is MemoryTransport
        self._exit_drain = exit_drain
        self._host: TaskGroup | None = None
        self._hosted_by_run = False
        self._dispatch: _Dispatch | None = None  # dispatching now
        self._stopping: _Dispatch | None = None  # stopped, still winding down
        self._sent = 0

    @property
    def transport(self) -> Transport:
        """The transport that carries this bus's messages."""
        return self._transport

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the bus is dispatching messages to its subscribers."""
        return self._dispatch is not None

    def _dispatching(self) -> bool:
        dispatch = self._dispatch
        return dispatch is not None and dispatch.task_group is not None

    async def __aenter__(self) -> Self:
        if self._host is not None:
            raise BusStateError(f"{self!r} is already running")
        task_group = create_task_group()
        await task_group.__aenter__()
        self._host = task_group
        self._hosted_by_run = False
        try:
            await self._open(task_group)
        except BaseException:
            self._host = None
            self._cancel_dispatch()
            task_group.cancel_scope.cancel(reason="anybus: the bus failed to start")
            await task_group.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        task_group = self._host
        assert task_group is not None
        drain_error: BaseException | None = None
        try:
            await self._stop_intake()
            if exc_type is None and self._exit_drain is not None:
                try:
                    await self.stop(drain=self._exit_drain)
                except BaseException as error:  # cancelled while draining: close up all the same
                    drain_error = error
        finally:
            # The task group is the bus's own business: close it as if nothing was raised,
            # so an exception from the block propagates as it is, not in an exception group.
            await self._end_dispatch()
            task_group.cancel_scope.cancel(reason="anybus: leaving 'async with bus:'")
            try:
                await task_group.__aexit__(None, None, None)
            finally:
                self._host = None
        if drain_error is not None:
            raise drain_error
        return None

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Run the bus until :meth:`stop` is called or the enclosing scope is cancelled.

        Meant for ``await task_group.start(bus.run)``, which returns once the transport is
        up and dispatch has started. After :meth:`stop` the bus has no running scope; run it
        again to resume.

        Raises:
            BusStateError: if the bus is already running.
        """
        if self._host is not None:
            raise BusStateError(f"{self!r} is already running")
        task_group = create_task_group()
        try:
            async with task_group:
                self._host = task_group
                self._hosted_by_run = True
                await self._open(task_group)
                task_status.started()
        finally:
            # A later run() may already own the bus if stop() was called; leave it alone.
            if self._host is task_group:
                self._host = None
                self._cancel_dispatch()

    async def _open(self, task_group: TaskGroup) -> None:
        await task_group.start(self._transport.serve, self, name=f"anybus transport {self!r}")
        await self.start()

    async def _stop_intake(self) -> None:
        # The first step of the ordered stop; shielded, as it must happen however we leave.
        with CancelScope(shield=True) as scope:
            scope.deadline = current_time() + STOP_CLEANUP_TIMEOUT
            await self._transport.stop_intake()

    async def _end_dispatch(self) -> None:
        """Cancel dispatch and wait (shielded, bounded) until every worker has ended, so the
        transport, closing next, sees exactly what was handled."""
        self._cancel_dispatch()
        with CancelScope(shield=True) as scope:
            scope.deadline = current_time() + STOP_CLEANUP_TIMEOUT
            while self._stopping is not None:
                await self._stopping.done.wait()

    async def start(self) -> None:
        """Start dispatching messages to subscribers; a no-op if dispatch already runs.

        Messages that queued while the bus was stopped are handled first, system messages
        before data messages. If a previous :meth:`stop` is still winding down, waits for it
        first.

        If cancelled, the bus stays stopped (:attr:`running` is false) and a later
        ``start()`` starts it.

        Raises:
            BusStateError: if the bus has no running scope (neither ``async with bus:`` nor
                ``bus.run`` is active).
        """
        while self._stopping is not None:
            await self._stopping.done.wait()
        if self._dispatch is not None:
            return
        if self._host is None:
            raise BusStateError(
                "the bus has no running scope: run it with 'async with bus:' or "
                "'await task_group.start(bus.run)' first"
            )
        dispatch = self._dispatch = _Dispatch()
        await self._host.start(self._dispatcher, dispatch, name=f"anybus dispatcher {self!r}")
        logger.debug("%r: dispatch started", self)

    async def stop(self, *, drain: float | None = None) -> list[Undelivered]:
        """Stop dispatching and return once every worker of the bus has ended.

        Without ``drain``, a handler still running is cancelled and queued messages stay in
        the inboxes, to be handled if the bus starts again; returns an empty list.

        With ``drain`` (seconds), first waits up to that long for every queued message to be
        handled (as :meth:`wait_idle`). Messages still queued at the deadline are taken out
        of the inboxes, counted (``undelivered`` in the statistics), logged, and returned;
        a durable transport does not acknowledge them, so they come again next time.

        Under ``bus.run`` the bus ends here, in order: the transport's intake stops, the
        drain runs, dispatch stops, the transport acknowledges what was handled and closes.

        Safe to call from any task, more than once, and when the bus is not running. If
        ``stop()`` is cancelled (say, by a timeout), dispatch still shuts down and nothing is
        taken out of the inboxes; a later ``stop()`` or ``start()`` waits for the rest.
        """
        undelivered: list[Undelivered] = []
        if self._dispatch is not None:
            ending = self._hosted_by_run and self._host is not None
            try:
                if ending:
                    await self._stop_intake()
                if drain is not None:
                    with move_on_after(drain):
                        await self.wait_idle()
                    undelivered = self._take_undelivered()
            finally:
                if ending and self._host is not None:
                    host, self._host = self._host, None
                    await self._end_dispatch()
                    host.cancel_scope.cancel(reason="anybus: the bus was stopped")
                else:
                    self._cancel_dispatch()
        while self._stopping is not None:
            await self._stopping.done.wait()
        await checkpoint()
        return undelivered

    def _take_undelivered(self) -> list[Undelivered]:
        undelivered: list[Undelivered] = []
        for sub in self._targets:
            taken = sub.take_all()
            sub.undelivered += len(taken)
            undelivered.extend(Undelivered(sub.name, message) for message in taken)
        if undelivered:
            logger.warning(
                "%r: %d message(s) still queued when the drain ended: discarded",
                self,
                len(undelivered),
            )
        return undelivered

    def _cancel_dispatch(self) -> None:
        dispatch, self._dispatch = self._dispatch, None
        if dispatch is not None and not dispatch.done.is_set():
            self._stopping = dispatch
            dispatch.scope.cancel(reason="anybus: the bus was stopped")
            logger.debug("%r: dispatch stopped", self)

    async def _dispatcher(self, dispatch: _Dispatch, *, task_status: TaskStatus[None]) -> None:
        try:
            with dispatch.scope:
                async with create_task_group() as task_group:
                    dispatch.task_group = task_group
                    for sub in self._targets:
                        sub.spawn(task_group)
                    task_status.started()
                    await sleep_forever()
        finally:
            dispatch.task_group = None
            # Ended by stop(), or by the host's scope being cancelled: forget it either way.
            if self._dispatch is dispatch:
                self._dispatch = None
            if self._stopping is dispatch:
                self._stopping = None
            dispatch.done.set()

    def _spawn_if_dispatching(self, sub: Subscription) -> None:
        dispatch = self._dispatch
        if dispatch is not None and dispatch.task_group is not None:
            sub.spawn(dispatch.task_group)

    async def wait_idle(self) -> None:
        """Wait until every queued message has been handled by every subscriber.

        Idle means: every inbox is empty and no handler is running (messages that handlers
        send on the way are waited for too), and no subscriber reports work of its own
        (:meth:`BusSubscriber.is_busy <anybus.BusSubscriber.is_busy>`, as a
        :class:`~anybus.JobWorker` with jobs running or queued). A stopped bus with queued
        messages becomes idle only once it runs again; bound the wait with
        ``anyio.fail_after``. Cancelling the wait changes nothing.
        """
        while True:
            dispatching = self._dispatching()
            if all(sub.is_idle(dispatching) for sub in self._targets):
                await checkpoint()
                return
            event = self._hub.idle_event
            if event is None:
                event = self._hub.idle_event = Event()
            await event.wait()

    def notify_idle(self) -> None:
        """Make :meth:`wait_idle` look again: a subscriber's ``is_busy()`` may be false now."""
        self._hub.notify_idle()

    # --- sending --------------------------------------------------------------------------

    async def send(self, message: BusMessage) -> None:
        """Send ``message`` to every subscriber of every bus on the transport.

        A :class:`~anybus.BusLocalMessage` goes straight to this process's subscribers; any
        other message goes through the transport (see :class:`~anybus.Transport`), which
        hands it to this bus's subscribers too. ``send()`` does not wait for handlers. To keep
        a loop of sends cheap it yields to the scheduler only once every 128 calls, and when
        it must wait for room in a bounded inbox.

        Raises:
            TypeError: if ``message`` is not a :class:`~anybus.BusMessage` instance.
            BusStateError: if the bus is not running.
            BusOverflowError: if a subscriber with the ``error`` policy has a full inbox.

        Cancellation: a cancelled ``send()`` has delivered the message to nobody (under the
        ``block`` policy it was waiting for room; at its scheduling point it checks for
        cancellation before delivering). A network transport documents what a send
        cancelled while it talks to the network has done.
        """
        try:
            kind = _KINDS[message.__class__]
        except KeyError:
            kind = _kind_of(message)
        if self._host is None:
            raise BusStateError(_NOT_RUNNING.format(bus=self))
        sent = self._sent + 1
        if sent & SEND_YIELD_MASK:
            if kind == _DATA and self._direct and not self._blocking:
                self._fan_out(message)
            else:
                await self._route(message, kind)
            self._sent = sent
            return
        # Once every 128 sends: a scheduling point, which a cancellation meets before the
        # message goes anywhere.
        await checkpoint_if_cancelled()
        await self._route(message, kind)
        self._sent = sent
        await cancel_shielded_checkpoint()

    async def _route(self, message: BusMessage, kind: int) -> None:
        if kind == _LOCAL or self._direct:
            await self.deliver(message)
        else:
            await self._transport.publish(message)

    async def deliver(self, message: BusMessage) -> None:
        """Hand ``message`` to every local subscriber's inbox, by the overflow policies.

        Transports call this for each message that arrives from the network (it is
        pipecat's ``on_message_received``). It does not wait for handlers; under the
        ``block`` policy it waits for room in full inboxes before queuing the message
        anywhere, so a cancelled call has queued it nowhere. A subscriber whose ``targets``
        refuse the message is not waited for.

        Raises:
            BusOverflowError: if a subscriber with the ``error`` policy has a full inbox (the
                others still received the message).
        """
        if self._blocking and not isinstance(message, BusSystemMessage):
            await self._wait_for_room(message)
        self._fan_out(message)

    async def _wait_for_room(self, message: BusMessage) -> None:
        if handling.get() is self:
            return  # a handler of this bus: admitted over the bound rather than deadlocking
        while True:
            for sub in self._bounded:
                if (
                    sub.overflow is OverflowPolicy.BLOCK
                    and sub.data_queued >= sub.max_buffer
                    and sub.wants(message)
                ):
                    break
            else:
                return
            await sub.wait_for_room()

    # --- what a transport asks ------------------------------------------------------------

    def mark(self) -> DeliveryMark:
        """A mark of everything delivered so far (see :meth:`handled`)."""
        mark: Any = tuple((sub, sub.system_in, sub.data_in()) for sub in self._targets)
        return mark  # type: ignore[no-any-return]

    def handled(self, mark: DeliveryMark) -> bool:
        """Whether every message delivered before ``mark`` was taken has been handled.

        A durable transport acknowledges a message once this is true of the mark it took
        just after delivering it: every subscriber's handler returned (or raised), a filter
        refused it, or an overflow policy dropped it. A message taken out of an inbox
        undelivered, or one whose handler was cancelled, is not handled; an unsubscribed
        subscriber's messages count as handled.
        """
        subs: tuple[tuple[Subscription, int, int], ...] = mark  # type: ignore[assignment]
        for sub, system, data in subs:
            if sub.closed:
                continue
            system_done, data_done = sub.settled()
            if system_done < system or data_done < data:
                return False
        return True

    # --- introspection --------------------------------------------------------------------

    def statistics(self) -> BusStatistics:
        """A snapshot of the bus and of every subscription."""
        return BusStatistics(
            running=self.running,
            sent=self._sent,
            subscriptions=tuple(sub.statistics() for sub in self._targets),
        )

    def __repr__(self) -> str:
        queued = sum(sub.system_queued + sub.data_backlog() for sub in self._targets)
        state = "running" if self.running else "stopped"
        count = len(self._targets)
        plural = "" if count == 1 else "s"
        where = "" if self._direct else f", {self._transport}"
        return (
            f"<{type(self).__name__} {state}, {count} subscriber{plural}, {queued} queued{where}>"
        )
