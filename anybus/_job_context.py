"""What a job handler is and what it gets: :class:`JobHandler`, :func:`job_handler` and the
:class:`JobContext` through which it answers while it runs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from anyio import CancelScope, ClosedResourceError

from ._exceptions import SerializationError
from ._messages import (
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
    JobStatus,
)
from ._registry import is_async_callable
from ._subscriber import BusLike, BusSubscriber

__all__ = [
    "JOB_NAME_ATTRIBUTE",
    "JobContext",
    "JobHandler",
    "check_job_name",
    "checked_handler",
    "checked_handlers",
    "declared_handlers",
    "job_handler",
    "send_response",
]

logger = logging.getLogger("anybus.jobs")


class JobHandler(Protocol):
    """A job handler: ``async def handler(job: JobContext) -> dict | None``.

    What it returns is the response of a completed job. It runs in the job's own cancel scope
    (``job.cancel_scope``): a cancel for the job cancels it there, like any cancellation.
    """

    def __call__(self, job: JobContext, /) -> Awaitable[Mapping[str, Any] | None]: ...


_F = TypeVar("_F", bound=Callable[..., Any])
JOB_NAME_ATTRIBUTE = "_anybus_job_name"


def job_handler(name: str | None = None) -> Callable[[_F], _F]:
    """Mark a method of a :class:`~anybus.JobWorker` subclass as the handler of jobs ``name``.

    ``name=None`` handles requests that name no job. The method is
    ``async def method(self, job: JobContext) -> dict | None``::

        class Transcriber(JobWorker):
            @job_handler("transcribe")
            async def transcribe(self, job: JobContext) -> dict[str, Any]:
                ...
    """

    check_job_name(name)

    def mark(method: _F) -> _F:
        checked_handler(name, method)
        setattr(method, JOB_NAME_ATTRIBUTE, name)
        return method

    return mark


class JobContext:
    """What a job handler gets: the request, and the way to answer while it runs.

    Attributes:
        id: the job's id.
        name: the job's name (``None`` if the request named none).
        payload: the request's payload (``{}`` if none).
        requester: the name the request came from; answers are addressed to it.
        request: the request message itself.
        cancel_scope: the job's own cancel scope; a :class:`~anybus.BusJobCancelMessage`
            for this job cancels it.
        last_update: the last update sent (``None`` before the first).

    It answers only while its handler runs: once the handler has returned (or raised, or was
    cancelled), :meth:`update` and the ``stream_*`` methods raise
    :exc:`anyio.ClosedResourceError` and send nothing, as a task the handler started and left
    running would otherwise answer a job its caller has already seen end.
    """

    def __init__(self, worker: BusSubscriber, bus: BusLike, request: BusJobRequestMessage) -> None:
        self.id = request.job_id
        self.name = request.job_name
        self.payload: dict[str, Any] = dict(request.payload or {})
        self.requester = request.source
        self.request = request
        self.cancel_scope = CancelScope()
        self.last_update: dict[str, Any] | None = None
        self.cancel_reason: str | None = None
        self._worker = worker
        self._bus = bus
        self._ended = False

    def _end(self) -> None:
        """Mark the job ended (its handler is done): from now on it answers nothing.

        Called by the worker when the handler is done; idempotent.
        """
        self._ended = True

    def _check_running(self, what: str) -> None:
        if self._ended:
            raise ClosedResourceError(
                f"job {self.id} ({self.name!r}) has ended, so its {what} was not sent: a "
                f"JobContext answers only while its handler runs (await the tasks the handler "
                f"starts before it returns)"
            )

    async def update(
        self, update: Mapping[str, Any] | None = None, *, urgent: bool = False
    ) -> None:
        """Send a progress update to the caller (``urgent``: with system priority).

        It is also what the worker answers an update request with, until the next one.
        Sending can block only as :meth:`WorkerBus.send <anybus.WorkerBus.send>` does; when
        the job is cancelled meanwhile, the update may or may not have gone out. After the
        handler has returned it raises :exc:`anyio.ClosedResourceError` and sends nothing.
        """
        self._check_running("update")
        _check_mapping("update", update)
        data = dict(update or {})
        self.last_update = data
        kind = BusJobUpdateUrgentMessage if urgent else BusJobUpdateMessage
        await self._bus.send(
            kind(source=self._worker.name, target=self.requester, job_id=self.id, update=data)
        )

    async def stream_start(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Open a streamed answer, with optional metadata.

        Like :meth:`update`: if the job is cancelled while this sends, the message may or may
        not have gone out.
        """
        await self._send_stream(BusJobStreamStartMessage, metadata)

    async def stream_data(self, chunk: Mapping[str, Any]) -> None:
        """Send one chunk of the streamed answer.

        Like :meth:`update`: if the job is cancelled while this sends, the message may or may
        not have gone out.
        """
        await self._send_stream(BusJobStreamDataMessage, chunk)

    async def stream_end(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Close the streamed answer, with optional final metadata.

        Like :meth:`update`: if the job is cancelled while this sends, the message may or may
        not have gone out.
        """
        await self._send_stream(BusJobStreamEndMessage, metadata)

    async def _send_stream(
        self,
        kind: type[BusJobStreamStartMessage | BusJobStreamDataMessage | BusJobStreamEndMessage],
        data: Mapping[str, Any] | None,
    ) -> None:
        self._check_running(f"{kind.__name__} message")
        _check_mapping("chunk" if kind is BusJobStreamDataMessage else "metadata", data)
        await self._bus.send(
            kind(
                source=self._worker.name,
                target=self.requester,
                job_id=self.id,
                data=dict(data) if data is not None else None,
            )
        )

    def __repr__(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return f"<JobContext {self.id}{name} for {self.requester!r}>"


def _check_mapping(name: str, value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping (a dict) or None, got {value!r}")


async def send_response(
    bus: BusLike,
    worker: str,
    request: BusJobRequestMessage,
    status: JobStatus,
    response: dict[str, Any] | None,
) -> None:
    """Answer ``request`` on behalf of ``worker``: the job ended with ``status``.

    A response that cannot be encoded is replaced by an ``error`` response saying so; a send
    that fails is logged, not raised (the worker goes on with its other jobs).
    """
    answer = BusJobResponseMessage(
        source=worker,
        target=request.source,
        job_id=request.job_id,
        status=status,
        response=response,
    )
    try:
        try:
            await bus.send(answer)
        except SerializationError as exc:
            # The handler's response does not fit the wire: say so, rather than nothing.
            logger.error("%r: job %s: response not sent: %s", worker, request.job_id, exc)
            await bus.send(
                BusJobResponseMessage(
                    source=worker,
                    target=request.source,
                    job_id=request.job_id,
                    status=JobStatus.ERROR,
                    response={"error": f"the job's response could not be sent: {exc}"},
                )
            )
    except Exception as exc:
        logger.error(
            "%r: could not answer job %s (%s)", worker, request.job_id, status, exc_info=exc
        )


def check_job_name(name: object) -> None:
    """Refuse a job name that is not a str or None (a decorator used without its call, say)."""
    if callable(name):
        raise TypeError(
            f"a job name must be a str or None, got the function {name!r}: the decorator "
            f"takes the name, so write @job_handler() (or @worker.job()) for requests that "
            f"name no job, or @job_handler('name')"
        )
    if name is not None and not isinstance(name, str):
        raise TypeError(f"a job name must be a str or None, got {name!r}")


def declared_handlers(worker: object) -> dict[str | None, JobHandler]:
    """The handlers ``worker``'s class declares with :func:`job_handler`, bound to it (a
    subclass's method in place of its base's for one name)."""
    found: dict[str | None, JobHandler] = {}
    for klass in reversed(type(worker).__mro__):
        for attribute, value in vars(klass).items():
            if hasattr(value, JOB_NAME_ATTRIBUTE):
                name: str | None = getattr(value, JOB_NAME_ATTRIBUTE)
                found[name] = checked_handler(name, getattr(worker, attribute))
    return found


def checked_handlers(handlers: object) -> dict[str | None, JobHandler]:
    """``handlers`` (JobWorker's option: job name to handler, or None), each checked."""
    if handlers is None:
        return {}
    if not isinstance(handlers, Mapping):
        raise TypeError(
            f"handlers takes a mapping of job name to handler, as handlers={{'name': handler}} "
            f"(None: requests that name no job), got {handlers!r}"
        )
    return {name: checked_handler(name, handler) for name, handler in handlers.items()}


def checked_handler(name: str | None, handler: JobHandler) -> JobHandler:
    """``handler``, if the worker can await it; refused at once otherwise."""
    check_job_name(name)
    if not is_async_callable(handler):
        raise TypeError(
            f"the handler {getattr(handler, '__qualname__', None) or handler!r} for jobs named "
            f"{name!r} is not a coroutine function: "
            f"job handlers must be 'async def handler(job)' (the worker awaits them)"
        )
    return handler
