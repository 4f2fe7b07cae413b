"""A job's answers: its updates, or the chunks of its streamed answer, read as they come; and
its result."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, final

from anyio.lowlevel import checkpoint

from ._exceptions import JobError
from ._messages import JobStatus

__all__ = ["Answers", "JobResult"]


@dataclass(frozen=True)
class JobResult:
    """What a worker answered when a job completed.

    Attributes:
        job_id: the job's id.
        worker: the name of the worker that ran it.
        status: always :attr:`JobStatus.COMPLETED` (other endings raise :class:`JobError`).
        response: the response dict the worker sent (``{}`` if none).
    """

    job_id: str
    worker: str
    status: JobStatus
    response: dict[str, Any] = field(default_factory=dict)


@final
class Answers(AsyncIterator[dict[str, Any]]):
    """An iterator over one kind of a job's answers (updates, or stream chunks).

    ``ended()`` says whether that kind has ended (a stream's end message came);
    ``ending()`` whether the job has, and the error it ended with; ``changed()`` waits for the
    job's next answer. A plain class rather than an async generator: one left unfinished needs
    no closing.
    """

    def __init__(
        self,
        queue: deque[dict[str, Any]],
        ended: Callable[[], bool],
        ending: Callable[[], tuple[bool, JobError | None]],
        changed: Callable[[], Awaitable[None]],
    ) -> None:
        self._queue = queue
        self._ended = ended
        self._ending = ending
        self._changed = changed

    async def __anext__(self) -> dict[str, Any]:
        await checkpoint()  # a cancellation point even when an answer is waiting
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._ended():
                raise StopAsyncIteration
            done, error = self._ending()
            if done:
                if error is not None:
                    raise error
                raise StopAsyncIteration
            await self._changed()
