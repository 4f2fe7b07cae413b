"""The last messages of a network bus whose scope is cancelled from outside (a timeout, Ctrl-C,
a sibling failing): the transport stays up through the ordered stop, so a worker's answer to
the jobs it was running, and a caller's cancel of its job, still go out. They used to be sent
into a transport that was being cancelled at the same moment. Both backends; the shared Redis
and Postgres servers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from anybus import JobCancelled, JobWorker, WorkerBus, request

from .jobs_support import Blocker

pytestmark = pytest.mark.anyio

TIMEOUT = 15
KINDS = ["pubsub", "stream", "postgres"]


@pytest.fixture
def make_bus(kind: str, request: pytest.FixtureRequest) -> Callable[[str], WorkerBus]:
    """Buses of one ``kind`` on one fresh channel, by name."""
    if kind == "postgres":
        from anybus.postgres import PostgresBus

        from .postgres_support import unique_channel

        dsn: str = request.getfixturevalue("postgres_dsn")
        channel = unique_channel()
        return lambda name: PostgresBus(dsn, channel=channel, name=name)
    from anybus.redis import RedisBus, RedisStreamBus

    from .redis_support import unique_name

    url: str = request.getfixturevalue("redis_url")
    channel = unique_name()
    if kind == "stream":
        return lambda name: RedisStreamBus(url, stream=channel, name=name)
    return lambda name: RedisBus(url, channel=channel, name=name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", ["async with", "bus.run"])
async def test_a_worker_cancelled_from_outside_still_answers_its_job(
    make_bus: Callable[[str], WorkerBus], form: str
) -> None:
    blocker = Blocker()
    worker_bus, caller_bus = make_bus("worker"), make_bus("caller")
    await worker_bus.subscribe(JobWorker("w", handlers={None: blocker}))
    outside = anyio.CancelScope()

    async def host() -> None:
        with outside:
            if form == "async with":
                async with worker_bus:
                    await anyio.sleep_forever()
            else:
                async with anyio.create_task_group() as task_group:
                    await task_group.start(worker_bus.run)

    with anyio.fail_after(TIMEOUT):
        async with caller_bus, anyio.create_task_group() as task_group:
            task_group.start_soon(host)

            async def cancel_when_started() -> None:
                await blocker.started.wait()
                outside.cancel()

            task_group.start_soon(cancel_when_started)
            with pytest.raises(JobCancelled, match="the worker stopped"):
                await request(caller_bus, "w")
    assert blocker.cancelled.is_set()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_caller_cancelled_from_outside_still_cancels_its_job(
    make_bus: Callable[[str], WorkerBus],
) -> None:
    blocker = Blocker()
    worker_bus, caller_bus = make_bus("worker"), make_bus("caller")
    await worker_bus.subscribe(JobWorker("w", handlers={None: blocker}))
    with anyio.fail_after(TIMEOUT):
        async with worker_bus:
            with anyio.CancelScope() as runner:  # the runner's Ctrl-C, say
                async with caller_bus, anyio.create_task_group() as task_group:

                    async def call() -> Any:
                        return await request(caller_bus, "w")

                    task_group.start_soon(call)
                    await blocker.started.wait()
                    runner.cancel()
            await blocker.cancelled.wait()  # the cancel reached the worker
