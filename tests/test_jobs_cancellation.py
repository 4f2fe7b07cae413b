"""Cancelling jobs: from elsewhere, by leaving the job block, by stopping the bus, before
they run; and cancelling each blocking call of a job.
"""

from __future__ import annotations

import anyio
import pytest
from anyio import Event, fail_after, wait_all_tasks_blocked

from anybus import (
    BusDataMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusMessage,
    JobCancelled,
    JobContext,
    JobStatus,
    JobWorker,
    MemoryBus,
    open_job,
)
from anybus._job_client import _clients
from anybus.testing import RecordingSubscriber

from .jobs_support import Blocker, worker_bus

pytestmark = pytest.mark.anyio


async def test_a_cancel_from_elsewhere_answers_cancelled() -> None:
    blocker = Blocker()
    async with worker_bus(blocker) as bus:
        with fail_after(5):
            async with open_job(bus, "w") as job:
                await blocker.started.wait()
                await bus.send(
                    BusJobCancelMessage(source="admin", target="w", job_id=job.id, reason="ops")
                )
                with pytest.raises(JobCancelled) as caught:
                    await job.result()
    assert caught.value.response == {"reason": "ops"}


async def test_job_cancel_cancels_a_queued_job_without_running_it() -> None:
    blocker = Blocker()
    ran: list[str] = []

    async def record(job: JobContext) -> None:
        ran.append(job.id)

    worker = JobWorker("w", handlers={"block": blocker, "record": record})
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with (
                open_job(bus, "w", job_name="block"),
                open_job(bus, "w", job_name="record") as queued,
            ):
                await blocker.started.wait()
                await wait_all_tasks_blocked()
                assert worker.queued_jobs == [queued.id]
                await queued.cancel("not needed")
                with pytest.raises(JobCancelled):
                    await queued.result()
                blocker.release.set()
            await bus.wait_idle()
    assert ran == []
    assert worker.cancelled == 1


async def test_a_cancel_that_overtakes_its_request_still_cancels_the_job() -> None:
    ran: list[str] = []

    async def record(job: JobContext) -> None:
        ran.append(job.id)

    worker = JobWorker("w", handlers={None: record})
    answers = RecordingSubscriber("caller", accepts=lambda m: isinstance(m, BusJobResponseMessage))
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        await bus.subscribe(answers)
        # While the bus is stopped both wait in the inbox; on start the cancel, a system
        # message, is handled first, before the request it cancels.
        await bus.stop()
        await bus.send(BusJobRequestMessage(source="caller", target="w", job_id="j1"))
        await bus.send(
            BusJobCancelMessage(source="caller", target="w", job_id="j1", reason="late")
        )
        await bus.start()
        with fail_after(5):
            await answers.wait_for_count(1)
            await bus.wait_idle()
    assert ran == []
    (answer,) = answers.messages
    assert isinstance(answer, BusJobResponseMessage)
    assert answer.status is JobStatus.CANCELLED
    assert answer.response == {"reason": "late"}


async def test_leaving_the_job_block_early_cancels_the_job() -> None:
    blocker = Blocker()
    async with worker_bus(blocker) as bus:
        with fail_after(5):
            async with open_job(bus, "w"):
                await blocker.started.wait()
            await blocker.cancelled.wait()


async def test_stopping_the_bus_cancels_running_jobs_and_answers_them() -> None:
    blocker = Blocker()
    worker = JobWorker("w", handlers={None: blocker})
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with open_job(bus, "w") as job:
                await blocker.started.wait()
                await bus.stop()
                assert blocker.cancelled.is_set()
                await bus.start()
                with pytest.raises(JobCancelled, match="the worker stopped"):
                    await job.result()


async def test_wait_idle_waits_for_running_jobs() -> None:
    blocker = Blocker()
    async with worker_bus(blocker) as bus:
        with fail_after(5):
            async with open_job(bus, "w") as job:
                await blocker.started.wait()
                idle = Event()

                async def wait_idle() -> None:
                    await bus.wait_idle()
                    idle.set()

                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(wait_idle)
                    await wait_all_tasks_blocked()
                    assert not idle.is_set()  # the job is still running
                    blocker.release.set()
                assert job.done


# --- cancellation of every blocking call ----------------------------------------------------


@pytest.mark.parametrize("wait", ["result", "updates", "stream"])
async def test_cancelling_a_wait_on_a_job_leaves_it_running_until_the_block_ends(
    wait: str,
) -> None:
    blocker = Blocker()
    async with worker_bus(blocker) as bus:
        with fail_after(5):
            async with open_job(bus, "w") as job:
                await blocker.started.wait()
                with anyio.CancelScope() as scope:
                    scope.cancel()
                    if wait == "result":
                        await job.result()
                    elif wait == "updates":
                        async for _ in job.updates():
                            pass
                    else:
                        async for _ in job.stream():
                            pass
                assert not blocker.cancelled.is_set()
                blocker.release.set()
                assert (await job.result()).response == {"released": True}


async def test_a_cancelled_job_releases_its_resources() -> None:
    blocker = Blocker()
    async with worker_bus(blocker) as bus:
        with fail_after(5):
            with anyio.CancelScope() as scope:
                async with open_job(bus, "w") as job:
                    await blocker.started.wait()
                    scope.cancel()
                    await job.result()
            await blocker.cancelled.wait()
            await bus.wait_idle()
        assert _clients[bus].pending == {}
        assert job.done is False


async def test_cancelling_the_request_send_cancels_the_job_too() -> None:
    # A bounded inbox under the block policy makes the request's send wait for room.
    async with MemoryBus(max_buffer=1) as bus:
        gate = Event()

        async def hold(message: BusMessage) -> None:
            await gate.wait()

        holder = await bus.subscribe(hold, name="holder")
        await bus.send(BusDataMessage(source="x"))  # handled: holds the data worker
        await bus.send(BusDataMessage(source="x"))  # queued: the inbox is full now
        recorder = RecordingSubscriber("r", accepts=lambda m: isinstance(m, BusJobCancelMessage))
        await bus.subscribe(recorder, max_buffer=None)
        with fail_after(5):
            with anyio.CancelScope() as scope:
                async with anyio.create_task_group() as task_group:

                    async def enter() -> None:
                        async with open_job(bus, "w", presence="off"):
                            raise AssertionError("the request went out")

                    task_group.start_soon(enter)
                    await wait_all_tasks_blocked()
                    scope.cancel()
            await recorder.wait_for_count(1)  # the cancel is a system message: never held
            gate.set()
        assert _clients[bus].pending == {}
        await bus.unsubscribe(holder)
