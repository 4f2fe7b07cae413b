"""Graceful shutdown (drain), idle, and the default on leaving ``async with bus:``."""

from __future__ import annotations

import logging

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from anybus import BusCancelMessage, BusDataMessage, BusMessage, MemoryBus, Undelivered
from anybus.testing import RecordingSubscriber

pytestmark = pytest.mark.anyio


async def busy(message: BusMessage) -> None:
    for _ in range(3):
        await checkpoint()


async def test_stop_with_drain_delivers_what_is_queued() -> None:
    recorder = RecordingSubscriber("r", handler=busy)
    async with MemoryBus(exit_drain=None) as bus:
        await bus.subscribe(recorder)
        for _ in range(300):
            await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            assert await bus.stop(drain=5) == []
        assert not bus.running
        assert len(recorder.messages) == 300


async def test_drain_deadline_hands_back_what_is_left(caplog: pytest.LogCaptureFixture) -> None:
    gate = anyio.Event()

    async def stuck(message: BusMessage) -> None:
        if not isinstance(message, BusCancelMessage):
            await gate.wait()

    recorder = RecordingSubscriber("r", handler=stuck)
    bus = MemoryBus()
    await bus.subscribe(recorder)
    sent = [BusDataMessage(source="t") for _ in range(4)]
    cancel = BusCancelMessage(source="t")
    async with bus:
        await bus.send(sent[0])
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)  # stuck on sent[0]
        for message in [*sent[1:], cancel]:
            await bus.send(message)
        with anyio.fail_after(5):
            await recorder.wait_for_count(2)  # the cancel is handled; the data stays stuck
            left = await bus.stop(drain=0.05)
    # sent[0] was started (and cancelled by stop); the rest is handed back.
    assert left == [Undelivered("r", m) for m in sent[1:]]
    stats = bus.statistics().subscriptions[0]
    assert (stats.undelivered, stats.queued, stats.delivered) == (3, 0, 2)
    assert "3 message(s) still queued when the drain ended" in caplog.text
    gate.set()
    async with bus:  # they were taken out: nothing is left to deliver
        await bus.wait_idle()
    assert recorder.messages == [sent[0], cancel]


async def test_leaving_the_block_drains_by_default() -> None:
    recorder = RecordingSubscriber("r", handler=busy)
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        for _ in range(200):
            await bus.send(BusDataMessage(source="t"))
    assert len(recorder.messages) == 200


async def test_exit_drain_none_keeps_the_queue_for_the_next_run() -> None:
    gate = anyio.Event()

    async def wait_gate(message: BusMessage) -> None:
        await gate.wait()

    recorder = RecordingSubscriber("r", handler=wait_gate)
    bus = MemoryBus(exit_drain=None)
    await bus.subscribe(recorder)
    async with bus:
        for _ in range(3):
            await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
    assert bus.statistics().queued == 2
    gate.set()
    async with bus:
        await bus.wait_idle()
    assert len(recorder.messages) == 3


async def test_leaving_with_an_exception_does_not_drain() -> None:
    gate = anyio.Event()

    async def wait_gate(message: BusMessage) -> None:
        await gate.wait()

    recorder = RecordingSubscriber("r", handler=wait_gate)
    bus = MemoryBus()
    await bus.subscribe(recorder)

    async def fail_inside() -> None:
        with anyio.fail_after(5):  # a drain would wait the full exit_drain of 5 s
            async with bus:
                await bus.send(BusDataMessage(source="t"))
                await bus.send(BusDataMessage(source="t"))
                await recorder.wait_for_count(1)
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):  # as it is, not in an exception group
        await fail_inside()
    assert bus.statistics().queued == 1


async def test_an_exit_drain_cut_short_by_cancellation_still_closes_the_bus() -> None:
    async def forever(message: BusMessage) -> None:
        await anyio.sleep_forever()

    before = len(anyio.get_running_tasks())
    bus = MemoryBus(exit_drain=60)
    recorder = await bus.subscribe(RecordingSubscriber("r", handler=forever))
    with anyio.CancelScope() as scope:
        async with bus:
            await bus.send(BusDataMessage(source="t"))
            await recorder.wait_for_count(1)
            scope.cancel()  # the drain on exit is cancelled at once
    assert scope.cancelled_caught
    assert not bus.running
    assert len(anyio.get_running_tasks()) == before


async def test_a_cancelled_drain_stops_the_bus_and_takes_nothing_out() -> None:
    async def forever(message: BusMessage) -> None:
        await anyio.sleep_forever()

    async with MemoryBus(exit_drain=None) as bus:
        recorder = await bus.subscribe(RecordingSubscriber("r", handler=forever))
        for _ in range(3):
            await bus.send(BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        with anyio.move_on_after(0.01) as scope:
            await bus.stop(drain=60)
        assert scope.cancelled_caught
        assert not bus.running
        assert bus.statistics().queued == 2


async def test_wait_idle_waits_for_messages_that_handlers_send() -> None:
    bus = MemoryBus()

    async def relay(message: BusMessage) -> None:
        hops = int(message.source)
        if hops < 20:
            await checkpoint()
            await bus.send(BusDataMessage(source=str(hops + 1)))

    recorder = await bus.subscribe(RecordingSubscriber("relay", handler=relay))
    async with bus:
        await bus.send(BusDataMessage(source="0"))
        with anyio.fail_after(5):
            await bus.wait_idle()
        assert len(recorder.messages) == 21


async def test_wait_idle_returns_at_once_on_an_idle_bus() -> None:
    async with MemoryBus() as bus:
        await bus.subscribe(RecordingSubscriber("r"))
        with anyio.fail_after(5):
            await bus.wait_idle()
    with anyio.fail_after(5):
        await MemoryBus().wait_idle()  # not running, nothing queued


async def test_wait_idle_is_a_checkpoint_whether_it_waits_or_not() -> None:
    """Cancelled before it is called, wait_idle() raises on an idle bus (it checkpoints) and
    on a busy one (its wait is the checkpoint: having waited, it takes no second one)."""
    async with MemoryBus() as bus:
        recorder = await bus.subscribe(RecordingSubscriber("r"))
        for busy in (False, True):
            if busy:
                await bus.send(BusDataMessage(source="t"))  # handled after the next checkpoint
            with anyio.CancelScope() as scope:
                scope.cancel()
                await bus.wait_idle()
            assert scope.cancelled_caught, f"busy={busy}"
        with anyio.fail_after(5):
            await bus.wait_idle()
        assert len(recorder.messages) == 1


async def test_wait_idle_can_be_cancelled() -> None:
    bus = MemoryBus()
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    returned = anyio.Event()

    async def wait_idle() -> None:
        await bus.wait_idle()
        returned.set()

    async with bus:
        await bus.stop()
        await bus.send(BusDataMessage(source="t"))  # queued on a stopped bus: never idle
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_idle)
            await wait_all_tasks_blocked()  # waiting
            tg.cancel_scope.cancel()
        assert not returned.is_set()
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()  # a cancelled wait left nothing behind
    assert len(recorder.messages) == 1


async def test_wait_idle_wakes_when_a_busy_subscriber_leaves() -> None:
    async def forever(message: BusMessage) -> None:
        await anyio.sleep_forever()

    async with MemoryBus() as bus:
        recorder = await bus.subscribe(RecordingSubscriber("r", handler=forever))
        await bus.send(BusDataMessage(source="t"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.wait_idle)
            with anyio.fail_after(5):
                await recorder.wait_for_count(1)
            await wait_all_tasks_blocked()
            await bus.unsubscribe(recorder)
        # wait_idle() returned once the only busy subscriber was gone


async def test_drain_logs_nothing_when_all_was_delivered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="anybus")
    async with MemoryBus() as bus:
        await bus.subscribe(RecordingSubscriber("r"))
        await bus.send(BusDataMessage(source="t"))
    assert caplog.records == []
