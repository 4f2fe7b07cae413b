"""Presence between processes, on every network bus, the peer on the other event loop: a
runner started before its worker gets its first answer; a worker killed mid-job fails its
caller within the liveness bound; a pool of four members on two processes shares the jobs.
"""

from __future__ import annotations

import logging
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import anyio
import pytest
from anyio import current_time, fail_after, wait_all_tasks_blocked

from anybus import (
    JobResult,
    WorkerBus,
    WorkerChange,
    WorkerUnavailable,
    open_job,
    request,
    worker_directory,
)
from anybus._directory import LIVENESS_BEATS
from anybus.postgres import PostgresBus

from .presence_peer import drop_stream, open_peer
from .redis_support import network_bus, unique_name

pytestmark = pytest.mark.anyio

logger = logging.getLogger("anybus.tests.presence")

#: The heartbeat of the worker that is killed: short, so that it is declared gone fast.
HEARTBEAT = 0.2
#: What a loaded machine may add to the liveness bound (LIVENESS_BEATS heartbeats): the
#: hub's wake-up, the failure reaching the caller, a shared CI runner's stalls.
SLACK = 0.5
#: The jobs the pool shares (on every bus: about 3 s each on a laptop).
POOL_JOBS = 1_000
#: Jobs in flight at once, from the one runner.
IN_FLIGHT = 50


@pytest.fixture(params=["pubsub", "stream", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    """The bus between the processes: RedisBus, RedisStreamBus or PostgresBus."""
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str:
    """The shared server's url (for ``postgres``, its dsn)."""
    return str(request.getfixturevalue("postgres_dsn" if kind == "postgres" else "redis_url"))


@pytest.fixture
async def channel(url: str, kind: str) -> AsyncIterator[str]:
    """A channel (or stream) no other test uses; a stream is deleted after the test."""
    name = unique_name()
    yield name
    if kind == "stream":
        await drop_stream(url, name)


def other_backend(anyio_backend: str) -> str:
    return "trio" if anyio_backend == "asyncio" else "asyncio"


def caller_bus(kind: str, url: str, channel: str) -> WorkerBus:
    if kind == "postgres":
        return PostgresBus(url, channel=channel, name=f"caller-{channel}")
    return network_bus(kind, url, channel, name="caller")


async def test_a_runner_started_before_its_worker_gets_its_first_answer(
    url: str, kind: str, anyio_backend: str, channel: str
) -> None:
    other = other_backend(anyio_backend)
    answers: list[JobResult] = []
    async with caller_bus(kind, url, channel) as bus:
        directory = await worker_directory(bus)
        assert directory.get("late") is None

        async def call() -> None:
            answers.append(await request(bus, "late", {"x": 1}, job_name="echo", timeout=30))

        with fail_after(30):
            async with AsyncExitStack() as stack:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(call)
                    await wait_all_tasks_blocked()  # the request waits for its worker
                    assert not answers
                    process = await stack.enter_async_context(
                        open_peer(other, url, channel, kind, "late")
                    )
                # (the call has its answer)
                await request(bus, "late", job_name="stop", timeout=10)
                assert await process.wait() == 0
    (answer,) = answers
    assert answer.worker == "late"
    assert answer.response == {"x": 1, "backend": other, "worker": "late"}


async def test_a_worker_killed_mid_job_fails_its_caller_within_the_liveness_bound(
    url: str, kind: str, anyio_backend: str, channel: str
) -> None:
    bound = LIVENESS_BEATS * HEARTBEAT
    async with caller_bus(kind, url, channel) as bus:
        directory = await worker_directory(bus)
        other = other_backend(anyio_backend)
        async with open_peer(other, url, channel, kind, "doomed", heartbeat=HEARTBEAT) as process:
            with fail_after(30):
                async with open_job(bus, "doomed", job_name="block") as job:
                    assert await anext(job.updates()) == {"started": True}
                    process.send_signal(signal.SIGKILL)
                    killed_at = current_time()
                    with fail_after(bound + SLACK + 5), pytest.raises(WorkerUnavailable) as caught:
                        await job.result()
                    elapsed = current_time() - killed_at
            assert await process.wait() == -signal.SIGKILL
    logger.info("%s: killed -> WorkerUnavailable in %.3f s (bound %.3f s)", kind, elapsed, bound)
    assert elapsed <= bound + SLACK, f"declared gone {elapsed:.3f} s after the kill"
    assert caught.value.worker == "doomed"
    assert f"no heartbeat for {bound:g} s" in str(caught.value)
    assert directory.get("doomed") is None


async def test_four_pool_members_on_two_processes_share_the_jobs(
    url: str, kind: str, anyio_backend: str, channel: str
) -> None:
    other = other_backend(anyio_backend)
    jobs = POOL_JOBS
    members = ["a1@pool", "a2@pool", "b1@pool", "b2@pool"]
    answered: dict[int, str] = {}
    async with (
        caller_bus(kind, url, channel) as bus,
        open_peer(other, url, channel, kind, *members[:2]) as first,
        open_peer(other, url, channel, kind, *members[2:]) as second,
    ):
        directory = await worker_directory(bus)
        with fail_after(30):
            async for event in directory.changes():
                assert event.change is not WorkerChange.LEFT, event
                if len(directory.members("pool")) == len(members):
                    break

        pending = iter(range(jobs))

        async def caller() -> None:
            for n in pending:
                answer = await request(bus, "pool", {"n": n}, job_name="echo", timeout=30)
                assert answer.response["n"] == n
                assert answer.response["worker"] == answer.worker
                assert n not in answered
                answered[n] = answer.worker

        with fail_after(60):
            async with anyio.create_task_group() as task_group:
                for _ in range(IN_FLIGHT):
                    task_group.start_soon(caller)
            for name in ("a1", "b1"):
                await request(bus, name, job_name="stop", timeout=10)
            assert await first.wait() == 0
            assert await second.wait() == 0
    spread = Counter(answered.values())
    logger.info("%s: %d jobs over the pool: %s", kind, jobs, dict(sorted(spread.items())))
    assert sorted(answered) == list(range(jobs)), "a job was lost"
    assert set(spread) == {member.partition("@")[0] for member in members}
    fair = jobs / len(members)
    assert max(spread.values()) <= 1.5 * fair, spread
