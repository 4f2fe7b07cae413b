"""W5 as a test: churn leaves no task and no subscription behind."""

from __future__ import annotations

import anyio
import pytest

from anybus import BusCancelMessage, BusDataMessage, MemoryBus
from anybus.testing import RecordingSubscriber

pytestmark = pytest.mark.anyio


def live_tasks() -> int:
    return len(anyio.get_running_tasks())


async def test_subscribe_send_unsubscribe_cycles_leave_nothing_behind() -> None:
    async with MemoryBus() as bus:
        await bus.wait_idle()
        baseline = live_tasks()
        for cycle in range(1000):
            recorder = await bus.subscribe(RecordingSubscriber(f"worker-{cycle}"))
            for _ in range(10):
                await bus.send(BusDataMessage(source="t"))
            await bus.wait_idle()
            assert len(recorder.messages) == 10
            await bus.unsubscribe(recorder)
        assert live_tasks() == baseline
        assert bus.subscribers == []
        assert bus.statistics().subscriptions == ()


async def test_start_stop_cycles_leave_nothing_behind() -> None:
    before = live_tasks()
    bus = MemoryBus()
    recorders = [await bus.subscribe(RecordingSubscriber(f"r{i}")) for i in range(5)]
    async with bus:
        baseline = -1
        for cycle in range(101):
            await bus.stop()
            await bus.send(BusDataMessage(source="t"))
            await bus.start()
            await bus.wait_idle()
            if cycle == 0:  # workers start with their first message: count once they have
                baseline = live_tasks()
            assert live_tasks() == baseline
            assert all(len(r.messages) == cycle + 1 for r in recorders)
    assert live_tasks() == before
    # And as whole runs of the bus, in both forms.
    for _ in range(100):
        async with bus:
            pass
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            await bus.stop()
    assert live_tasks() == before


async def test_a_subscription_makes_its_system_lane_with_its_first_system_message() -> None:
    # W5's cost: a lane is a memory object stream pair (about 9 us to make), and most
    # short-lived subscriptions never get a system message. The lane still works once made,
    # and a system message still overtakes queued data.
    async with MemoryBus() as bus:
        recorder = await bus.subscribe(RecordingSubscriber("worker"))
        inbox = bus._subscriptions["worker"]
        for _ in range(3):
            await bus.send(BusDataMessage(source="t"))
        await bus.wait_idle()
        assert inbox.system_send is None
        await bus.stop()  # queue data behind a system message while nothing is handled
        for _ in range(3):
            await bus.send(BusDataMessage(source="t"))
        await bus.send(BusCancelMessage(source="t"))
        assert inbox.system_send is not None
        await bus.start()
        with anyio.fail_after(5):
            await recorder.wait_for_count(7)
        assert isinstance(recorder.messages[3], BusCancelMessage)
        assert inbox.system_send is not None
        await bus.unsubscribe(recorder)
    assert inbox.system_send._closed  # the lane made later is closed with the rest
