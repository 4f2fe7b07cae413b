"""The abstract bus: subscriptions, lifecycle and the send path shared by every transport."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    Event,
    create_task_group,
    sleep_forever,
)
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from ._dispatch import Subscription, fan_out
from ._exceptions import BusStateError
from ._messages import BusLocalMessage, BusMessage
from ._subscriber import BusSubscriber

__all__ = ["WorkerBus"]

logger = logging.getLogger("anybus.bus")

#: ``send()`` yields to the scheduler once every this many calls.
SEND_YIELD_INTERVAL = 64

_NO_SCOPE = (
    "the bus has no running scope: run it with 'async with bus:' or "
    "'await task_group.start(bus.run)' first"
)


class _Dispatch:
    """The state of one period of dispatching, from ``start()`` to ``stop()``."""

    __slots__ = ("done", "scope", "task_group")

    def __init__(self) -> None:
        self.scope = CancelScope()
        self.done = Event()
        self.task_group: TaskGroup | None = None


class WorkerBus(ABC):
    """Pub/sub bus connecting workers to each other and to a runner.

    Each subscriber has its own inbox and its own workers; system messages overtake queued data
    messages. Subclasses implement :meth:`publish` for their transport and hand messages that
    arrive from it to :meth:`deliver`.

    Run a bus in one of two ways; both own every task the bus starts:

    * ``async with bus:`` — the bus opens its own task group; leaving the block stops
      dispatch and returns once every task of the bus has ended. Inside the block,
      :meth:`stop` halts dispatch and :meth:`start` resumes it.
    * ``await task_group.start(bus.run)`` — the bus runs inside the caller's task group
      until :meth:`stop` is called or the caller's scope is cancelled.

    Subscribing and sending work at any time: while the bus is not dispatching, messages wait
    in the subscribers' inboxes and are handled once it starts, system messages first.
    """

    def __init__(self) -> None:
        self._subscriptions: dict[str, Subscription] = {}
        # A tuple snapshot of the subscriptions, rebuilt on (un)subscribe: the send path only
        # iterates it.
        self._targets: tuple[Subscription, ...] = ()
        self._host: TaskGroup | None = None
        self._hosted_by_run = False
        self._dispatch: _Dispatch | None = None  # dispatching now
        self._stopping: _Dispatch | None = None  # stopped, still winding down
        self._sends = 0

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the bus is dispatching messages to its subscribers."""
        return self._dispatch is not None

    async def __aenter__(self) -> Self:
        if self._host is not None:
            raise BusStateError(f"{self!r} is already running")
        task_group = create_task_group()
        await task_group.__aenter__()
        self._host = task_group
        self._hosted_by_run = False
        try:
            await self.start()
        except BaseException as exc:
            self._host = None
            self._cancel_dispatch()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
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
        self._cancel_dispatch()
        try:
            return await task_group.__aexit__(exc_type, exc, tb)
        finally:
            self._host = None

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Run the bus until :meth:`stop` is called or the enclosing scope is cancelled.

        Meant for ``await task_group.start(bus.run)``, which returns once dispatch has
        started. After :meth:`stop` the bus has no running scope; run it again to resume.

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
                await self.start()
                task_status.started()
        finally:
            # A later run() may already own the bus if stop() was called; leave it alone.
            if self._host is task_group:
                self._host = None
                self._cancel_dispatch()

    async def start(self) -> None:
        """Start dispatching messages to subscribers; a no-op if dispatch already runs.

        Messages that queued while the bus was stopped are handled first, system messages
        before data messages. If a previous :meth:`stop` is still winding down, waits for it
        first.

        Raises:
            BusStateError: if the bus has no running scope (neither ``async with bus:`` nor
                ``bus.run`` is active).
        """
        while self._stopping is not None:
            await self._stopping.done.wait()
        if self._dispatch is not None:
            return
        if self._host is None:
            raise BusStateError(_NO_SCOPE)
        dispatch = self._dispatch = _Dispatch()
        await self._host.start(self._dispatcher, dispatch, name=f"anybus dispatcher {self!r}")

    async def stop(self) -> None:
        """Stop dispatching and return once every worker of the bus has ended.

        A handler still running is cancelled. Messages still queued stay in the inboxes and
        are handled if the bus starts again. Safe to call from any task, more than once, and
        when the bus is not running. If ``stop()`` itself is cancelled (say, by a timeout)
        while it waits, dispatch still shuts down; only the wait is abandoned, and a later
        ``stop()`` or ``start()`` waits for the rest.
        """
        if self._dispatch is not None:
            if self._hosted_by_run:
                self._host = None
            self._cancel_dispatch()
        while self._stopping is not None:
            await self._stopping.done.wait()
        await checkpoint()

    def _cancel_dispatch(self) -> None:
        dispatch, self._dispatch = self._dispatch, None
        if dispatch is not None and not dispatch.done.is_set():
            self._stopping = dispatch
            dispatch.scope.cancel(reason="anybus: the bus was stopped")

    async def _dispatcher(self, dispatch: _Dispatch, *, task_status: TaskStatus[None]) -> None:
        try:
            with dispatch.scope:
                async with create_task_group() as task_group:
                    dispatch.task_group = task_group
                    for sub in self._targets:
                        self._spawn(task_group, sub)
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

    def _spawn(self, task_group: TaskGroup, sub: Subscription) -> None:
        sub.scope = CancelScope()
        sub.done = Event()
        task_group.start_soon(sub.serve, sub.scope, sub.done, name=f"anybus worker {sub.name!r}")

    # --- subscriptions --------------------------------------------------------------------

    async def subscribe(self, subscriber: BusSubscriber) -> None:
        """Register ``subscriber`` to receive every message sent from now on.

        A no-op if a subscriber of the same name is already registered. If the bus is
        dispatching, the subscriber's workers start at once.
        """
        name = subscriber.name
        existing = self._subscriptions.get(name)
        if existing is not None:
            if existing.subscriber is not subscriber:
                logger.warning(
                    "%r: a subscriber named %r is already subscribed; ignoring %r",
                    self,
                    name,
                    subscriber,
                )
            return
        sub = Subscription(subscriber, name)
        self._subscriptions[name] = sub
        self._targets = tuple(self._subscriptions.values())
        dispatch = self._dispatch
        if dispatch is not None and dispatch.task_group is not None:
            self._spawn(dispatch.task_group, sub)
        await checkpoint()

    async def unsubscribe(self, subscriber: BusSubscriber) -> None:
        """Remove ``subscriber``: cancel its workers, wait for them, discard its inbox.

        Only this subscriber's workers are cancelled. A no-op if it is not subscribed. If the
        wait is cancelled, the workers still end and the inbox is still discarded.
        """
        sub = self._subscriptions.pop(subscriber.name, None)
        if sub is None:
            await checkpoint()
            return
        self._targets = tuple(self._subscriptions.values())
        try:
            if sub.scope is not None and sub.done is not None:
                sub.scope.cancel(reason=f"anybus: {sub.name!r} unsubscribed")
                await sub.done.wait()
            else:
                await checkpoint()
        finally:
            sub.close()

    # --- sending --------------------------------------------------------------------------

    async def send(self, message: BusMessage) -> None:
        """Send ``message`` to every subscriber.

        A :class:`~anybus.BusLocalMessage` goes straight to this process's subscribers; any
        other message goes through :meth:`publish`. ``send()`` does not wait for handlers. To
        keep a loop of sends cheap it yields to the scheduler only once every 64 calls (and
        whenever the transport must wait), so a sending task still lets others run.
        """
        if isinstance(message, BusLocalMessage):
            fan_out(self._targets, message)
        else:
            await self.publish(message)
        self._sends += 1
        if self._sends == SEND_YIELD_INTERVAL:
            self._sends = 0
            await checkpoint()

    @abstractmethod
    async def publish(self, message: BusMessage) -> None:
        """Hand ``message`` to the transport; called by :meth:`send` for non-local messages.

        Implementations deliver it to every bus on the transport, this one included (a
        network transport usually delivers to local subscribers directly, through
        :meth:`deliver`).
        """

    async def deliver(self, message: BusMessage) -> None:
        """Hand ``message`` to every local subscriber's inbox.

        Transports call this for each message that arrives from the network (it is
        pipecat's ``on_message_received``). It does not wait for handlers.
        """
        fan_out(self._targets, message)

    # --- introspection --------------------------------------------------------------------

    @property
    def subscribers(self) -> list[BusSubscriber]:
        """The subscribers registered now, in subscription order."""
        return [sub.subscriber for sub in self._targets]

    def __repr__(self) -> str:
        queued = sum(sum(sub.queued()) for sub in self._targets)
        state = "running" if self.running else "stopped"
        count = len(self._targets)
        plural = "" if count == 1 else "s"
        return f"<{type(self).__name__} {state}, {count} subscriber{plural}, {queued} queued>"
