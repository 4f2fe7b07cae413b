"""The worker side of jobs: :class:`JobWorker`, job handlers and their :class:`JobContext`.

A job worker takes the :class:`~anybus.BusJobRequestMessage` addressed to it, queues it, and runs
it — at most ``concurrency`` at a time, in arrival order — in one of ``concurrency`` slot tasks,
inside a cancel scope of its own, in the task group that :meth:`JobWorker.run_in_bus` keeps in
the bus's scope.
Its data handler only queues, so the worker keeps reading its inbox while jobs run: a
:class:`~anybus.BusJobCancelMessage` (a system message) cancels exactly one job's scope, and a
:class:`~anybus.BusJobUpdateRequestMessage` is answered at once.
"""

from __future__ import annotations

import logging
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any, Final

from anyio import CancelScope, Event, create_task_group, current_time, get_cancelled_exc_class

from ._bus import current_bus
from ._exceptions import JobFailed
from ._hooks import WorkerJobTrace, state
from ._job_client import JOB_ANSWER_TYPES
from ._job_context import (
    JobContext,
    JobHandler,
    check_job_name,
    checked_handler,
    checked_handlers,
    declared_handlers,
    send_response,
)
from ._messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusMessage,
    BusWorkerGoodbyeMessage,
    BusWorkerPresenceMessage,
    BusWorkerPresenceQueryMessage,
    JobStatus,
)
from ._presence import Announcer, announcing, check_presence
from ._subscriber import BusLike, BusSubscriber

__all__ = ["JobWorker"]

logger = logging.getLogger("anybus.jobs")


#: What never goes to :meth:`JobWorker.on_other_message`.
_NOT_OTHER: Final = (
    *JOB_ANSWER_TYPES,
    BusWorkerPresenceMessage,
    BusWorkerPresenceQueryMessage,
    BusWorkerGoodbyeMessage,
)

#: Cancels for jobs not seen yet that a worker remembers, in case the request comes after.
EARLY_CANCELS: Final = 10_000

#: Seconds a job's final answer may take to send, shielded, when the worker is stopped.
STOP_ANSWER_TIMEOUT: Final = 2.0


class JobWorker(BusSubscriber):
    """A subscriber that runs jobs: subscribe it to a bus, callers ``bus.request()`` it.

    Declare handlers by job name with :meth:`job` (a decorator), the ``handlers`` mapping, or
    :func:`job_handler` on methods of a subclass. A handler returns the response dict (or
    ``None``) for status ``completed``; raising :class:`~anybus.JobFailed` answers ``failed``
    (a domain error, with its text and ``response``); any other exception answers ``error``
    (and is logged with its traceback); a cancel for the job answers ``cancelled``. Requests
    for a job name without a handler are answered ``error``.

    At most ``concurrency`` jobs run at a time (default 1: a sequential worker); further
    requests wait in arrival order. Each job runs in one of ``concurrency`` slot tasks, in
    its own cancel scope, inside :meth:`run_in_bus`: stopping the bus or unsubscribing the
    worker cancels the running jobs, each answered ``cancelled`` (shielded, for at most two
    seconds); queued requests stay queued until the worker runs again.

    The worker handles only requests addressed to its name, and cancels and update requests
    for jobs it knows. It serves one bus at a time: subscribed to a second bus as well, it
    answers requests from that one ``error`` (subscribe a JobWorker per bus). Override
    :meth:`on_other_message` to handle the other messages (data messages one at a time, as
    for any subscriber).

    It announces itself as it starts, every ``heartbeat`` seconds, and as it stops (see
    :func:`~anybus.worker_directory`); workers of one ``pool`` share the pool's jobs.

    Args:
        name: the worker's name on the bus; requests target it.
        handlers: job name (``None``: requests that name none) to handler.
        concurrency: how many jobs may run at once.
        pool: the pool this worker is a member of (``None``: none).
        presence: announce this worker (``False``: callers must use ``presence="off"``).
        heartbeat: seconds between two announcements; a worker is declared gone after
            three intervals without one.

    Raises:
        ValueError: if ``concurrency`` is below 1 or ``heartbeat`` is not positive.
    """

    def __init__(
        self,
        name: str,
        *,
        handlers: Mapping[str | None, JobHandler] | None = None,
        concurrency: int = 1,
        pool: str | None = None,
        presence: bool = True,
        heartbeat: float = 1.0,
    ) -> None:
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        check_presence(pool=pool, heartbeat=heartbeat, presence=presence)
        self.name = name
        self.concurrency = concurrency
        self.pool = pool
        self.presence = presence
        self.heartbeat = float(heartbeat)
        self.incarnation = secrets.token_hex(6)  # tells it from another of its name
        self._handlers = declared_handlers(self)
        self._handlers.update(checked_handlers(handlers))
        self._queue: deque[BusJobRequestMessage] = deque()
        self._cancelled_queued: deque[tuple[BusJobRequestMessage, str]] = deque()
        self._cancelled_early: OrderedDict[str, str] = OrderedDict()
        self._running: dict[str, JobContext] = {}
        self._update_requests: deque[BusJobUpdateRequestMessage] = deque()
        self._wakeup = Event()
        self._serving: BusLike | None = None  # while run_in_bus() runs
        self._idle_slots: deque[Event] = deque()  # parked slots, each waiting for a request
        self.completed = self.failed = self.cancelled = 0

    def job(self, name: str | None = None) -> Callable[[JobHandler], JobHandler]:
        """Register the decorated ``async def handler(job)`` for jobs named ``name``."""

        check_job_name(name)

        def register(handler: JobHandler) -> JobHandler:
            self._handlers[name] = checked_handler(name, handler)
            return handler

        return register

    def is_busy(self) -> bool:
        """Whether jobs are running or queued, or answers are still to be sent."""
        return bool(
            self._running or self._queue or self._cancelled_queued or self._update_requests
        )

    @property
    def running_jobs(self) -> list[str]:
        """The ids of the jobs running now."""
        return list(self._running)

    @property
    def queued_jobs(self) -> list[str]:
        """The ids of the jobs waiting for a free slot, in the order they will start."""
        return [request.job_id for request in self._queue]

    # --- the inbox ------------------------------------------------------------------------

    async def on_bus_message(self, message: BusMessage) -> None:
        """Queue job requests, cancel jobs, take update requests; pass on the rest."""
        if isinstance(message, BusJobRequestMessage):
            if message.target != self.name:
                return
            if not await self._from_served_bus(message):
                return
            if message.job_id in self._running or message.job_id in self.queued_jobs:
                logger.warning(
                    "%r: job %s is already running or queued: request ignored",
                    self.name,
                    message.job_id,
                )
                return
            reason = self._cancelled_early.pop(message.job_id, None)
            if reason is not None:
                # Its cancel (a system message) overtook it: answer without running it.
                self._cancelled_queued.append((message, reason))
                self._wake()
                return
            self._queue.append(message)
            self._wake_slot()
        elif isinstance(message, BusJobCancelMessage):
            if message.target == self.name and await self._from_served_bus(message):
                self._cancel(message)
        elif isinstance(message, BusJobUpdateRequestMessage):
            if message.target == self.name and await self._from_served_bus(message):
                self._update_requests.append(message)
                self._wake()
        elif not isinstance(message, _NOT_OTHER):
            # (answers to jobs — this worker's own among them — are the callers' business;
            # presence is the presence hub's)
            await self.on_other_message(message)

    async def _from_served_bus(self, message: BusMessage) -> bool:
        """Whether ``message`` came from the bus this worker serves; refuse it if not."""
        bus = current_bus()
        serving = self._serving
        if serving is None or bus is None or bus is serving:
            return True
        logger.error(
            "%r serves %r: %s from %r refused (a JobWorker serves one bus)",
            self.name,
            serving,
            message.name,
            bus,
        )
        if isinstance(message, BusJobRequestMessage):
            error = f"worker {self.name!r} serves another bus; subscribe a JobWorker per bus"
            await self._answer(bus, message, JobStatus.ERROR, {"error": error})
        return False

    async def on_other_message(self, message: BusMessage) -> None:
        """Handle a message that is not about jobs; the default ignores it.

        Job messages never come here: requests, cancels and update requests go to the jobs,
        answers (updates, stream chunks, responses) to the callers; nor do presence
        messages.
        """

    def _wake(self) -> None:
        self._wakeup.set()

    def _cancel(self, message: BusJobCancelMessage) -> None:
        job = self._running.get(message.job_id)
        if job is not None:
            job.cancel_reason = message.reason or "cancelled"
            job.cancel_scope.cancel(reason=f"anybus: job {job.id} cancelled")
            logger.debug("%r: job %s cancelled (%s)", self.name, job.id, job.cancel_reason)
            return
        for request in self._queue:
            if request.job_id == message.job_id:
                self._queue.remove(request)
                self._cancelled_queued.append((request, message.reason or "cancelled"))
                self._wake()
                return
        # Not seen yet: a cancel is a system message, so it can overtake its own request in
        # this worker's inbox. Remember it (a bounded number of them) for when that comes.
        self._cancelled_early[message.job_id] = message.reason or "cancelled"
        while len(self._cancelled_early) > EARLY_CANCELS:
            self._cancelled_early.popitem(last=False)

    # --- running jobs ---------------------------------------------------------------------

    async def run_in_bus(self, bus: BusLike) -> None:
        """Run the jobs, ``concurrency`` at a time, until the bus stops the worker.

        Each of ``concurrency`` slots is a task of the task group this keeps open, and runs
        one job at a time, each in a cancel scope of its own. Cancelling it (the bus does, on
        ``stop()`` and ``unsubscribe()``) cancels the running jobs, each answered
        ``cancelled``; queued requests stay queued.
        """
        if self._serving is not None:
            logger.error("%r already serves %r: a JobWorker serves one bus", self.name, bus)
            return
        self._serving = bus
        try:
            async with announcing(bus, self._announcer()) as announce, create_task_group() as tg:
                for slot in range(self.concurrency):
                    tg.start_soon(
                        self._slot, bus, name=f"anybus job slot {self.name!r} #{slot + 1}"
                    )
                announce()
                while True:
                    self._wakeup = Event()
                    await self._serve_round(bus)
                    if not self.is_busy():
                        bus.notify_idle()
                    await self._wakeup.wait()
        finally:
            self._serving = None

    def _announcer(self) -> Announcer | None:
        jobs = tuple(sorted("" if name is None else name for name in self._handlers))
        load = lambda: len(self._running) + len(self._queue)  # noqa: E731
        return Announcer(self, jobs=jobs, load=load) if self.presence else None

    async def _slot(self, bus: BusLike) -> None:
        """Run queued jobs one after the other; park while there are none."""
        while True:
            if not self._queue:
                parked = Event()
                self._idle_slots.append(parked)
                try:
                    await parked.wait()
                finally:
                    if parked in self._idle_slots:
                        self._idle_slots.remove(parked)
                continue
            job = JobContext(self, bus, self._queue.popleft())
            self._running[job.id] = job
            await self._run_job(bus, job)

    def _wake_slot(self) -> None:
        """Wake a parked slot for a newly queued request."""
        if self._idle_slots:
            self._idle_slots.popleft().set()

    async def _serve_round(self, bus: BusLike) -> None:
        while self._cancelled_queued:
            request, reason = self._cancelled_queued.popleft()
            self.cancelled += 1
            await self._answer(bus, request, JobStatus.CANCELLED, {"reason": reason})
        while self._update_requests:
            await self._report(bus, self._update_requests.popleft())

    async def _report(self, bus: BusLike, request: BusJobUpdateRequestMessage) -> None:
        job = self._running.get(request.job_id)
        report: dict[str, Any]
        if job is not None:
            report = job.last_update if job.last_update is not None else {"state": "running"}
        else:
            queued = self.queued_jobs
            if request.job_id in queued:
                report = {"state": "queued", "position": queued.index(request.job_id) + 1}
            else:
                report = {"state": "unknown"}
        try:
            await bus.send(
                BusJobUpdateMessage(
                    source=self.name, target=request.source, job_id=request.job_id, update=report
                )
            )
        except Exception as exc:
            logger.error(
                "%r: could not answer an update request for job %s",
                self.name,
                request.job_id,
                exc_info=exc,
            )

    async def _run_job(self, bus: BusLike, job: JobContext) -> None:
        tracer = state.jobs
        traced = nullcontext(None) if tracer is None else tracer.worker_job(self.name, job)
        with traced as trace:
            await self._run_traced(bus, job, trace)

    async def _run_traced(
        self, bus: BusLike, job: JobContext, trace: WorkerJobTrace | None
    ) -> None:
        outcome: tuple[JobStatus, dict[str, Any] | None] | None = None
        try:
            outcome = await self._outcome(job)
            self._count(outcome[0], trace)
            await self._answer(bus, job.request, *outcome)
        except get_cancelled_exc_class():
            # The worker itself is stopping: still answer, shielded and bounded.
            self._running.pop(job.id, None)
            if outcome is None:
                outcome = (JobStatus.CANCELLED, {"reason": "the worker stopped"})
                self._count(outcome[0], trace)
            with CancelScope(shield=True, deadline=current_time() + STOP_ANSWER_TIMEOUT):
                await self._answer(bus, job.request, *outcome)
            raise
        finally:
            if not self.is_busy():
                bus.notify_idle()

    async def _outcome(self, job: JobContext) -> tuple[JobStatus, dict[str, Any] | None]:
        """Run the job's handler in the job's scope; return the status and response to send."""
        handler = self._handlers.get(job.name)
        if handler is None:
            self._running.pop(job.id, None)
            error = f"worker {self.name!r} has no handler for job {job.name!r}"
            return JobStatus.ERROR, {"error": error}
        status, response = JobStatus.COMPLETED, None
        with job.cancel_scope:
            try:
                result = await handler(job)
                if result is not None and not isinstance(result, Mapping):
                    raise TypeError(
                        f"the handler returned {result!r}: a job handler returns a dict (its "
                        f"response) or None"
                    )
                response = dict(result) if result is not None else None
            except JobFailed as exc:
                status, response = JobStatus.FAILED, {**exc.response, "error": str(exc)}
            except Exception as exc:
                logger.error("%r: job %s (%r) raised", self.name, job.id, job.name, exc_info=exc)
                status, response = JobStatus.ERROR, {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                job._end()
        if job.cancel_scope.cancelled_caught:
            status, response = JobStatus.CANCELLED, {"reason": job.cancel_reason or "cancelled"}
        self._running.pop(job.id, None)
        return status, response

    def _count(self, status: JobStatus, trace: WorkerJobTrace | None) -> None:
        if trace is not None:
            trace.outcome(status.value)
        if status is JobStatus.COMPLETED:
            self.completed += 1
        elif status is JobStatus.CANCELLED:
            self.cancelled += 1
        else:
            self.failed += 1

    async def _answer(
        self,
        bus: BusLike,
        request: BusJobRequestMessage,
        status: JobStatus,
        response: dict[str, Any] | None,
    ) -> None:
        await send_response(bus, self.name, request, status, response)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r}: {len(self._running)} running, "
            f"{len(self._queue)} queued>"
        )
