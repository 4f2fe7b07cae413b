"""Jobs on every bus: request(bus) and open_job(bus) against JobWorker on the memory bus and
both Redis buses, on both backends.

What the caller sees is in test_jobs_caller.py, the worker's side in test_jobs_worker.py,
cancellation in test_jobs_cancellation.py, and jobs between processes in
test_jobs_processes.py.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio import fail_after

from anybus import (
    JobContext,
    JobError,
    JobStatus,
    JobTimeout,
    JobWorker,
    MemoryBus,
    WorkerBus,
    open_job,
    request,
)

from .jobs_support import Blocker
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


async def test_request_returns_the_response(make_bus: BusMaker) -> None:
    async def add(job: JobContext) -> dict[str, Any]:
        return {"sum": job.payload["a"] + job.payload["b"], "job": job.name}

    async with make_bus() as bus:
        await bus.subscribe(JobWorker("adder", handlers={"add": add}))
        with fail_after(10):
            result = await request(bus, "adder", {"a": 2, "b": 3}, job_name="add")
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
            async with open_job(bus, "producer") as job:
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
                task_group.start_soon(partial(request, bus, "busy", job_name="block"))
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
                await request(bus, "slow", timeout=0.3)
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
        async with open_job(bus, "echo", {"n": n}) as job:
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
            result = await request(caller_bus, "shouter", {"text": "hi"})
    assert result.response == {"text": "HI"}


async def test_a_response_that_cannot_be_sent_answers_error(
    make_network_bus: BusMaker, caplog: pytest.LogCaptureFixture
) -> None:
    async def unsendable(job: JobContext) -> dict[str, Any]:
        return {"value": object()}

    async with make_network_bus() as bus:
        await bus.subscribe(JobWorker("w", handlers={None: unsendable}))
        with fail_after(10), pytest.raises(JobError, match="could not be sent") as caught:
            await request(bus, "w")
    assert caught.value.status is JobStatus.ERROR
