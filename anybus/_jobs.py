"""The calling side of jobs: ``bus.request()`` and ``bus.job()``.

A job is a :class:`~anybus.BusJobRequestMessage` answered by messages that carry its ``job_id``:
updates, stream chunks and, last, a response. Each bus that calls jobs has one job client, a
subscriber that routes those answers to the :class:`Job` waiting for them, by id; answers for
ids nobody waits for (any more) are ignored. A job is a scope: leaving
``async with bus.job(...)`` before the answer came — by cancellation, a timeout or an
exception — sends a :class:`~anybus.BusJobCancelMessage` to the worker.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from anyio import CancelScope, Event, current_time, get_cancelled_exc_class

from ._checks import check_seconds
from ._exceptions import (
    BusStateError,
    JobCancelled,
    JobError,
    JobFailed,
    SerializationError,
    WorkerUnavailable,
)
from ._hooks import CallerJobTrace, state
from ._job_answers import Answers, JobResult
from ._job_client import JobClient, job_client
from ._messages import (
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateRequestMessage,
    BusJobUpdateUrgentMessage,
    BusMessage,
    JobStatus,
)
from ._presence import presence_hub

if TYPE_CHECKING:
    from ._bus import WorkerBus

__all__ = ["Job", "JobResult", "Presence"]

#: How a job looks for its worker before sending: ``"wait"`` until it (or a member of the
#: pool of that name) is present; ``"require"`` it present now (fail fast); ``"off"``: send
#: without looking, for workers that do not announce themselves.
Presence = Literal["wait", "require", "off"]
_PRESENCE_MODES: Final = ("wait", "require", "off")

logger = logging.getLogger("anybus.jobs")

#: Seconds that sending the automatic cancel may take, shielded, when a job's scope is left early.
CANCEL_TIMEOUT: Final = 5.0

_Response = BusJobResponseMessage | BusJobResponseUrgentMessage


class Job:
    """A job sent to a worker, as seen by the caller: ``async with bus.job(...) as job:``.

    Read its progress with :meth:`updates`, a streamed answer with :meth:`stream`, and its
    outcome with :meth:`result`; ask for progress with :meth:`request_update`. What the worker
    sends is kept until it is read (or the job's block is left), in arrival order.

    Leaving the ``async with`` block before the job has ended — because the block was
    cancelled, timed out, raised, or simply did not wait — sends a
    :class:`~anybus.BusJobCancelMessage` to the worker (shielded, for at most
    ``cancel_timeout`` seconds) and forgets the job; answers that arrive later are ignored.
    """

    def __init__(
        self,
        bus: WorkerBus,
        worker: str,
        payload: Mapping[str, Any] | None,
        *,
        job_name: str | None,
        source: str | None,
        job_id: str | None,
        cancel_timeout: float,
        presence: Presence = "wait",
    ) -> None:
        if presence not in _PRESENCE_MODES:
            raise ValueError(
                f"presence must be one of {', '.join(map(repr, _PRESENCE_MODES))}, got "
                f"{presence!r}"
            )
        if job_id is not None and (not isinstance(job_id, str) or not job_id):
            raise ValueError(
                f"job_id must be a non-empty string (or None: a random one), got {job_id!r}"
            )
        self.id = job_id or secrets.token_hex(8)
        #: The worker the job goes to (for a pool: the member chosen, once entered).
        self.worker = worker
        #: The name the job was asked of: the worker's, or its pool's.
        self.requested = worker
        self._presence = presence
        self._incarnation: str | None = None  # of the worker it went to, when presence is on
        self.job_name = job_name
        self.payload = dict(payload) if payload is not None else None
        #: The name answers are addressed to (by default the bus's job client's name).
        self.source = source or ""
        self._bus = bus
        self._client: JobClient | None = None
        # A shielded wait, so it must end: a finite number (0: send without waiting).
        self._cancel_timeout = check_seconds("cancel_timeout", cancel_timeout, zero=True)
        if self._cancel_timeout == math.inf:
            raise ValueError("cancel_timeout must be finite: the cancel is sent shielded, got inf")
        self._updates: deque[dict[str, Any]] = deque()
        self._chunks: deque[dict[str, Any]] = deque()
        self._stream_ended = False
        self._response: _Response | None = None
        self._error: JobError | None = None
        self._event: Event | None = None  # set by the next answer, created by a waiter
        self._sent = False
        self._cancel_sent = False
        #: Metadata of the stream's start message (``None`` until it came, or if it had none).
        self.stream_metadata: dict[str, Any] | None = None
        #: Metadata of the stream's end message (``None`` until it came, or if it had none).
        self.stream_end_metadata: dict[str, Any] | None = None
        self._trace: CallerJobTrace | None = None  # while an instrumentation traces it
        self._looking = False  # while entering waits for the worker to be present

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._client is not None:
            raise RuntimeError(f"{self!r} was already entered; a job runs once")
        tracer = state.jobs
        if tracer is None:
            return await self._enter()
        trace = self._trace = tracer.caller_job(self)
        try:
            return await self._enter()
        except BaseException as exc:
            self._trace = None
            cancelled = isinstance(exc, get_cancelled_exc_class())
            if isinstance(exc, WorkerUnavailable) or (cancelled and self._looking):
                outcome = "unavailable"  # (a request() that timed out waiting for the worker)
            else:
                outcome = "abandoned" if cancelled else "not-sent"
            trace.ended(outcome, exc)
            raise

    async def _enter(self) -> Self:
        if not self._bus.running:
            raise BusStateError(f"{self._bus!r} is not running: run jobs in 'async with bus:'")
        if self._presence != "off":
            # Before anything is registered or sent: a cancelled wait did nothing.
            self._looking = True  # (left true if the wait fails: the failure is its)
            await self._find_worker()
            self._looking = False
        client = self._client = await job_client(self._bus)
        if self.id in client.pending:
            raise ValueError(f"a job with id {self.id!r} is already outstanding")
        self.source = self.source or client.name
        # Registered before the request goes out, so that no answer can come too early.
        client.pending[self.id] = self
        try:
            await self._send(
                BusJobRequestMessage(
                    source=self.source,
                    target=self.worker,
                    job_id=self.id,
                    job_name=self.job_name,
                    payload=self.payload,
                )
            )
            self._sent = True
        except BaseException as exc:
            try:
                if not isinstance(exc, SerializationError):
                    # The request may have gone out all the same (a cancelled or failed send
                    # cannot tell): cancel it at the worker, so that it does not run for nobody.
                    await self._send_cancel("the request was interrupted")
            finally:
                del client.pending[self.id]
            raise
        logger.debug("job %s sent to %r", self.id, self.worker)
        return self

    async def _find_worker(self) -> None:
        hub = await presence_hub(self._bus)
        directory = hub.directory
        if self._presence == "wait":
            info = await directory.wait_for(self.requested)
        else:
            info = await directory.wait_for(self.requested, timeout=hub.grace())
        directory.assign(info)
        self.worker = info.name
        self._incarnation = info.incarnation
        hub.follow(self)

    def worker_gone(self, worker: str, incarnation: str, why: str) -> None:
        """Fail the job if it went to this run of ``worker`` (told by the presence hub, or by
        the job client on the worker's goodbye)."""
        if worker == self.worker and incarnation == self._incarnation:
            self._fail(
                WorkerUnavailable(
                    f"worker {self.worker!r} went away while job {self.id} was outstanding: {why}",
                    job_id=self.id,
                    worker=self.worker,
                )
            )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._response is None:
                # No final answer from the worker (even if this side already gave up on the
                # job, say because the worker announced an error): cancel it there.
                await self._send_cancel("the caller left the job's scope")
        finally:
            if self._client is not None:
                self._client.pending.pop(self.id, None)
            trace, self._trace = self._trace, None
            if trace is not None:
                trace.ended(self._outcome(), exc)

    def _outcome(self) -> str:
        """How the job ended, for its trace: the worker's status, ``unavailable`` (the worker
        went away), ``error`` (it announced one), or ``abandoned`` (the caller left first)."""
        if self._response is not None:
            return self._response.status.value
        if isinstance(self._error, WorkerUnavailable):
            return "unavailable"
        return "abandoned" if self._error is None else "error"

    async def _send_cancel(self, reason: str) -> None:
        if self._cancel_sent:
            return
        self._cancel_sent = True
        # Shielded, so that a cancelled caller still tells the worker; bounded, so that an
        # unreachable transport cannot hold the caller forever.
        with CancelScope(shield=True, deadline=current_time() + self._cancel_timeout) as scope:
            try:
                await self._send(
                    BusJobCancelMessage(
                        source=self.source, target=self.worker, job_id=self.id, reason=reason
                    )
                )
            except Exception as exc:
                logger.warning("could not cancel job %s at %r: %s", self.id, self.worker, exc)
        if scope.cancelled_caught:
            logger.warning(
                "could not cancel job %s at %r within %s s", self.id, self.worker, scope.deadline
            )

    # --- answers --------------------------------------------------------------------------

    @property
    def sent(self) -> bool:
        """Whether the request went out."""
        return self._sent

    @property
    def done(self) -> bool:
        """Whether the job has ended: its response came, or it failed on this side."""
        return self._response is not None or self._error is not None

    def _wake(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    def _feed(self, message: BusMessage) -> None:
        if self.done:
            return
        if self._trace is not None:
            self._trace.answered(message)
        if isinstance(message, BusJobUpdateMessage | BusJobUpdateUrgentMessage):
            self._updates.append(message.update or {})
        elif isinstance(message, BusJobStreamDataMessage):
            self._chunks.append(message.data or {})
        elif isinstance(message, BusJobStreamStartMessage):
            self.stream_metadata = message.data
        elif isinstance(message, BusJobStreamEndMessage):
            self._stream_ended = True
            self.stream_end_metadata = message.data
        elif isinstance(message, BusJobResponseMessage | BusJobResponseUrgentMessage):
            self._response = message
            if message.status is not JobStatus.COMPLETED:
                self._error = self._error_for(message)
        self._wake()

    def _fail(self, error: JobError) -> None:
        if not self.done:
            self._error = error
            self._wake()

    def _error_for(self, response: _Response) -> JobError:
        details = dict(response.response or {})
        what = details.get("error") or details.get("reason") or "no reason given"
        kind: type[JobError] = JobError
        if response.status is JobStatus.FAILED:
            kind = JobFailed
        elif response.status is JobStatus.CANCELLED:
            kind = JobCancelled
        return kind(
            f"job {self.id} at {self.worker!r} ended {response.status.value}: {what}",
            job_id=self.id,
            worker=self.worker,
            status=response.status,
            response=details,
        )

    async def _changed(self) -> None:
        if self._client is None:
            raise RuntimeError(f"{self!r} was never sent: use 'async with open_job(...) as job:'")
        event = self._event
        if event is None:
            event = self._event = Event()
        await event.wait()

    async def result(self) -> JobResult:
        """Wait for the job's response and return it.

        Raises:
            JobFailed: if the worker answered ``failed``.
            JobCancelled: if the worker answered ``cancelled``.
            JobError: if the worker answered ``error``, or announced an error of its own while
                the job was outstanding.

        Cancelling the wait leaves the job running; leaving the job's block then cancels it.
        """
        while True:
            if self._error is not None:
                raise self._error
            if self._response is not None:
                return JobResult(
                    job_id=self.id,
                    worker=self.worker,
                    status=self._response.status,
                    response=dict(self._response.response or {}),
                )
            await self._changed()

    def updates(self) -> AsyncIterator[dict[str, Any]]:
        """Iterate over the progress updates the worker sends (their ``update`` dicts).

        Updates come in the order the worker sent them (urgent ones may overtake). The
        iteration ends when the job completes, after the updates sent before its response.
        Any number of iterators may be taken; each update goes to one of them.

        Cancelling a wait for the next update takes nothing out and leaves the job running.

        Raises:
            JobError: (or a subclass) as :meth:`result` would, once the job has ended otherwise.
        """
        return Answers(self._updates, lambda: False, self._ending, self._changed)

    def stream(self) -> AsyncIterator[dict[str, Any]]:
        """Iterate over the chunks of the worker's streamed answer (their ``data`` dicts).

        The iteration ends at the stream's end message. :attr:`stream_metadata` holds the
        start message's metadata once the first chunk is read, :attr:`stream_end_metadata`
        the end message's once the iteration is over. Cancelling a wait for the next chunk
        takes nothing out and leaves the job running.

        Raises:
            JobError: (or a subclass) if the job ends otherwise than completed before the
                stream's end.
        """
        return Answers(self._chunks, lambda: self._stream_ended, self._ending, self._changed)

    def _ending(self) -> tuple[bool, JobError | None]:
        return self.done, self._error

    # --- requests to the worker -----------------------------------------------------------

    async def request_update(self) -> None:
        """Ask the worker to report the job's progress; the answer arrives in :meth:`updates`.

        A worker running the job answers with its last update (``{"state": "running"}``
        before the first), one holding it queued with ``{"state": "queued", "position": N}``,
        one that does not know the job with ``{"state": "unknown"}``. Cancelled, it may or may
        not have sent the request (as :meth:`WorkerBus.send`); the job is not affected.
        """
        await self._send(
            BusJobUpdateRequestMessage(source=self.source, target=self.worker, job_id=self.id)
        )

    async def _send(self, message: BusMessage) -> None:
        """Send one of the job's own messages: while traced, within the job's span."""
        if self._trace is None:
            await self._bus.send(message)
        else:
            with self._trace.current():
                await self._bus.send(message)

    async def cancel(self, reason: str | None = None) -> None:
        """Ask the worker to cancel the job now; it answers ``cancelled`` (see :meth:`result`).

        A no-op once the job has ended or a cancel was sent. The send is shielded from
        cancellation (for at most ``cancel_timeout`` seconds), so cancelling this call still
        cancels the job.
        """
        if not self.done:
            await self._send_cancel(reason or "cancelled by the caller")

    def __repr__(self) -> str:
        state = "done" if self.done else ("running" if self._sent else "new")
        name = f" {self.job_name!r}" if self.job_name else ""
        return f"<Job {self.id}{name} at {self.worker!r} {state}>"
