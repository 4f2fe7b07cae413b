"""Jobs between two processes over Redis and over Postgres, one on asyncio and one on trio."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio import current_time, fail_after

from anybus import (
    BusJobResponseMessage,
    BusMessage,
    BusWorkerReadyMessage,
    JobError,
    JobStatus,
    JobTimeout,
    WorkerBus,
    open_job,
    request,
)
from anybus.postgres import PostgresBus
from anybus.testing import RecordingSubscriber

from .redis_support import network_bus, unique_name

pytestmark = pytest.mark.anyio

PEER = Path(__file__).with_name("job_peer.py")

#: How long a cancel may take to cancel the job's scope in the other process and come back.
CANCEL_BOUND = 5.0


def _answers(seen: Sequence[BusMessage], job_id: str) -> list[BusJobResponseMessage]:
    return [m for m in seen if isinstance(m, BusJobResponseMessage) and m.job_id == job_id]


@pytest.fixture(params=["pubsub", "stream", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    """The bus between the two processes: RedisBus, RedisStreamBus or PostgresBus."""
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str:
    """The shared server's url (for ``postgres``, its dsn)."""
    return str(request.getfixturevalue("postgres_dsn" if kind == "postgres" else "redis_url"))


async def test_jobs_between_an_asyncio_and_a_trio_process(
    url: str, anyio_backend: str, kind: str
) -> None:
    other = "trio" if anyio_backend == "asyncio" else "asyncio"
    channel = unique_name()
    bus: WorkerBus
    if kind == "postgres":
        bus = PostgresBus(url, channel=channel, name="caller")
    else:
        bus = network_bus(kind, url, channel, name="caller")
    watch = RecordingSubscriber(
        "watch", accepts=lambda m: isinstance(m, BusJobResponseMessage | BusWorkerReadyMessage)
    )
    async with bus:
        await bus.subscribe(watch)
        process = await anyio.open_process([sys.executable, str(PEER), other, url, channel, kind])
        try:
            with fail_after(60):
                await watch.wait_for(
                    lambda seen: any(isinstance(m, BusWorkerReadyMessage) for m in seen)
                )

                # request/reply, and the answer comes from the other event loop
                result = await request(bus, "remote", {"x": 1}, job_name="echo", timeout=10)
                assert result.response == {"x": 1, "backend": other}

                # updates, then a stream, then the response
                async with open_job(bus, "remote", job_name="progress") as job:
                    updates = [update async for update in job.updates()]
                    chunks = [chunk async for chunk in job.stream()]
                    assert (await job.result()).response == {"backend": other}
                assert updates == [{"step": 0}, {"step": 1}, {"step": 2}]
                assert chunks == [{"n": 0}, {"n": 1}, {"n": 2}]
                assert job.stream_metadata == {"chunks": 3}

                # cancelling the caller's scope cancels the job's scope in the other process
                with anyio.CancelScope() as scope:
                    async with open_job(bus, "remote", job_name="block") as blocked:
                        assert await anext(blocked.updates()) == {"started": True}
                        cancelled_at = current_time()
                        scope.cancel()
                        await blocked.result()
            with fail_after(CANCEL_BOUND):
                await watch.wait_for(lambda seen: bool(_answers(seen, blocked.id)))
            elapsed = current_time() - cancelled_at
            (answer,) = _answers(watch.messages, blocked.id)
            assert answer.status is JobStatus.CANCELLED
            assert answer.response == {"reason": "the caller left the job's scope"}
            assert elapsed < CANCEL_BOUND

            with fail_after(60):
                # hundreds of concurrent jobs, each answer matched to its caller
                results: dict[int, Any] = {}

                async def call(n: int) -> None:
                    answer = await request(bus, "remote", {"n": n}, job_name="echo", timeout=30)
                    results[n] = answer.response["n"]

                async with anyio.create_task_group() as task_group:
                    for n in range(200):
                        task_group.start_soon(call, n)
                assert results == {n: n for n in range(200)}

                # the worker announces a failure: outstanding jobs fail at once, no hang
                with pytest.raises(JobError, match="out of memory"):
                    await request(bus, "remote", job_name="announce", timeout=30)

                # the worker dies mid-job: the deadline turns it into an error, not a hang
                with pytest.raises(JobTimeout):
                    await request(bus, "remote", job_name="crash", timeout=2)
                assert await process.wait() == 3
        finally:
            if process.returncode is None:
                process.kill()
            await process.aclose()
