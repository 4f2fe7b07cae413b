"""The bus's lifecycle: the two ways to run it, stop/start, and what each leaves behind."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from anybus import (
    BusCancelMessage,
    BusDataMessage,
    BusMessage,
    BusStateError,
    MemoryBus,
)
from anybus.testing import RecordingSubscriber

pytestmark = pytest.mark.anyio


def task_count() -> int:
    return len(anyio.get_running_tasks())


async def test_async_with_runs_and_leaves_no_task_behind() -> None:
    before = task_count()
    bus = MemoryBus()
    recorder = RecordingSubscriber("r")
    async with bus:
        assert bus.running
        await bus.subscribe(recorder)
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        assert task_count() > before
    assert not bus.running
    assert task_count() == before


async def test_run_in_callers_task_group_until_stop() -> None:
    before = task_count()
    bus = MemoryBus()
    recorder = RecordingSubscriber("r")
    await bus.subscribe(recorder)
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        assert bus.running
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        await bus.stop()
        assert not bus.running
    assert task_count() == before
    # After stop() the run form has ended: there is no scope left to start in.
    with pytest.raises(BusStateError):
        await bus.start()


async def test_run_ends_when_the_callers_scope_is_cancelled() -> None:
    before = task_count()
    bus = MemoryBus()
    await bus.subscribe(RecordingSubscriber("r"))
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        tg.cancel_scope.cancel()
    assert not bus.running
    assert task_count() == before
    # ... and the bus can run again.
    async with bus:
        assert bus.running


async def test_start_without_a_running_scope_names_both_forms() -> None:
    bus = MemoryBus()
    with pytest.raises(BusStateError) as info:
        await bus.start()
    assert "async with bus:" in str(info.value)
    assert "task_group.start(bus.run)" in str(info.value)


async def test_running_twice_is_an_error() -> None:
    bus = MemoryBus()
    async with bus:
        with pytest.raises(BusStateError, match="already running"):
            await bus.__aenter__()
        with pytest.raises(BusStateError, match="already running"):
            await bus.run()


async def test_stop_and_start_inside_async_with() -> None:
    bus = MemoryBus()
    recorder = RecordingSubscriber("r")
    async with bus:
        await bus.subscribe(recorder)
        await bus.stop()
        await bus.stop()  # idempotent
        assert not bus.running
        await bus.send(BusDataMessage(source="t"))
        await wait_all_tasks_blocked()
        assert recorder.messages == []
        await bus.start()
        await bus.start()  # idempotent
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)


async def test_messages_sent_before_start_are_dispatched_system_first() -> None:
    bus = MemoryBus()
    recorder = RecordingSubscriber("r")
    await bus.subscribe(recorder)
    data = [BusDataMessage(source="t") for _ in range(5)]
    cancels = [BusCancelMessage(source="t") for _ in range(2)]
    for message in data[:3]:
        await bus.send(message)
    await bus.send(cancels[0])
    for message in data[3:]:
        await bus.send(message)
    await bus.send(cancels[1])
    assert "7 queued" in repr(bus)
    async with bus:
        with anyio.fail_after(5):
            await recorder.wait_for_count(7)
    assert recorder.messages == [*cancels, *data]


async def test_stop_cancels_a_handler_that_never_returns() -> None:
    started = anyio.Event()
    finished: list[str] = []

    async def hang(message: BusMessage) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            finished.append(message.name)

    bus = MemoryBus()
    await bus.subscribe(RecordingSubscriber("hang", handler=hang))
    async with bus:
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await started.wait()
            await bus.stop()
        # stop() returned only after the handler had unwound.
        assert len(finished) == 1


async def test_stop_from_another_task_and_inside_a_timeout() -> None:
    started = anyio.Event()
    bus = MemoryBus()

    async def hang(message: BusMessage) -> None:
        started.set()
        await anyio.sleep_forever()

    await bus.subscribe(RecordingSubscriber("hang", handler=hang))
    async with bus, anyio.create_task_group() as tg:
        await bus.send(BusDataMessage(source="t"))
        await started.wait()

        async def stopper() -> None:
            with anyio.fail_after(5):
                await bus.stop()

        tg.start_soon(stopper)
    assert not bus.running


async def test_cancelled_stop_still_shuts_dispatch_down() -> None:
    release = anyio.Event()

    async def stubborn(message: BusMessage) -> None:
        # A handler that takes a moment to unwind after it is cancelled.
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await release.wait()

    bus = MemoryBus()
    recorder = RecordingSubscriber("stubborn", handler=stubborn)
    await bus.subscribe(recorder)
    async with bus:
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        with anyio.CancelScope() as scope:
            scope.cancel()
            await bus.stop()  # the wait is cancelled, the shutdown is not
        assert scope.cancelled_caught
        assert not bus.running
        release.set()
        with anyio.fail_after(5):
            await bus.stop()  # waits for the rest of the shutdown
        assert recorder.messages  # the handler did run, and has now unwound
        await bus.start()
        assert bus.running


async def test_stop_called_by_a_handler_cancels_that_handler_too() -> None:
    bus = MemoryBus()
    unwound = anyio.Event()

    async def stop_the_bus(message: BusMessage) -> None:
        try:
            await bus.stop()
        finally:
            unwound.set()

    await bus.subscribe(RecordingSubscriber("r", handler=stop_the_bus))
    async with bus:
        await bus.send(BusCancelMessage(source="t"))
        with anyio.fail_after(5):
            await unwound.wait()
        assert not bus.running


async def test_subscribe_is_idempotent_per_name(caplog: pytest.LogCaptureFixture) -> None:
    bus = MemoryBus()
    first = RecordingSubscriber("same")
    await bus.subscribe(first)
    await bus.subscribe(first)
    await bus.subscribe(RecordingSubscriber("same"))
    assert bus.subscribers == [first]
    assert "already subscribed" in caplog.text
    async with bus:
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await first.wait_for_count(1)
        await wait_all_tasks_blocked()
    assert len(first.messages) == 1


async def test_unsubscribe_cancels_only_that_subscribers_workers() -> None:
    cancelled = anyio.Event()
    started = anyio.Event()

    async def hang(message: BusMessage) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    bus = MemoryBus()
    leaving = RecordingSubscriber("leaving", handler=hang)
    staying = RecordingSubscriber("staying")
    async with bus:
        await bus.subscribe(leaving)
        await bus.subscribe(staying)
        await bus.send(BusDataMessage(source="t"))
        # Queue more for the leaving subscriber: unsubscribing discards it.
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await started.wait()
            await bus.unsubscribe(leaving)
        assert cancelled.is_set()
        assert bus.subscribers == [staying]
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await staying.wait_for_count(3)
        await bus.unsubscribe(leaving)  # no-op
    assert len(leaving.messages) == 1


async def test_unsubscribe_while_stopped_discards_the_queue() -> None:
    bus = MemoryBus()
    recorder = RecordingSubscriber("r")
    await bus.subscribe(recorder)
    await bus.send(BusDataMessage(source="t"))
    assert "1 queued" in repr(bus)
    await bus.unsubscribe(recorder)
    assert repr(bus) == "<MemoryBus stopped, 0 subscribers, 0 queued>"
    await bus.subscribe(recorder)
    async with bus:
        await wait_all_tasks_blocked()
    assert recorder.messages == []


async def test_unsubscribe_from_inside_own_handler() -> None:
    bus = MemoryBus()

    async def leave(message: BusMessage) -> None:
        await bus.unsubscribe(recorder)

    recorder = RecordingSubscriber("r", handler=leave)
    other = RecordingSubscriber("other")
    async with bus:
        await bus.subscribe(recorder)
        await bus.subscribe(other)
        await bus.send(BusDataMessage(source="t"))
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await other.wait_for_count(2)
            await wait_all_tasks_blocked()
    assert len(recorder.messages) == 1
    assert bus.subscribers == [other]


async def test_cancelled_unsubscribe_still_removes_the_subscriber() -> None:
    release = anyio.Event()

    async def stubborn(message: BusMessage) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await release.wait()

    bus = MemoryBus()
    recorder = RecordingSubscriber("r", handler=stubborn)
    async with bus:
        await bus.subscribe(recorder)
        await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        with anyio.move_on_after(0) as scope:
            await bus.unsubscribe(recorder)
        assert scope.cancelled_caught
        assert bus.subscribers == []
        release.set()


async def test_many_start_stop_cycles_leave_no_task_behind() -> None:
    before = task_count()
    bus = MemoryBus()
    recorders = [RecordingSubscriber(f"r{i}") for i in range(3)]
    for recorder in recorders:
        await bus.subscribe(recorder)
    async with bus:
        baseline = task_count()
        for cycle in range(50):
            await bus.stop()
            await bus.send(BusDataMessage(source="t"))
            await bus.start()
            with anyio.fail_after(5):
                for recorder in recorders:
                    await recorder.wait_for_count(cycle + 1)
            assert task_count() == baseline
    assert task_count() == before


async def test_repr_tells_the_state() -> None:
    bus = MemoryBus()
    assert repr(bus) == "<MemoryBus stopped, 0 subscribers, 0 queued>"
    await bus.subscribe(RecordingSubscriber("a"))
    await bus.send(BusDataMessage(source="t"))
    await bus.send(BusCancelMessage(source="t"))
    assert repr(bus) == "<MemoryBus stopped, 1 subscriber, 2 queued>"
    async with bus:
        await wait_all_tasks_blocked()
        assert repr(bus) == "<MemoryBus running, 1 subscriber, 0 queued>"
