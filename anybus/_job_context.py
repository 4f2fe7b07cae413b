"""What a job handler is and what it gets: :class:`JobHandler`, :func:`job_handler` and the
:class:`JobContext` through which it answers while it runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar

from anyio import CancelScope

from ._messages import (
    BusJobRequestMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
)
from ._subscriber import BusLike, BusSubscriber

__all__ = ["JOB_NAME_ATTRIBUTE", "JobContext", "JobHandler", "job_handler"]


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

    def mark(method: _F) -> _F:
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

    async def update(
        self, update: Mapping[str, Any] | None = None, *, urgent: bool = False
    ) -> None:
        """Send a progress update to the caller (``urgent``: with system priority).

        It is also what the worker answers an update request with, until the next one.
        Sending can block only as :meth:`WorkerBus.send <anybus.WorkerBus.send>` does; when
        the job is cancelled meanwhile, the update may or may not have gone out.
        """
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
