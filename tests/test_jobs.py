"""Jobs: bus.request() and bus.job() against JobWorker, on every bus and both backends."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import CancelledError
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio import Event, fail_after, get_cancelled_exc_class, wait_all_tasks_blocked

from anybus import (
    BusDataMessage,
    BusJobCancelMessage,
    BusJobRequestMessage,
    BusJobResponseMessage,
    BusJobUpdateRequestMessage,
    BusMessage,
    BusWorkerErrorMessage,
    JobCancelled,
    JobContext,
    JobError,
    JobFailed,
    JobStatus,
    JobTimeout,
    JobWorker,
    MemoryBus,
    WorkerBus,
    job_handler,
)
from anybus.testing import RecordingSubscriber

from .redis_support import network_bus, unique_name

pytestmark = pytest.mark.anyio

BusMaker = Callable[[], WorkerBus]


def _network_maker(request: pytest.FixtureRequest, kind: str) -> BusMaker:
    url: str = request.getfixturevalue("redis_url")
    channel = unique_name()
    return lambda: network_bus(kind, url, channel)


@pytest.fixture(params=["memory", "pubsub", "stream"])
def make_bus(request: pytest.FixtureRequest) -> BusMaker:
    """A factory of buses that share one channel: the memory bus, or a Redis bus."""
    if request.param == "memory":
        return MemoryBus
    return _network_maker(request, request.param)


@asynccontextmanager
async def _worker_bus(handler: Any) -> AsyncIterator[WorkerBus]:
    """A running memory bus with a job worker ``w`` whose default handler is ``handler``."""
    async with MemoryBus() as bus:
        await bus.subscribe(JobWorker("w", handlers={None: handler}))
        yield bus


class Blocker:
    """A job handler that reports it started, then waits until cancelled or released."""

    def __init__(self) -> None:
        self.started = Event()
        self.cancelled = Event()
        self.release = Event()

    async def __call__(self, job: JobContext) -> dict[str, Any]:
        self.started.set()
        try:
            await self.release.wait()
        except get_cancelled_exc_class():
            self.cancelled.set()
            raise
        return {"released": True}


# --- on every bus ---------------------------------------------------------------------------


async def test_request_returns_the_response(make_bus: BusMaker) -> None:
    async def add(job: JobContext) -> dict[str, Any]:
        return {"sum": job.payload["a"] + job.payload["b"], "job": job.name}

    async with make_bus() as bus:
        await bus.subscribe(JobWorker("adder", handlers={"add": add}))
        with fail_after(10):
            result = await bus.request("adder", {"a": 2, "b": 3}, job_name="add")
    assert result.status is JobStatus.COMPLETED
    assert result.response == {"sum": 5, "job": "add"}
    assert result.worker == "adder"


async def test_updates_and_stream_arrive_in_order_before_the_result(make_bus: BusMaker) -> None:
    async def produce(job: JobContext) -> dict[str, Any]:
        for step in range(3):
            await job.update({"step": step})
        await job.stream_start({"format": "text"})
        for word in ("one", "two", "three"):
            await job.stream_data({"word": word})
        await job.stream_end({"words": 3})
        return {"done": True}

    async with make_bus() as bus:
        await bus.subscribe(JobWorker("producer", handlers={None: produce}))
        with fail_after(10):
            async with bus.job("producer") as job:
                updates = [update async for update in job.updates()]
                chunks = [chunk async for chunk in job.stream()]
                result = await job.result()
    assert updates == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert chunks == [{"word": "one"}, {"word": "two"}, {"word": "three"}]
    assert job.stream_metadata == {"format": "text"}
    assert job.stream_end_metadata == {"words": 3}
    assert result.response == {"done": True}


async def test_cancelling_the_caller_cancels_the_job_at_the_worker(make_bus: BusMaker) -> None:
    blocker = Blocker()
    worker = JobWorker("busy", handlers={"block": blocker})
    async with make_bus() as bus:
        await bus.subscribe(worker)
        with fail_after(10):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(partial(bus.request, "busy", job_name="block"))
                await blocker.started.wait()
                task_group.cancel_scope.cancel()
            # The cancel is a system message: it reaches the worker although its job is busy.
            await blocker.cancelled.wait()
            await bus.wait_idle()
    assert worker.cancelled == 1
    assert worker.running_jobs == []


async def test_a_timeout_raises_job_timeout_and_cancels_the_job(make_bus: BusMaker) -> None:
    blocker = Blocker()
    async with make_bus() as bus:
        await bus.subscribe(JobWorker("slow", handlers={None: blocker}))
        with fail_after(10):
            with pytest.raises(JobTimeout) as caught:
                await bus.request("slow", timeout=0.3)
            await blocker.cancelled.wait()
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.worker == "slow"
    assert caught.value.status is None


async def test_hundreds_of_concurrent_jobs_are_correlated(make_bus: BusMaker) -> None:
    async def echo(job: JobContext) -> dict[str, Any]:
        await job.update({"seen": job.payload["n"]})
        await anyio.lowlevel.checkpoint()
        return {"n": job.payload["n"], "id": job.id}

    results: dict[int, Any] = {}

    async def call(n: int) -> None:
        async with bus.job("echo", {"n": n}) as job:
            updates = [update async for update in job.updates()]
            result = await job.result()
        assert updates == [{"seen": n}]
        assert result.response == {"n": n, "id": job.id}
        results[n] = result

    async with make_bus() as bus:
        await bus.subscribe(JobWorker("echo", handlers={None: echo}, concurrency=25))
        with fail_after(30):
            async with anyio.create_task_group() as task_group:
                for n in range(300):
                    task_group.start_soon(call, n)
    assert sorted(results) == list(range(300))


@pytest.fixture(params=["pubsub", "stream"])
def make_network_bus(request: pytest.FixtureRequest) -> BusMaker:
    """A factory of Redis buses that share one channel."""
    return _network_maker(request, request.param)


async def test_jobs_on_one_bus_are_answered_from_another(make_network_bus: BusMaker) -> None:
    make_bus = make_network_bus

    async def shout(job: JobContext) -> dict[str, Any]:
        return {"text": str(job.payload["text"]).upper()}

    async with make_bus() as worker_bus, make_bus() as caller_bus:
        await worker_bus.subscribe(JobWorker("shouter", handlers={None: shout}))
        with fail_after(10):
            result = await caller_bus.request("shouter", {"text": "hi"})
    assert result.response == {"text": "HI"}


# --- outcomes -------------------------------------------------------------------------------


async def test_job_failed_reaches_the_caller_with_its_response() -> None:
    async def fail(job: JobContext) -> None:
        raise JobFailed("no such file", response={"path": "/x"})

    async with MemoryBus() as bus:
        worker = JobWorker("w", handlers={None: fail})
        await bus.subscribe(worker)
        with fail_after(5), pytest.raises(JobFailed) as caught:
            await bus.request("w")
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

    async with _worker_bus(broken) as bus:
        with fail_after(5):
            with pytest.raises(JobError) as caught:
                await bus.request("w", {"break": True})
            assert (await bus.request("w")).response == {"ok": True}
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
            await bus.request("w", job_name="missing")


async def test_a_worker_error_fails_its_outstanding_jobs() -> None:
    async def announce_and_hang(job: JobContext) -> None:
        await bus.send(BusWorkerErrorMessage(source="w", error="GPU lost"))
        await anyio.sleep_forever()

    async with _worker_bus(announce_and_hang) as bus:
        with fail_after(5), pytest.raises(JobError, match="GPU lost") as caught:
            await bus.request("w")
    assert caught.value.status is JobStatus.ERROR


async def test_a_cancel_from_elsewhere_answers_cancelled() -> None:
    blocker = Blocker()
    async with _worker_bus(blocker) as bus:
        with fail_after(5):
            async with bus.job("w") as job:
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
            async with bus.job("w", job_name="block"), bus.job("w", job_name="record") as queued:
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


async def test_leaving_the_job_block_early_cancels_the_job() -> None:
    blocker = Blocker()
    async with _worker_bus(blocker) as bus:
        with fail_after(5):
            async with bus.job("w"):
                await blocker.started.wait()
            await blocker.cancelled.wait()


async def test_stopping_the_bus_cancels_running_jobs_and_answers_them() -> None:
    blocker = Blocker()
    worker = JobWorker("w", handlers={None: blocker})
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with bus.job("w") as job:
                await blocker.started.wait()
                await bus.stop()
                assert blocker.cancelled.is_set()
                await bus.start()
                with pytest.raises(JobCancelled, match="the worker stopped"):
                    await job.result()


async def test_wait_idle_waits_for_running_jobs() -> None:
    blocker = Blocker()
    async with _worker_bus(blocker) as bus:
        with fail_after(5):
            async with bus.job("w") as job:
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


# --- concurrency and update requests --------------------------------------------------------


async def test_concurrency_limit_and_arrival_order() -> None:
    gates = [Event() for _ in range(8)]
    running: set[int] = set()
    most = 0

    async def work(job: JobContext) -> None:
        nonlocal most
        n = job.payload["n"]
        running.add(n)
        most = max(most, len(running))
        await gates[n].wait()
        running.remove(n)

    worker = JobWorker("w", handlers={None: work}, concurrency=3)
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with anyio.create_task_group() as task_group:
                for n in range(8):
                    task_group.start_soon(bus.request, "w", {"n": n})
                    await wait_all_tasks_blocked()  # queued in this order
                assert len(worker.queued_jobs) == 5
                # Finishing one job at a time lets the next queued one in, in arrival order.
                for n in range(8):
                    assert running == set(range(n, min(n + 3, 8)))
                    gates[n].set()
                    await wait_all_tasks_blocked()
    assert most == 3
    assert running == set()
    assert worker.completed == 8


async def test_update_requests_are_answered_while_the_job_runs() -> None:
    step = Event()
    blocker = Blocker()

    async def progress(job: JobContext) -> None:
        await job.update({"percent": 50})
        await step.wait()

    worker = JobWorker("w", handlers={"progress": progress, "block": blocker})
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with (
                bus.job("w", job_name="progress") as running,
                bus.job("w", job_name="block") as queued,
            ):
                updates = running.updates()
                assert await anext(updates) == {"percent": 50}
                await running.request_update()
                assert await anext(updates) == {"percent": 50}
                await queued.request_update()
                assert await anext(queued.updates()) == {"state": "queued", "position": 1}
                step.set()
                assert await running.result()
                await blocker.started.wait()
                await queued.request_update()
                assert await anext(queued.updates()) == {"state": "running"}
            async with bus.job("nobody-home") as ghost:
                pass
            unknown = RecordingSubscriber("u", accepts=lambda m: m.target == "probe")
            await bus.subscribe(unknown)
            await bus.send(BusJobUpdateRequestMessage(source="probe", target="w", job_id="nope"))
            await unknown.wait_for_count(1)
    assert ghost.done is False
    assert unknown.messages[0].update == {"state": "unknown"}  # type: ignore[attr-defined]


# --- declaring handlers ---------------------------------------------------------------------


async def test_job_handler_methods_and_other_messages() -> None:
    class Greeter(JobWorker):
        def __init__(self) -> None:
            super().__init__("greeter")
            self.others: list[BusMessage] = []

        @job_handler("greet")
        async def greet(self, job: JobContext) -> dict[str, Any]:
            return {"text": f"hello {job.payload['who']}"}

        @job_handler()
        async def default(self, job: JobContext) -> dict[str, Any]:
            return {"text": "hello"}

        async def on_other_message(self, message: BusMessage) -> None:
            self.others.append(message)

    greeter = Greeter()
    async with MemoryBus() as bus:
        await bus.subscribe(greeter)

        @greeter.job("wave")
        async def wave(job: JobContext) -> dict[str, Any]:
            return {"text": "o/"}

        with fail_after(5):
            assert (await bus.request("greeter", {"who": "ann"}, job_name="greet")).response == {
                "text": "hello ann"
            }
            assert (await bus.request("greeter")).response == {"text": "hello"}
            assert (await bus.request("greeter", job_name="wave")).response == {"text": "o/"}
            await bus.send(BusDataMessage(source="x"))
            await bus.wait_idle()
    assert [type(m) for m in greeter.others] == [BusDataMessage]


async def test_requests_for_other_workers_are_ignored() -> None:
    ran: list[str] = []

    async def record(job: JobContext) -> None:
        ran.append(job.id)

    async with MemoryBus() as bus:
        await bus.subscribe(JobWorker("a", handlers={None: record}))
        await bus.subscribe(JobWorker("b", handlers={None: record}))
        with fail_after(5):
            result = await bus.request("b")
            await bus.wait_idle()
    assert ran == [result.job_id]


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        JobWorker("w", concurrency=0)


async def test_late_answers_after_the_caller_left_are_ignored() -> None:
    async with MemoryBus() as bus:
        recorder = RecordingSubscriber("r")
        await bus.subscribe(recorder)
        with fail_after(5):
            async with bus.job("nobody") as job:
                pass
            await bus.send(
                BusJobResponseMessage(
                    source="nobody", target=job.source, job_id=job.id, status=JobStatus.COMPLETED
                )
            )
            await bus.wait_idle()
    assert not job.done


# --- the run_in_bus hook --------------------------------------------------------------------


async def test_a_failing_run_in_bus_is_logged_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Faulty(RecordingSubscriber):
        async def run_in_bus(self, bus: WorkerBus) -> None:
            raise RuntimeError("hook broke")

    faulty = Faulty("faulty")
    async with MemoryBus() as bus:
        await bus.subscribe(faulty)
        with fail_after(5):
            await bus.send(BusDataMessage(source="x"))
            await faulty.wait_for_count(1)
    assert any("run_in_bus() of subscriber 'faulty' failed" in r.message for r in caplog.records)


async def test_run_in_bus_is_cancelled_on_unsubscribe() -> None:
    started = Event()
    ended = Event()

    class Background(RecordingSubscriber):
        async def run_in_bus(self, bus: WorkerBus) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                ended.set()

    async with MemoryBus() as bus:
        background = await bus.subscribe(Background("bg"))
        with fail_after(5):
            await started.wait()
            await bus.unsubscribe(background)
        assert ended.is_set()


# --- threads --------------------------------------------------------------------------------


async def test_threads_send_and_request_through_the_portal() -> None:
    async def double(job: JobContext) -> dict[str, Any]:
        return {"n": job.payload["n"] * 2}

    recorder = RecordingSubscriber("r", accepts=lambda m: isinstance(m, BusDataMessage))
    async with _worker_bus(double) as bus:
        await bus.subscribe(recorder)
        with fail_after(10):
            async with bus.thread_portal() as portal:

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
    async with _worker_bus(blocker) as bus:
        with fail_after(10):

            def call(portal: Any) -> None:
                try:
                    portal.request("w")
                except BaseException as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as task_group, bus.thread_portal() as portal:
                task_group.start_soon(anyio.to_thread.run_sync, call, portal)
                await blocker.started.wait()
            await blocker.cancelled.wait()
            with pytest.raises(RuntimeError):
                portal.send(BusDataMessage(source="late"))
    assert len(outcome) == 1
    assert isinstance(outcome[0], CancelledError)


async def test_the_portal_refuses_calls_from_the_event_loop_thread() -> None:
    async with MemoryBus() as bus, bus.thread_portal() as portal:
        with pytest.raises(RuntimeError):
            portal.send(BusDataMessage(source="loop"))


# --- cancellation of every blocking call ----------------------------------------------------


@pytest.mark.parametrize("wait", ["result", "updates", "stream"])
async def test_cancelling_a_wait_on_a_job_leaves_it_running_until_the_block_ends(
    wait: str,
) -> None:
    blocker = Blocker()
    async with _worker_bus(blocker) as bus:
        with fail_after(5):
            async with bus.job("w") as job:
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


async def test_jobs_log_under_anybus_jobs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anybus.jobs")
    async with MemoryBus() as bus:
        with fail_after(5):
            async with bus.job("nobody"):
                pass
    assert any(record.name == "anybus.jobs" for record in caplog.records)


async def test_a_cancelled_job_releases_its_resources() -> None:
    blocker = Blocker()
    async with _worker_bus(blocker) as bus:
        with fail_after(5):
            with anyio.CancelScope() as scope:
                async with bus.job("w") as job:
                    await blocker.started.wait()
                    scope.cancel()
                    await job.result()
            await blocker.cancelled.wait()
            await bus.wait_idle()
        assert bus._jobs is not None
        assert bus._jobs.pending == {}
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
                        async with bus.job("w"):
                            raise AssertionError("the request went out")

                    task_group.start_soon(enter)
                    await wait_all_tasks_blocked()
                    scope.cancel()
            await recorder.wait_for_count(1)  # the cancel is a system message: never held
            gate.set()
        assert bus._jobs is not None
        assert bus._jobs.pending == {}
        await bus.unsubscribe(holder)


async def test_a_response_that_cannot_be_sent_answers_error(
    make_network_bus: BusMaker, caplog: pytest.LogCaptureFixture
) -> None:
    async def unsendable(job: JobContext) -> dict[str, Any]:
        return {"value": object()}

    async with make_network_bus() as bus:
        await bus.subscribe(JobWorker("w", handlers={None: unsendable}))
        with fail_after(10), pytest.raises(JobError, match="could not be sent") as caught:
            await bus.request("w")
    assert caught.value.status is JobStatus.ERROR


async def test_a_duplicate_request_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    blocker = Blocker()
    worker = JobWorker("w", handlers={None: blocker})
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with bus.job("w", job_id="same"):
                await blocker.started.wait()
                await bus.send(BusJobRequestMessage(source="x", target="w", job_id="same"))
                await wait_all_tasks_blocked()  # (wait_idle() would wait for the job)
                assert worker.running_jobs == ["same"]
                assert worker.queued_jobs == []
    assert "job same is already running or queued" in caplog.text


async def test_a_job_worker_serves_one_bus(caplog: pytest.LogCaptureFixture) -> None:
    async def echo(job: JobContext) -> dict[str, Any]:
        return job.payload

    worker = JobWorker("w", handlers={None: echo})
    async with MemoryBus() as first, MemoryBus() as second:
        await first.subscribe(worker)
        with fail_after(5):
            assert (await first.request("w", {"a": 1})).response == {"a": 1}
            await second.subscribe(worker)
            with pytest.raises(JobError, match="serves another bus"):
                await second.request("w", {"a": 2})
            assert (await first.request("w", {"a": 3})).response == {"a": 3}
    assert "a JobWorker serves one bus" in caplog.text
    assert worker.completed == 2


async def test_a_cancel_that_overtakes_its_request_still_cancels_the_job() -> None:
    ran: list[str] = []

    async def record(job: JobContext) -> None:
        ran.append(job.id)

    bus = MemoryBus()
    worker = JobWorker("w", handlers={None: record})
    await bus.subscribe(worker)
    # While the bus is stopped both wait in the inbox; on start the cancel, a system message,
    # is handled first, before the request it cancels.
    await bus.send(BusJobRequestMessage(source="caller", target="w", job_id="j1"))
    await bus.send(BusJobCancelMessage(source="caller", target="w", job_id="j1", reason="late"))
    answers = RecordingSubscriber("caller", accepts=lambda m: isinstance(m, BusJobResponseMessage))
    await bus.subscribe(answers)
    async with bus:
        with fail_after(5):
            await answers.wait_for_count(1)
            await bus.wait_idle()
    assert ran == []
    (answer,) = answers.messages
    assert isinstance(answer, BusJobResponseMessage)
    assert answer.status is JobStatus.CANCELLED
    assert answer.response == {"reason": "late"}


async def test_the_portal_runs_any_coroutine_function_in_the_loop() -> None:
    async with MemoryBus() as bus, bus.thread_portal() as portal:
        recorder = await bus.subscribe(RecordingSubscriber("r"))

        def from_thread() -> int:
            portal.call(bus.send, BusDataMessage(source="thread"))
            portal.call(bus.wait_idle)
            return len(recorder.messages)

        with fail_after(5):
            assert await anyio.to_thread.run_sync(from_thread) == 1
        assert "BusPortal for <MemoryBus running" in repr(portal)
