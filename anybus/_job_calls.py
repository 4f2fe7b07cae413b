"""The caller side of jobs, as functions of a bus: :func:`request` and :func:`open_job`.

Jobs are a leaf of the library: they use the bus through its public API (``send``,
``subscribe``) and the bus knows nothing of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

from anyio import move_on_after

from ._bus import WorkerBus, check_bus
from ._checks import check_seconds
from ._exceptions import JobTimeout, WorkerUnavailable
from ._jobs import CANCEL_TIMEOUT, Job, JobResult, Presence

__all__ = ["open_job", "request"]


def open_job(
    bus: WorkerBus,
    worker: str,
    payload: Mapping[str, Any] | None = None,
    *,
    job_name: str | None = None,
    source: str | None = None,
    job_id: str | None = None,
    cancel_timeout: float = CANCEL_TIMEOUT,
    presence: Presence = "wait",
) -> Job:
    """Send a job to ``worker`` on ``bus``; follow it: ``async with open_job(bus, ...) as job:``.

    Entering the block sends a :class:`~anybus.BusJobRequestMessage` (``payload``,
    ``job_name``) addressed to ``worker``; inside it, read ``job.updates()``,
    ``job.stream()`` and ``await job.result()`` (see :class:`Job`). Answers are addressed to
    ``source`` (by default the name of the bus's job client, a subscriber the first job adds)
    and matched by the job's id (``job_id``, by default a random one).

    ``worker`` may name a worker or a pool of workers. Before sending, by default
    (``presence="wait"``), entering waits until that worker, or a member of that pool, has
    announced itself (see :func:`~anybus.wait_for_worker`); for a pool the job goes to the
    least loaded member, and ``job.worker`` names it. ``presence="require"`` fails at once
    with :class:`~anybus.WorkerUnavailable` instead (a bus that just began to use presence
    gives the answers to its query one second); ``presence="off"`` sends without looking,
    to workers that do not announce themselves. With presence on, a worker declared gone
    while the job is outstanding fails it with :class:`~anybus.WorkerUnavailable`.

    Leaving the block before the job has ended — cancelled, timed out, raised, or done
    waiting — sends a :class:`~anybus.BusJobCancelMessage` to the worker, shielded from the
    cancellation, for at most ``cancel_timeout`` seconds. So does leaving it after this side
    gave up on the job (say, the worker announced an error) without the worker's answer.

    Raises:
        TypeError: ``bus`` is not a bus, or ``payload`` not a mapping.
        ValueError: ``worker`` is not a non-empty string.
    """
    check_bus(bus)
    if not isinstance(worker, str) or not worker:
        raise ValueError(f"worker must name a worker or pool (a non-empty string), got {worker!r}")
    if payload is not None and not isinstance(payload, Mapping):
        raise TypeError(
            f"payload must be a mapping (a dict of the job's arguments) or None, got {payload!r}"
        )
    return Job(
        bus,
        worker,
        payload,
        job_name=job_name,
        source=source,
        job_id=job_id,
        cancel_timeout=cancel_timeout,
        presence=presence,
    )


async def request(
    bus: WorkerBus,
    worker: str,
    payload: Mapping[str, Any] | None = None,
    *,
    job_name: str | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the job's deadline, a part of the call
    source: str | None = None,
    presence: Presence = "wait",
) -> JobResult:
    """Send a job to ``worker`` on ``bus``, wait for its response and return it.

    Updates and stream chunks the worker sends are ignored (use :func:`open_job` to read
    them). If the call is cancelled, or ``timeout`` seconds pass without a response, a
    :class:`~anybus.BusJobCancelMessage` is sent to the worker (see :func:`open_job`).
    ``worker`` may name a pool; ``presence`` is as for :func:`open_job`: by default the call
    first waits for the worker to be present, within the same ``timeout``.

    Raises:
        JobTimeout: if no response came within ``timeout`` seconds.
        WorkerUnavailable: if the worker was not present (within ``timeout``; the request
            was not sent), or was declared gone while the job was outstanding.
        JobFailed: if the worker answered ``failed`` (the handler raised ``JobFailed``).
        JobCancelled: if the worker answered ``cancelled``.
        JobError: if the worker answered ``error``, or announced an error of its own
            (``BusWorkerErrorMessage``) while the job was outstanding.
    """
    check_seconds("timeout", timeout, none=True, zero=True)
    job = open_job(bus, worker, payload, job_name=job_name, source=source, presence=presence)
    # No cancel scope at all without a timeout: one less per request.
    with move_on_after(timeout) if timeout is not None else nullcontext():
        async with job:
            return await job.result()
    if not job.sent and job._looking:  # still waiting for the worker: nothing was sent
        raise WorkerUnavailable(
            f"no worker or pool named {worker!r} became present within {timeout} s; the "
            f"request was not sent",
            job_id=job.id,
            worker=worker,
        )
    if not job.sent:  # the deadline came as the request was being sent
        raise JobTimeout(
            f"job {job.id} at {worker!r}: the request was still being sent when {timeout} s "
            f"had passed; it may have gone out, and a cancel was sent after it",
            job_id=job.id,
            worker=worker,
        )
    raise JobTimeout(
        f"job {job.id} at {worker!r} did not answer within {timeout} s; it was cancelled",
        job_id=job.id,
        worker=worker,
    )
