"""Presence on the in-memory bus: readiness, liveness, goodbyes, pools, the directory.

(tests/test_presence_processes.py runs the same across processes on every network bus.)
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import anyio
import pytest
from anyio import Event, create_task_group, current_time, fail_after, wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from anybus import (
    BusJobRequestMessage,
    BusMessage,
    BusWorkerPresenceMessage,
    JobCancelled,
    JobContext,
    JobWorker,
    MemoryBus,
    WorkerChange,
    WorkerUnavailable,
    open_job,
    request,
    wait_for_worker,
    worker_directory,
)
from anybus._presence import PRESENCE_NAME
from anybus.testing import RecordingSubscriber

from .jobs_support import Blocker

pytestmark = pytest.mark.anyio


async def echo(job: JobContext) -> dict[str, Any]:
    return dict(job.payload or {})


# --- readiness ------------------------------------------------------------------------------


async def test_a_request_sent_before_its_worker_runs_waits_for_it() -> None:
    async with MemoryBus() as bus:
        answers: list[dict[str, Any]] = []

        async def call() -> None:
            answers.append((await request(bus, "w", {"n": 1}, timeout=10)).response)

        with fail_after(10):
            async with create_task_group() as task_group:
                task_group.start_soon(call)
                await wait_all_tasks_blocked()
                assert answers == []  # waiting for "w", nothing sent
                await bus.subscribe(JobWorker("w", handlers={None: echo}))
    assert answers == [{"n": 1}]


async def test_presence_require_fails_at_once_without_sending() -> None:
    async with MemoryBus() as bus:
        requests = RecordingSubscriber("r", accepts=lambda m: isinstance(m, BusJobRequestMessage))
        await bus.subscribe(requests)
        started = current_time()
        with fail_after(5), pytest.raises(WorkerUnavailable, match="no worker or pool named 'w'"):
            await request(bus, "w", presence="require")
        assert current_time() - started < 0.5  # a memory bus knows its workers at once
        await bus.wait_idle()
    assert requests.messages == []


async def test_a_request_whose_worker_never_comes_times_out_unsent() -> None:
    async with MemoryBus() as bus:
        with fail_after(5), pytest.raises(WorkerUnavailable, match="the request was not sent"):
            await request(bus, "absent", timeout=0.05)


async def test_cancelling_the_wait_for_a_worker_sends_nothing() -> None:
    async with MemoryBus() as bus:
        seen = RecordingSubscriber("r", accepts=lambda m: m.target == "w")
        await bus.subscribe(seen)
        with fail_after(5):
            with anyio.CancelScope() as scope:
                async with create_task_group() as task_group:

                    async def enter() -> None:
                        async with open_job(bus, "w"):
                            raise AssertionError("the request went out")

                    task_group.start_soon(enter)
                    await wait_all_tasks_blocked()
                    scope.cancel()
            await bus.wait_idle()
    assert seen.messages == []  # no request, and so no cancel either


async def test_presence_off_sends_to_a_worker_that_does_not_announce() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(JobWorker("quiet", handlers={None: echo}, presence=False))
        with fail_after(5):
            assert (await request(bus, "quiet", {"a": 1}, presence="off")).response == {"a": 1}
            with pytest.raises(WorkerUnavailable):
                await request(bus, "quiet", presence="require")


# --- the directory --------------------------------------------------------------------------


async def test_the_directory_shows_the_live_workers_and_follows_changes() -> None:
    async with MemoryBus() as bus:
        directory = await worker_directory(bus)
        worker = JobWorker("w", handlers={None: echo, "resize": echo}, concurrency=3, pool="p")
        with fail_after(5):
            async with create_task_group() as task_group:
                events: list[tuple[WorkerChange, str]] = []
                got_both = Event()

                async def follow() -> None:
                    async for event in directory.changes():
                        events.append((event.change, event.worker.name))
                        if event.change is WorkerChange.LEFT:
                            got_both.set()
                            return

                task_group.start_soon(follow)
                await wait_all_tasks_blocked()
                await bus.subscribe(worker)
                info = await wait_for_worker(bus, "w")
                assert (info.name, info.pool, info.jobs, info.concurrency) == (
                    "w",
                    "p",
                    ("", "resize"),
                    3,
                )
                assert [w.name for w in directory.workers()] == ["w"]
                assert time.time() - info.seen_at < 5
                await bus.unsubscribe(worker)
                await got_both.wait()
        assert events[0] == (WorkerChange.JOINED, "w")
        assert events[-1] == (WorkerChange.LEFT, "w")
        assert directory.workers() == []


async def test_presence_costs_nothing_on_a_bus_that_does_not_use_it() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(RecordingSubscriber("plain"))
        await bus.send(BusWorkerPresenceMessage(source="x", worker="x", incarnation="1"))
        assert PRESENCE_NAME not in {sub.name for sub in bus.subscribers}


async def test_presence_options_are_checked() -> None:
    with pytest.raises(ValueError, match="heartbeat must be a positive number of seconds"):
        JobWorker("w", heartbeat=0)
    with pytest.raises(ValueError, match="pool must be a non-empty string"):
        JobWorker("w", pool="")
    async with MemoryBus() as bus:
        with pytest.raises(ValueError, match="presence must be one of 'wait', 'require', 'off'"):
            await request(bus, "w", presence="maybe")  # type: ignore[arg-type]


# --- liveness -------------------------------------------------------------------------------


class Ghost(RecordingSubscriber):
    """A worker that announces itself by hand, takes requests and never answers."""

    def __init__(self, name: str, *, heartbeat: float, incarnation: str = "one") -> None:
        super().__init__(name, accepts=lambda m: isinstance(m, BusJobRequestMessage))
        self.heartbeat = heartbeat
        self.incarnation = incarnation

    def presence(self) -> BusMessage:
        return BusWorkerPresenceMessage(
            source=self.name,
            target=PRESENCE_NAME,
            worker=self.name,
            incarnation=self.incarnation,
            heartbeat=self.heartbeat,
            sent_at=time.time(),
        )


async def test_a_worker_whose_heartbeats_stop_fails_its_jobs_within_three_beats() -> None:
    ghost = Ghost("ghost", heartbeat=0.1)
    async with MemoryBus() as bus:
        await worker_directory(bus)
        await bus.subscribe(ghost)
        await bus.send(ghost.presence())  # one announcement, then silence
        with fail_after(5):
            async with open_job(bus, "ghost") as job:
                await ghost.wait_for_count(1)
                sent = current_time()
                with pytest.raises(WorkerUnavailable, match=r"no heartbeat for 0\.3 s") as caught:
                    await job.result()
                took = current_time() - sent
    assert caught.value.worker == "ghost"
    assert took <= 3 * 0.1 + 0.5  # the bound, with room for a slow machine


async def test_a_restarted_worker_fails_the_jobs_of_its_last_run_at_once() -> None:
    ghost = Ghost("ghost", heartbeat=30)
    async with MemoryBus() as bus:
        await worker_directory(bus)
        await bus.subscribe(ghost)
        await bus.send(ghost.presence())
        with fail_after(5):
            async with open_job(bus, "ghost") as job:
                await ghost.wait_for_count(1)
                ghost.incarnation = "two"
                await bus.send(ghost.presence())
                with pytest.raises(WorkerUnavailable, match="it restarted"):
                    await job.result()


async def test_a_stopping_worker_answers_its_running_job_and_fails_its_queued_one() -> None:
    blocker = Blocker()
    worker = JobWorker("w", handlers={None: blocker})
    async with MemoryBus() as bus:
        await bus.subscribe(worker)
        with fail_after(5):
            async with open_job(bus, "w") as running, open_job(bus, "w") as queued:
                await blocker.started.wait()
                await bus.unsubscribe(worker)
                # The answer to the running job comes before the goodbye (both are data).
                with pytest.raises(JobCancelled):
                    await running.result()
                with pytest.raises(WorkerUnavailable, match="it stopped"):
                    await queued.result()


# --- pools ----------------------------------------------------------------------------------


async def test_a_pool_shares_its_jobs_fairly_and_loses_none() -> None:
    counts: Counter[str] = Counter()

    def member(index: int) -> JobWorker:
        name = f"m{index}"

        async def work(job: JobContext) -> dict[str, Any]:
            counts[name] += 1
            await checkpoint()
            return {"by": name}

        return JobWorker(name, handlers={None: work}, pool="pool", concurrency=4)

    async with MemoryBus() as bus:
        for index in range(4):
            await bus.subscribe(member(index))
        answered: Counter[str] = Counter()
        limit = anyio.Semaphore(50)

        async def one() -> None:
            async with limit:
                result = await request(bus, "pool", timeout=30)
                answered[result.worker] += 1

        with fail_after(60):
            async with create_task_group() as task_group:
                for _ in range(1000):
                    task_group.start_soon(one)
    assert sum(answered.values()) == 1000
    assert answered == counts
    assert max(answered.values()) <= 1.5 * 250, answered


async def test_a_job_sent_to_a_pool_names_the_member_that_ran_it() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(JobWorker("only", handlers={None: echo}, pool="p"))
        with fail_after(5):
            async with open_job(bus, "p") as job:
                assert job.worker == "only"
                assert job.requested == "p"
                assert (await job.result()).worker == "only"


async def test_two_live_workers_of_one_name_are_reported(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Two copies of one service, each JobWorker("resizer") on a bus of its own: every job
    # sent to the name runs on both. The caller's directory sees the name's incarnation go
    # back and forth, says so once, and fails jobs with that reason rather than a restart.
    from anybus.redis import RedisBus

    from .redis_support import unique_name

    channel = unique_name()
    one, two, caller = (RedisBus(redis_url, channel=channel) for _ in range(3))
    for bus in (one, two):
        await bus.subscribe(JobWorker("resizer", handlers={None: Blocker()}, heartbeat=0.05))
    with fail_after(10):
        async with one, two, caller:
            directory = await worker_directory(caller)
            async for event in directory.changes():
                if event.why is not None and "two live workers" in event.why:
                    break
    assert "share its name (processes" in (event.why or "")
    warnings = [r for r in caplog.records if "two live workers announce" in r.getMessage()]
    assert 1 <= len(warnings) <= 3  # once a bus that hears both (all three here), not a beat
