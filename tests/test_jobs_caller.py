"""Jobs from the caller's side: each outcome of a job as request(bus) reports it, answers
that nobody waits for any more, and calls from other threads through the portal.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import CancelledError
from typing import Any

import anyio
import pytest
from anyio import fail_after

from anybus import (
    BusDataMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusWorkerErrorMessage,
    JobContext,
    JobError,
    JobFailed,
    JobStatus,
    JobTimeout,
    JobWorker,
    MemoryBus,
    WorkerUnavailable,
    open_job,
    open_thread_portal,
    request,
)
from anybus.testing import RecordingSubscriber

from .jobs_support import Blocker, worker_bus

pytestmark = pytest.mark.anyio


async def test_job_failed_reaches_the_caller_with_its_response() -> None:
    async def fail(job: JobContext) -> None:
        raise JobFailed("no such file", response={"path": "/x"})

    async with MemoryBus() as bus:
        worker = JobWorker("w", handlers={None: fail})
        await bus.subscribe(worker)
        with fail_after(5), pytest.raises(JobFailed) as caught:
            await request(bus, "w")
    assert caught.value.status is JobStatus.FAILED
    assert caught.value.response == {"path": "/x", "error": "no such file"}
    assert "no such file" in str(caught.value)
    assert worker.failed == 1


async def test_an_unexpected_exception_answers_error_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(job: JobContext) -> dict[str, Any]:
        if job.payload.get("break"):
            raise ZeroDivisionError("boom")
        return {"ok": True}

    async with worker_bus(broken) as bus:
        with fail_after(5):
            with pytest.raises(JobError) as caught:
                await request(bus, "w", {"break": True})
            assert (await request(bus, "w")).response == {"ok": True}
    assert type(caught.value) is JobError
    assert caught.value.status is JobStatus.ERROR
    assert caught.value.response == {"error": "ZeroDivisionError: boom"}
    assert any(
        record.name == "anybus.jobs" and record.exc_info is not None for record in caplog.records
    )


async def test_a_job_without_a_handler_answers_error() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(JobWorker("w"))
        with fail_after(5), pytest.raises(JobError, match="no handler for job 'missing'"):
            await request(bus, "w", job_name="missing")


async def test_a_worker_error_fails_its_outstanding_jobs() -> None:
    async def announce_and_hang(job: JobContext) -> None:
        await bus.send(BusWorkerErrorMessage(source="w", error="GPU lost"))
        await anyio.sleep_forever()

    async with worker_bus(announce_and_hang) as bus:
        with fail_after(5), pytest.raises(JobError, match="GPU lost") as caught:
            await request(bus, "w")
    assert caught.value.status is JobStatus.ERROR


async def test_late_answers_after_the_caller_left_are_ignored() -> None:
    async with MemoryBus() as bus:
        recorder = RecordingSubscriber("r")
        await bus.subscribe(recorder)
        with fail_after(5):
            async with open_job(bus, "nobody", presence="off") as job:
                pass
            await bus.send(
                BusJobResponseMessage(
                    source="nobody", target=job.source, job_id=job.id, status=JobStatus.COMPLETED
                )
            )
            await bus.wait_idle()
    assert not job.done


async def test_jobs_log_under_anybus_jobs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anybus.jobs")
    async with MemoryBus() as bus:
        with fail_after(5):
            async with open_job(bus, "nobody", presence="off"):
                pass
    assert any(record.name == "anybus.jobs" for record in caplog.records)


# --- threads, through the portal ------------------------------------------------------------


async def test_threads_send_and_request_through_the_portal() -> None:
    async def double(job: JobContext) -> dict[str, Any]:
        return {"n": job.payload["n"] * 2}

    recorder = RecordingSubscriber("r", accepts=lambda m: isinstance(m, BusDataMessage))
    async with worker_bus(double) as bus:
        await bus.subscribe(recorder)
        with fail_after(10):
            async with open_thread_portal(bus) as portal:

                def from_thread() -> int:
                    portal.send(BusDataMessage(source="thread"))
                    return int(portal.request("w", {"n": 21}).response["n"])

                assert await anyio.to_thread.run_sync(from_thread) == 42

                # A plain thread, not started by anyio.
                answers: list[int] = []
                done = threading.Event()

                def plain() -> None:
                    answers.append(int(portal.request("w", {"n": 5}, timeout=5).response["n"]))
                    done.set()

                thread = threading.Thread(target=plain)
                thread.start()
                await anyio.to_thread.run_sync(done.wait)
                thread.join()
            await recorder.wait_for_count(1)
    assert answers == [10]


async def test_leaving_the_portal_cancels_calls_in_flight() -> None:
    blocker = Blocker()
    outcome: list[BaseException] = []
    async with worker_bus(blocker) as bus:
        with fail_after(10):

            def call(portal: Any) -> None:
                try:
                    portal.request("w")
                except BaseException as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as task_group, open_thread_portal(bus) as portal:
                task_group.start_soon(anyio.to_thread.run_sync, call, portal)
                await blocker.started.wait()
            await blocker.cancelled.wait()
            with pytest.raises(RuntimeError):
                portal.send(BusDataMessage(source="late"))
    assert len(outcome) == 1
    assert isinstance(outcome[0], CancelledError)


async def test_the_portal_refuses_calls_from_the_event_loop_thread() -> None:
    async with MemoryBus() as bus, open_thread_portal(bus) as portal:
        with pytest.raises(RuntimeError):
            portal.send(BusDataMessage(source="loop"))


async def test_the_portal_runs_any_coroutine_function_in_the_loop() -> None:
    async with MemoryBus() as bus, open_thread_portal(bus) as portal:
        recorder = await bus.subscribe(RecordingSubscriber("r"))

        def from_thread() -> int:
            portal.call(bus.send, BusDataMessage(source="thread"))
            portal.call(bus.wait_idle)
            return len(recorder.messages)

        with fail_after(5):
            assert await anyio.to_thread.run_sync(from_thread) == 1
        assert "BusPortal for <MemoryBus running" in repr(portal)


async def test_a_timeout_while_the_request_is_being_sent_is_not_called_unavailable() -> None:
    # A slow subscriber of requests with a full, blocking inbox holds every request's send:
    # the request is still being sent when the timeout comes. Nothing said the worker was
    # missing (presence is off), so that is a timeout that may have sent the request, not
    # WorkerUnavailable. (The cancel that follows is a system message, which it does not take.)
    gate = anyio.Event()

    async def slow(message: Any) -> None:
        await gate.wait()

    async with MemoryBus(max_buffer=1, overflow="block") as bus:
        await bus.subscribe(JobWorker("w", handlers={None: Blocker()}))
        await bus.subscribe(
            RecordingSubscriber("slow", handler=slow), types=[BusJobRequestMessage]
        )
        with fail_after(5):
            for _ in range(2):  # one taken by the slow handler, one filling its inbox
                await bus.send(BusJobRequestMessage(source="t", target="nobody", job_id="x"))
                await anyio.wait_all_tasks_blocked()
            with pytest.raises(JobTimeout, match="still being sent") as raised:
                await request(bus, "w", timeout=0.05, presence="off")
            gate.set()
    assert not isinstance(raised.value, WorkerUnavailable)
