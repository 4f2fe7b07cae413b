"""The abstract bus: lifecycle, the send path and draining, shared by every transport."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, nullcontext
from types import TracebackType
from typing import Any, Self

from anyio import (
    TASK_STATUS_IGNORED,
    CancelScope,
    Event,
    create_task_group,
    move_on_after,
    sleep_forever,
)
from anyio.abc import TaskGroup, TaskStatus
from anyio.lowlevel import checkpoint

from ._dispatch import ErrorHook, Subscription, in_handler
from ._exceptions import BusStateError, JobTimeout
from ._jobs import ANSWER_TYPES, CANCEL_TIMEOUT, Job, JobResult, _JobClient
from ._messages import BusLocalMessage, BusMessage, BusSystemMessage
from ._portal import BusPortal
from ._registry import SubscriptionRegistry
from ._statistics import BusStatistics, OverflowPolicy, Undelivered

__all__ = ["WorkerBus"]

logger = logging.getLogger("anybus.bus")

#: ``send()`` yields to the scheduler once every this many calls (a power of two).
SEND_YIELD_INTERVAL = 128
SEND_YIELD_MASK = SEND_YIELD_INTERVAL - 1

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


class WorkerBus(SubscriptionRegistry):
    """Pub/sub bus connecting workers to each other and to a runner.

    Each subscriber has its own inbox and its own workers; system messages overtake queued data
    messages. Subclasses implement :meth:`publish` for their transport and hand messages that
    arrive from it to :meth:`deliver`.

    Run a bus in one of two ways; both own every task the bus starts:

    * ``async with bus:`` — the bus opens its own task group; leaving the block drains what is
      queued (up to ``exit_drain`` seconds), stops dispatch and returns once every task of the
      bus has ended. Inside the block, :meth:`stop` halts dispatch and :meth:`start` resumes it.
    * ``await task_group.start(bus.run)`` — the bus runs inside the caller's task group
      until :meth:`stop` is called or the caller's scope is cancelled.

    Subscribing and sending work at any time: while the bus is not dispatching, messages wait
    in the subscribers' inboxes and are handled once it starts, system messages first.

    Args:
        max_buffer: default bound on each subscriber's queued data messages (``None``:
            unbounded). System messages are never bounded.
        overflow: default policy when a bounded inbox is full (see :class:`OverflowPolicy`).
        exit_drain: seconds that leaving ``async with bus:`` without an exception waits for
            queued messages to be handled; what is left then is discarded, counted and logged.
            ``None`` leaves it queued instead.
        on_handler_error: ``async def hook(subscriber_name, message, exception)``, awaited by
            the worker after a handler raised (and the failure was logged).

    Raises:
        ValueError: if ``max_buffer`` is below 1 or ``exit_drain`` is negative.
    """

    def __init__(
        self,
        *,
        max_buffer: int | None = None,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        exit_drain: float | None = 5.0,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        super().__init__(
            max_buffer=max_buffer, overflow=overflow, on_handler_error=on_handler_error
        )
        if exit_drain is not None and exit_drain < 0:
            raise ValueError(f"exit_drain cannot be negative, got {exit_drain!r}")
        self._exit_drain = exit_drain
        self._host: TaskGroup | None = None
        self._hosted_by_run = False
        self._dispatch: _Dispatch | None = None  # dispatching now
        self._stopping: _Dispatch | None = None  # stopped, still winding down
        self._sent = 0
        self._jobs: _JobClient | None = None

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
        if exc_type is None and self._exit_drain is not None:
            try:
                await self.stop(drain=self._exit_drain)
            except BaseException as error:  # cancelled while draining: close up all the same
                drain_error = error
        # The task group is the bus's own business: close it as if nothing was raised, so
        # an exception from the block propagates as it is, not wrapped in an exception group.
        self._cancel_dispatch()
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
                await self._open(task_group)
                task_status.started()
        finally:
            # A later run() may already own the bus if stop() was called; leave it alone.
            if self._host is task_group:
                self._host = None
                self._cancel_dispatch()

    #: Whether the subclass has a transport to run (see :meth:`_serve_transport`).
    _has_transport = False

    async def _open(self, task_group: TaskGroup) -> None:
        if self._has_transport:
            await task_group.start(self._serve_transport, name=f"anybus transport {self!r}")
        await self.start()

    async def _serve_transport(self, *, task_status: TaskStatus[None]) -> None:
        """Run the transport (connect, subscribe, read) until cancelled.

        A hook for network buses (which set ``_has_transport = True``): it runs in the bus's
        host task group, alongside dispatch, for as long as the bus runs (across
        ``stop()``/``start()`` inside ``async with bus:``), and calls
        ``task_status.started()`` once messages can flow both ways. An exception before that
        fails ``async with bus:`` (or ``bus.run``).
        """
        task_status.started()

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
            raise BusStateError(_NO_SCOPE)
        dispatch = self._dispatch = _Dispatch()
        await self._host.start(self._dispatcher, dispatch, name=f"anybus dispatcher {self!r}")
        logger.debug("%r: dispatch started", self)

    async def stop(self, *, drain: float | None = None) -> list[Undelivered]:
        """Stop dispatching and return once every worker of the bus has ended.

        Without ``drain``, a handler still running is cancelled and queued messages stay in
        the inboxes, to be handled if the bus starts again; returns an empty list.

        With ``drain`` (seconds), first waits up to that long for every queued message to be
        handled (as :meth:`wait_idle`). Messages still queued at the deadline are taken out
        of the inboxes, counted (``undelivered`` in the statistics), logged, and returned.

        Safe to call from any task, more than once, and when the bus is not running. If
        ``stop()`` is cancelled (say, by a timeout), dispatch still shuts down and nothing is
        taken out of the inboxes; a later ``stop()`` or ``start()`` waits for the rest.
        """
        undelivered: list[Undelivered] = []
        if self._dispatch is not None:
            try:
                if drain is not None:
                    with move_on_after(drain):
                        await self.wait_idle()
                    undelivered = self._take_undelivered()
            finally:
                if self._dispatch is not None:
                    if self._hosted_by_run and self._host is not None:
                        # The run form ends here: its transport goes with it.
                        self._host.cancel_scope.cancel(reason="anybus: the bus was stopped")
                        self._host = None
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

    def _spawn_if_dispatching(self, sub: Subscription) -> None:
        dispatch = self._dispatch
        if dispatch is not None and dispatch.task_group is not None:
            self._spawn(dispatch.task_group, sub)

    @staticmethod
    def _spawn(task_group: TaskGroup, sub: Subscription) -> None:
        if sub.passive:
            return
        sub.scope = CancelScope()
        sub.done = Event()
        task_group.start_soon(sub.serve, sub.scope, sub.done, name=f"anybus worker {sub.name!r}")

    async def wait_idle(self) -> None:
        """Wait until every queued message has been handled by every subscriber.

        Idle means: every inbox is empty and no handler is running (messages that handlers
        send on the way are waited for too), and no :class:`~anybus.JobWorker` has a job
        running or queued. A stopped bus with queued messages becomes idle
        only once it runs again; bound the wait with ``anyio.fail_after``. Cancelling the
        wait changes nothing.
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

    def _notify_idle(self) -> None:
        """Wake ``wait_idle()`` to look again (a subscriber's own work has ended)."""
        self._hub.notify_idle()

    # --- sending --------------------------------------------------------------------------

    async def send(self, message: BusMessage) -> None:
        """Send ``message`` to every subscriber.

        A :class:`~anybus.BusLocalMessage` goes straight to this process's subscribers; any
        other message goes through :meth:`publish`. ``send()`` does not wait for handlers. To
        keep a loop of sends cheap it yields to the scheduler only once every 128 calls, and
        when it must wait for room in a bounded inbox.

        Raises:
            BusOverflowError: if a subscriber with the ``error`` policy has a full inbox.

        Under the ``block`` policy a cancelled ``send()`` has queued the message nowhere.
        """
        if isinstance(message, BusLocalMessage):
            await self.deliver(message)
        else:
            await self.publish(message)
        sent = self._sent = self._sent + 1
        if not sent & SEND_YIELD_MASK:
            await checkpoint()

    @abstractmethod
    async def publish(self, message: BusMessage) -> None:
        """Hand ``message`` to the transport; called by :meth:`send` for non-local messages.

        Implementations deliver it to every bus on the transport, this one included (a
        network transport usually delivers to local subscribers directly, through
        :meth:`deliver`). A cancelled ``publish()`` may or may not have handed the message
        over; each transport documents which.
        """

    async def deliver(self, message: BusMessage) -> None:
        """Hand ``message`` to every local subscriber's inbox, by the overflow policies.

        Transports call this for each message that arrives from the network (it is
        pipecat's ``on_message_received``). It does not wait for handlers; under the
        ``block`` policy it waits for room in full inboxes before queuing the message
        anywhere, so a cancelled call has queued it nowhere.

        Raises:
            BusOverflowError: if a subscriber with the ``error`` policy has a full inbox (the
                others still received the message).
        """
        if self._blocking and not isinstance(message, BusSystemMessage):
            await self._wait_for_room()
        self._fan_out(message)

    async def _wait_for_room(self) -> None:
        if in_handler.get():
            return  # a handler answering: admitted over the bound rather than deadlocking
        while True:
            for sub in self._bounded:
                if sub.overflow is OverflowPolicy.BLOCK and sub.data_queued >= sub.max_buffer:
                    break
            else:
                return
            await sub.wait_for_room()

    # --- jobs ----------------------------------------------------------------------------

    def job(
        self,
        worker: str,
        payload: Mapping[str, Any] | None = None,
        *,
        job_name: str | None = None,
        source: str | None = None,
        job_id: str | None = None,
        cancel_timeout: float = CANCEL_TIMEOUT,
    ) -> Job:
        """Send a job to ``worker`` and follow it: ``async with bus.job(...) as job:``.

        Entering the block sends a :class:`~anybus.BusJobRequestMessage` (``payload``,
        ``job_name``) addressed to ``worker``; inside it, read ``job.updates()``,
        ``job.stream()`` and ``await job.result()`` (see :class:`Job`). Answers are addressed to
        ``source`` (by default the name of the bus's job client, a subscriber the first job
        adds) and matched by the job's id (``job_id``, by default a random one).

        Leaving the block before the job has ended — cancelled, timed out, raised, or done
        waiting — sends a :class:`~anybus.BusJobCancelMessage` to the worker, shielded from
        the cancellation, for at most ``cancel_timeout`` seconds.
        """
        return Job(
            self,
            worker,
            payload,
            job_name=job_name,
            source=source,
            job_id=job_id,
            cancel_timeout=cancel_timeout,
        )

    async def request(
        self,
        worker: str,
        payload: Mapping[str, Any] | None = None,
        *,
        job_name: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the job's deadline, a part of the call
        source: str | None = None,
    ) -> JobResult:
        """Send a job to ``worker``, wait for its response and return it.

        Updates and stream chunks the worker sends are ignored (use :meth:`job` to read
        them). If the call is cancelled, or ``timeout`` seconds pass without a response, a
        :class:`~anybus.BusJobCancelMessage` is sent to the worker (see :meth:`job`).

        Raises:
            JobTimeout: if no response came within ``timeout`` seconds.
            JobFailed: if the worker answered ``failed`` (the handler raised ``JobFailed``).
            JobCancelled: if the worker answered ``cancelled``.
            JobError: if the worker answered ``error``, or announced an error of its own
                (``BusWorkerErrorMessage``) while the job was outstanding.
        """
        job = self.job(worker, payload, job_name=job_name, source=source)
        # No cancel scope at all without a timeout: one less per request.
        with move_on_after(timeout) if timeout is not None else nullcontext():
            async with job:
                return await job.result()
        raise JobTimeout(
            f"job {job.id} at {worker!r} did not answer within {timeout} s; it was cancelled",
            job_id=job.id,
            worker=worker,
        )

    async def _job_client(self) -> _JobClient:
        client = self._jobs
        if client is None:
            client = self._jobs = _JobClient()
            await self.subscribe(client, types=ANSWER_TYPES, max_buffer=None)
        return client

    @asynccontextmanager
    async def thread_portal(self) -> AsyncIterator[BusPortal]:
        """Let threads use the bus: ``async with bus.thread_portal() as portal:``.

        The :class:`~anybus.BusPortal` is thread-safe: a thread calls
        ``portal.send(message)`` or ``portal.request(worker, payload)`` and blocks until the
        call, run in this event loop, returns. Leaving the block cancels calls still running
        (those threads get :class:`concurrent.futures.CancelledError`); calls made after it
        raise :class:`RuntimeError`.
        """
        async with BusPortal._open(self) as portal:
            yield portal

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
        return f"<{type(self).__name__} {state}, {count} subscriber{plural}, {queued} queued>"
