"""The subscriber that routes job answers to the jobs waiting for them (one per bus)."""

from __future__ import annotations

import logging
import secrets
import weakref
from typing import TYPE_CHECKING, Final, Protocol

from ._exceptions import JobError
from ._messages import (
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
    BusJobStreamStartMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
    BusMessage,
    BusWorkerErrorMessage,
    BusWorkerGoodbyeMessage,
    BusWorkerLocalErrorMessage,
    JobStatus,
)
from ._subscriber import BusSubscriber

if TYPE_CHECKING:
    from ._bus import WorkerBus

__all__ = ["ANSWER_TYPES", "JOB_ANSWER_TYPES", "JobClient", "job_client"]

logger = logging.getLogger("anybus.jobs")

#: The answers of a worker to a job's caller.
JOB_ANSWER_TYPES: Final[tuple[type[BusMessage], ...]] = (
    BusJobResponseMessage,
    BusJobResponseUrgentMessage,
    BusJobUpdateMessage,
    BusJobUpdateUrgentMessage,
    BusJobStreamStartMessage,
    BusJobStreamDataMessage,
    BusJobStreamEndMessage,
)
#: What a job client routes: the answers, and the worker errors that fail outstanding jobs.
ANSWER_TYPES: Final = (
    *JOB_ANSWER_TYPES,
    BusWorkerErrorMessage,
    BusWorkerLocalErrorMessage,
    BusWorkerGoodbyeMessage,
)


class Routed(Protocol):
    """What the job client needs of an outstanding job."""

    id: str
    worker: str

    def _feed(self, message: BusMessage) -> None: ...

    def _fail(self, error: JobError) -> None: ...

    def worker_gone(self, worker: str, incarnation: str, why: str) -> None: ...


class JobClient(BusSubscriber):
    """The subscriber that routes job answers to the jobs waiting for them."""

    def __init__(self) -> None:
        self.name = f"anybus-jobs-{secrets.token_hex(4)}"
        self.pending: dict[str, Routed] = {}

    async def on_bus_message(self, message: BusMessage) -> None:
        if isinstance(message, BusWorkerGoodbyeMessage):
            # After the worker's last answers (both are data, from one sender): what is still
            # outstanding will not be answered.
            for job in list(self.pending.values()):
                job.worker_gone(message.worker, message.incarnation, "it stopped")
            return
        if isinstance(message, BusWorkerErrorMessage | BusWorkerLocalErrorMessage):
            for job in list(self.pending.values()):
                if job.worker == message.source:
                    job._fail(
                        JobError(
                            f"worker {job.worker!r} reported an error while job {job.id} "
                            f"was outstanding: {message.error}",
                            job_id=job.id,
                            worker=job.worker,
                            status=JobStatus.ERROR,
                            response={"error": message.error},
                        )
                    )
            return
        job_id = getattr(message, "job_id", None)
        waiting = self.pending.get(job_id) if isinstance(job_id, str) else None
        if waiting is None:
            logger.debug("no job waits for %s (job %s): ignored", message.name, job_id)
            return
        waiting._feed(message)


#: The job client of each bus: one subscriber per bus routes every job's answers.
_clients: weakref.WeakKeyDictionary[WorkerBus, JobClient] = weakref.WeakKeyDictionary()


async def job_client(bus: WorkerBus) -> JobClient:
    """The subscriber routing ``bus``'s job answers, subscribed the first time."""
    client = _clients.get(bus)
    if client is None or client.name not in {sub.name for sub in bus.subscribers}:
        client = _clients[bus] = JobClient()
        await bus.subscribe(client, types=ANSWER_TYPES, max_buffer=None)
    return client
