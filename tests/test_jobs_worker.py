"""Jobs from the worker's side: JobWorker's concurrency limit and queue, update requests,
declared handlers, which requests it takes, and the run_in_bus hook it runs on.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio import Event, fail_after, wait_all_tasks_blocked

from anybus import (
    BusDataMessage,
    BusJobRequestMessage,
    BusJobUpdateRequestMessage,
    BusLike,
    BusMessage,
    JobContext,
    JobError,
    JobWorker,
    MemoryBus,
    job_handler,
    open_job,
    request,
)
from anybus.testing import RecordingSubscriber

from .jobs_support import Blocker

pytestmark = pytest.mark.anyio


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
                    task_group.start_soon(request, bus, "w", {"n": n})
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
                open_job(bus, "w", job_name="progress") as running,
                open_job(bus, "w", job_name="block") as queued,
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
            async with open_job(bus, "nobody-home", presence="off") as ghost:
                pass
            unknown = RecordingSubscriber("u", accepts=lambda m: m.target == "probe")
            await bus.subscribe(unknown)
            await bus.send(BusJobUpdateRequestMessage(source="probe", target="w", job_id="nope"))
            await unknown.wait_for_count(1)
    assert ghost.done is False
    assert unknown.messages[0].update == {"state": "unknown"}  # type: ignore[attr-defined]


async def test_a_job_context_answers_nothing_once_its_handler_is_done() -> None:
    kept: list[JobContext] = []
    blocker = Blocker()

    async def done_at_once(job: JobContext) -> dict[str, Any]:
        kept.append(job)
        return {"ok": True}

    async def blocked(job: JobContext) -> None:
        kept.append(job)
        await blocker(job)

    worker = JobWorker("w", handlers={"quick": done_at_once, "slow": blocked})
    seen = RecordingSubscriber("caller", accepts=lambda m: m.target == "caller")
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        await bus.subscribe(seen)
        with fail_after(5):
            assert (await request(bus, "w", job_name="quick")).response == {"ok": True}
            async with open_job(bus, "w", job_name="slow") as job:
                await blocker.started.wait()
                await job.cancel("enough")
                with pytest.raises(JobError):
                    await job.result()
            await bus.wait_idle()
            quick, slow = kept
            for ended in (quick, slow):
                with pytest.raises(anyio.ClosedResourceError, match=rf"job {ended.id} .* ended"):
                    await ended.update({"late": True})
                with pytest.raises(anyio.ClosedResourceError, match="not sent"):
                    await ended.stream_data({"late": True})
                ended.requester = "caller"  # had it been sent, `seen` would have it
                with pytest.raises(anyio.ClosedResourceError):
                    await ended.stream_end()
            await bus.wait_idle()
    assert seen.messages == []


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        JobWorker("w", concurrency=0)


# --- which requests a worker takes, and how it declares handlers ----------------------------


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
            assert (await request(bus, "greeter", {"who": "ann"}, job_name="greet")).response == {
                "text": "hello ann"
            }
            assert (await request(bus, "greeter")).response == {"text": "hello"}
            assert (await request(bus, "greeter", job_name="wave")).response == {"text": "o/"}
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
            result = await request(bus, "b")
            await bus.wait_idle()
    assert ran == [result.job_id]


async def test_a_duplicate_request_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    blocker = Blocker()
    worker = JobWorker("w", handlers={None: blocker})
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with open_job(bus, "w", job_id="same"):
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
            assert (await request(first, "w", {"a": 1})).response == {"a": 1}
            await second.subscribe(worker)
            with pytest.raises(JobError, match="serves another bus"):
                await request(second, "w", {"a": 2}, presence="off")
            assert (await request(first, "w", {"a": 3})).response == {"a": 3}
    assert "a JobWorker serves one bus" in caplog.text
    assert worker.completed == 2


# --- the run_in_bus hook --------------------------------------------------------------------


async def test_a_failing_run_in_bus_is_logged_and_delivery_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Faulty(RecordingSubscriber):
        async def run_in_bus(self, bus: BusLike) -> None:
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
        async def run_in_bus(self, bus: BusLike) -> None:
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
