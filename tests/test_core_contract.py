"""Promises of the core that once failed: bounds per bus, a cancelled send, a job left early."""

from __future__ import annotations

from contextvars import ContextVar

import anyio
import anyio.lowlevel
import pytest
from anyio import CancelScope, fail_after, wait_all_tasks_blocked

from anybus import (
    BusDataMessage,
    BusMessage,
    BusWorkerErrorMessage,
    JobContext,
    JobError,
    JobWorker,
    MemoryBus,
    current_bus,
    open_job,
)
from anybus.testing import RecordingSubscriber

pytestmark = pytest.mark.anyio


async def test_a_handler_flooding_another_bus_waits_for_room_there() -> None:
    """Only a handler sending into its *own* bus is admitted over a full ``block`` bound."""
    gate = anyio.Event()
    sent = 0

    async def slow(message: BusMessage) -> None:
        await gate.wait()

    async def flood(message: BusMessage) -> None:
        nonlocal sent
        assert current_bus() is a
        for _ in range(50):
            await b.send(BusDataMessage(source="flood"))
            sent += 1

    async with MemoryBus() as a, MemoryBus(max_buffer=10, overflow="block") as b:
        await b.subscribe(slow, name="slow")
        await a.subscribe(flood, name="flood")
        await a.send(BusDataMessage(source="t"))
        await wait_all_tasks_blocked()
        # One taken by the slow handler, ten queued: the eleventh send waits.
        assert sent == 11
        (stats,) = b.statistics().subscriptions
        assert stats.high_water_mark == 10
        gate.set()
        with fail_after(5):
            await a.wait_idle()
            await b.wait_idle()
    assert sent == 50


async def test_a_handler_sending_into_its_own_full_bus_is_admitted_over_the_bound() -> None:
    """The escape that keeps workers answering each other from deadlocking still holds."""
    answered = 0

    async def answer(message: BusMessage) -> None:
        nonlocal answered
        if message.source == "t":
            for _ in range(20):
                await bus.send(BusDataMessage(source="answer"))
        else:
            answered += 1

    async with MemoryBus(max_buffer=5, overflow="block") as bus:
        await bus.subscribe(answer, name="answer")
        await bus.send(BusDataMessage(source="t"))
        with fail_after(5):
            await bus.wait_idle()
        (stats,) = bus.statistics().subscriptions
    assert answered == 20
    assert stats.high_water_mark > 5


async def test_a_job_handler_waits_for_room_even_on_its_own_bus() -> None:
    """Job handlers run outside the subscriber's workers: no escape for them."""
    gate = anyio.Event()
    sent = 0

    async def slow(message: BusMessage) -> None:
        if message.source == "job":
            await gate.wait()

    async def flood(job: JobContext) -> None:
        nonlocal sent
        assert current_bus() is None
        for _ in range(30):
            await bus.send(BusDataMessage(source="job"))
            sent += 1

    async with MemoryBus() as bus:
        await bus.subscribe(slow, name="slow", max_buffer=4, overflow="block")
        await bus.subscribe(JobWorker("w", handlers={None: flood}), max_buffer=None)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(_run_job, bus)
            with fail_after(5):
                while sent < 5:
                    await wait_all_tasks_blocked()
            await wait_all_tasks_blocked()
            assert sent == 5  # one being handled, four queued; the sixth waits
            gate.set()
    assert sent == 30


async def _run_job(bus: MemoryBus) -> None:
    async with open_job(bus, "w") as job:
        await job.result()


async def test_a_cancelled_send_has_delivered_nothing() -> None:
    """``send()`` checks for cancellation before it delivers, at its scheduling point (once
    every 128 sends): raising ``Cancelled`` means the message went nowhere."""
    recorder = RecordingSubscriber("r")
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        for _ in range(127):
            await bus.send(BusDataMessage(source="t"))
        with CancelScope() as scope:
            scope.cancel()
            await bus.send(BusDataMessage(source="cancelled"))
        assert scope.cancelled_caught
        await bus.send(BusDataMessage(source="after"))
        with fail_after(5):
            await bus.wait_idle()
    assert [m.source for m in recorder.messages].count("cancelled") == 0
    assert len(recorder.messages) == 128
    assert bus.statistics().sent == 128


async def test_leaving_a_job_after_a_worker_error_cancels_it_at_the_worker() -> None:
    """A :class:`JobError` from the worker's error announcement still cancels the job there,
    and the bus's exit does not wait for it."""
    started = anyio.Event()
    cancelled = anyio.Event()

    async def block(job: JobContext) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    worker = JobWorker("w", handlers={None: block})
    with fail_after(4):  # the exit drain alone would wait 5 s for a job left running
        async with MemoryBus() as bus:
            await bus.subscribe(worker)
            async with open_job(bus, "w") as job:
                await started.wait()
                await bus.send(BusWorkerErrorMessage(source="w", error="disk full"))
                with pytest.raises(JobError, match="reported an error"):
                    await job.result()
            await cancelled.wait()
    assert worker.running_jobs == []


# --- found in review: stop() and start() against lazily started workers -----------------------


async def test_a_message_queued_when_stop_is_called_is_handled_after_start() -> None:
    """A data worker started by a send but not run yet takes nothing after ``stop()``."""
    started: list[str] = []

    async def record(message: BusMessage) -> None:
        started.append(message.id)
        await anyio.lowlevel.checkpoint()

    async with MemoryBus() as bus:
        await bus.subscribe(record, name="r")
        await bus.send(message := BusDataMessage(source="t"))  # starts the worker, not run yet
        await bus.stop()
        (stats,) = bus.statistics().subscriptions
        assert (stats.queued_data, started) == (1, [])
        await bus.start()
        with fail_after(5):
            await bus.wait_idle()
    assert started == [message.id]


async def test_wait_idle_returns_once_stop_cancelled_the_busy_handler() -> None:
    running = anyio.Event()

    async def block(message: BusMessage) -> None:
        running.set()
        await anyio.sleep_forever()

    async with MemoryBus() as bus, anyio.create_task_group() as task_group:
        await bus.subscribe(block, name="b")
        await bus.send(BusDataMessage(source="t"))
        await running.wait()
        idle = anyio.Event()

        async def wait() -> None:
            await bus.wait_idle()
            idle.set()

        task_group.start_soon(wait)
        await wait_all_tasks_blocked()
        await bus.stop()
        await bus.start()
        with fail_after(5):
            await idle.wait()


async def test_a_handler_stopping_its_bus_under_run_returns_at_once() -> None:
    stopped = anyio.Event()

    async def stop_the_bus(message: BusMessage) -> None:
        try:
            await bus.stop()
        finally:
            stopped.set()

    bus = MemoryBus()
    await bus.subscribe(stop_the_bus, name="s")
    with fail_after(3):  # the shielded cleanup wait alone would take 10 s
        async with anyio.create_task_group() as task_group:
            await task_group.start(bus.run)
            await bus.send(BusDataMessage(source="t"))
            await stopped.wait()
    assert not bus.running


async def test_a_stop_overlapping_a_start_waits_only_for_its_own_workers() -> None:
    """A ``stop()`` that waits while a ``start()`` begins the next period returns once the
    old workers have ended; it does not wait for the new ones."""
    release = anyio.Event()
    running = anyio.Event()

    async def shielded(message: BusMessage) -> None:
        running.set()
        with CancelScope(shield=True):
            await release.wait()

    async with MemoryBus() as bus, anyio.create_task_group() as task_group:
        await bus.subscribe(shielded, name="s")
        await bus.send(BusDataMessage(source="t"))
        await running.wait()
        with anyio.move_on_after(0):  # a stop() that gives up at once
            await bus.stop()
        task_group.start_soon(bus.start)
        await wait_all_tasks_blocked()
        stopped = anyio.Event()

        async def stop() -> None:
            await bus.stop()
            stopped.set()

        task_group.start_soon(stop)
        await wait_all_tasks_blocked()
        release.set()
        with fail_after(5):
            await stopped.wait()


async def test_workers_run_in_the_context_the_bus_runs_in() -> None:
    """A handler does not see the context variables of the sender whose message happened to
    start its worker; ``run_in_bus()`` has no handler's escape from the bounds."""
    seen: list[str] = []

    async def record(message: BusMessage) -> None:
        seen.append(_request.get())

    async with MemoryBus() as bus:
        await bus.subscribe(record, name="r")
        token = _request.set("request-A")
        try:
            await bus.send(BusDataMessage(source="t"))  # starts the worker
        finally:
            _request.reset(token)
        with fail_after(5):
            await bus.wait_idle()
    assert seen == ["-"]


_request: ContextVar[str] = ContextVar("request", default="-")
