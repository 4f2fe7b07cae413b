"""The lifecycle of a bus: run it, stop and start dispatch, the ordered stop, draining."""

from __future__ import annotations

import logging
from contextvars import copy_context
from threading import get_ident
from types import TracebackType
from typing import Final, Self, cast

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    Event,
    TaskHandle,
    create_task_group,
    current_time,
    move_on_after,
    sleep_forever,
)
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import cancel_shielded_checkpoint, checkpoint, checkpoint_if_cancelled

from ._checks import check_seconds
from ._dispatch import ErrorHook, Subscription, handling
from ._exceptions import BusStateError
from ._hooks import register_bus
from ._registry import SubscriptionRegistry
from ._statistics import OverflowPolicy, Undelivered
from ._transport import Transport, TransportHost

__all__ = ["BusLifecycle"]

logger = logging.getLogger("anybus.bus")

#: Seconds the minimal cleanup of a stop may take, shielded: ending the transport's intake,
#: and waiting for cancelled workers to end before the transport acknowledges what they did.
STOP_CLEANUP_TIMEOUT: Final = 10.0


class _Dispatch:
    """One period of dispatching, from ``start()`` to ``stop()``: the subscriptions whose
    workers it started (in the bus's host task group, each worker in a task of its own)."""

    __slots__ = ("ending", "subs")

    def __init__(self) -> None:
        self.subs: dict[Subscription, None] = {}  # insertion-ordered; unsubscribed ones leave
        self.ending: list[TaskHandle[None]] = []  # its workers, once stopped

    async def wait_ended(self) -> None:
        """Wait for the workers this period started (not those of a later one)."""
        for handle in self.ending:
            await handle.wait()


class BusLifecycle(SubscriptionRegistry):
    """The part of :class:`~anybus.WorkerBus` that runs it (see there)."""

    def __init__(
        self,
        transport: Transport,
        *,
        exit_drain: float | None,
        max_buffer: int | None,
        overflow: OverflowPolicy | str,
        on_handler_error: ErrorHook | None,
    ) -> None:
        super().__init__(
            max_buffer=max_buffer, overflow=overflow, on_handler_error=on_handler_error
        )
        self._transport = transport
        self._exit_drain = check_seconds("exit_drain", exit_drain, none=True, zero=True)
        self._host: TaskGroup | None = None
        self._thread = 0  # the thread of the event loop the bus runs in
        self._hosted_by_run = False
        self._dispatch: _Dispatch | None = None  # dispatching now
        self._stopping: _Dispatch | None = None  # stopped, still winding down
        self._context = copy_context()
        self._serving: CancelScope | None = None  # the scope of the transport's serve()
        register_bus(self)

    def _refresh_plain(self) -> None:
        self._plain = self._plain_targets if self._host is not None else None

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
        return self._dispatch is not None

    async def __aenter__(self) -> Self:
        if self._host is not None:
            raise BusStateError(f"{self!r} is already running")
        task_group = create_task_group()
        await task_group.__aenter__()
        self._host = task_group
        self._thread = get_ident()  # the event loop's: send() refuses others
        self._refresh_plain()
        self._hosted_by_run = False
        try:
            await self._open(task_group)
        except BaseException:
            self._host = None
            self._refresh_plain()
            self._cancel_dispatch()
            self._close_transport()
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
            try:
                await self._end_dispatch()
            finally:
                self._close_transport()
            task_group.cancel_scope.cancel(reason="anybus: leaving 'async with bus:'")
            try:
                await task_group.__aexit__(None, None, None)
            finally:
                self._host = None
                self._refresh_plain()
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
                self._thread = get_ident()  # the event loop's: send() refuses others
                self._refresh_plain()
                self._hosted_by_run = True
                try:
                    await self._open(task_group)
                    task_status.started()
                    await sleep_forever()  # until stop() or a cancel from outside
                finally:
                    if self._host is task_group and self._dispatch is not None:
                        # Cancelled from outside, not by stop(): stop in order all the same.
                        await self._stop_intake()
                        await self._end_dispatch()
                    self._close_transport()
        finally:
            # A later run() may already own the bus if stop() was called; leave it alone.
            if self._host is task_group:
                self._host = None
                self._refresh_plain()
                self._cancel_dispatch()

    async def _open(self, task_group: TaskGroup) -> None:
        self._context = copy_context()  # the workers start in it, whoever starts them
        await task_group.start(self._serve, name=f"anybus transport {self!r}")
        await self.start()
        # Started: from now on a cancel from outside reaches the transport only through the
        # ordered stop (not while it starts, which a cancel must end at once).
        if self._serving is not None:
            self._serving.shield = True

    async def _serve(self, *, task_status: TaskStatus[None]) -> None:
        """The transport's ``serve()``, in a scope that :meth:`_open` shields from outside
        once the bus has started: a cancel of the scope around the bus then reaches it only
        through the ordered stop (intake, the workers' last sends — a job's cancel, a
        worker's last answer — then :meth:`_close_transport`), so that they go out."""
        with CancelScope() as scope:
            self._serving = scope
            host = cast("TransportHost", self)  # a WorkerBus, which this class is a base of
            await self._transport.serve(host, task_status=task_status)

    def _close_transport(self) -> None:
        """The last step of the ordered stop: the transport acknowledges and closes."""
        serving, self._serving = self._serving, None
        if serving is not None:
            serving.cancel(reason="anybus: the bus stopped")

    async def _stop_intake(self) -> None:
        # The first step of the ordered stop; shielded, as it must happen however we leave.
        with CancelScope(shield=True) as scope:
            scope.deadline = current_time() + STOP_CLEANUP_TIMEOUT
            await self._transport.stop_intake()

    async def _end_dispatch(self) -> None:
        """Cancel dispatch and wait (shielded, bounded) until every worker has ended, so the
        transport, closing next, sees exactly what was handled."""
        self._cancel_dispatch()
        # Shielded, unless this is one of the bus's own workers (a handler stopping its bus):
        # it is itself among those being waited for, and its cancellation ends the wait.
        own_worker = handling.get() is self
        with CancelScope(shield=not own_worker) as scope:
            scope.deadline = current_time() + STOP_CLEANUP_TIMEOUT
            await self._wait_stopped()

    async def _wait_stopped(self) -> None:
        """Wait until the workers of a stopped period of dispatching have ended."""
        while (stopping := self._stopping) is not None:
            await stopping.wait_ended()
            if self._stopping is stopping:
                self._stopping = None

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
        await self._wait_stopped()
        if self._dispatch is not None:
            await checkpoint()
            return
        if self._host is None:
            raise BusStateError(
                "the bus has no running scope: run it with 'async with bus:' or "
                "'await task_group.start(bus.run)' first"
            )
        await checkpoint_if_cancelled()  # cancelled here: still stopped, nothing started
        dispatch = self._dispatch = _Dispatch()
        for sub in self._targets:
            self._spawn_in(dispatch, sub)
        logger.debug("%r: dispatch started", self)
        await cancel_shielded_checkpoint()

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
        check_seconds("drain", drain, none=True, zero=True)
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
                    self._refresh_plain()
                    try:
                        await self._end_dispatch()
                    finally:  # the transport goes with it, however the wait ended
                        self._close_transport()
                        host.cancel_scope.cancel(reason="anybus: the bus was stopped")
                else:
                    self._cancel_dispatch()
        await self._wait_stopped()
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
        if dispatch is not None:
            self._stopping = dispatch
            for sub in dispatch.subs:
                sub.stop()
                dispatch.ending.extend(sub.handles)
            self._hub.notify_idle()
            logger.debug("%r: dispatch stopped", self)

    def _spawn_in(self, dispatch: _Dispatch, sub: Subscription) -> None:
        assert self._host is not None
        sub.spawn(self._host, self._context)
        dispatch.subs[sub] = None

    def _forget(self, sub: Subscription) -> None:
        for dispatch in (self._dispatch, self._stopping):
            if dispatch is not None:
                dispatch.subs.pop(sub, None)

    def _spawn_if_dispatching(self, sub: Subscription) -> None:
        dispatch = self._dispatch
        if dispatch is not None and self._host is not None:
            self._spawn_in(dispatch, sub)

    async def wait_idle(self) -> None:
        """Wait until every queued message has been handled by every subscriber.

        Idle means: every inbox is empty and no handler is running (messages that handlers
        send on the way are waited for too), and no subscriber reports work of its own
        (:meth:`BusSubscriber.is_busy <anybus.BusSubscriber.is_busy>`, as a
        :class:`~anybus.JobWorker` with jobs running or queued). A stopped bus with queued
        messages becomes idle only once it runs again; bound the wait with
        ``anyio.fail_after``. Cancelling the wait changes nothing.

        Raises:
            RuntimeError: if called from a handler of this bus (it would wait for itself).
        """
        if handling.get() is self:
            raise RuntimeError(
                f"wait_idle() called from a handler of {self!r}: it would wait for that "
                f"handler to end; wait from outside the bus's handlers (e.g. the task that "
                f"opened the bus)"
            )
        waited = False
        while True:
            dispatching = self._dispatching()
            if all(sub.is_idle(dispatching) for sub in self._targets):
                # Having waited, it was scheduled already: it only looks for a cancellation
                # (on asyncio the wait may have ended before the cancellation got through).
                await (checkpoint_if_cancelled() if waited else checkpoint())
                return
            event = self._hub.idle_event
            if event is None:
                event = self._hub.idle_event = Event()
            await event.wait()
            waited = True
