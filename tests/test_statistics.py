"""Statistics snapshots, the handler-error hook, and what is logged."""

from __future__ import annotations

import logging

import anyio
import pytest

from anybus import (
    BusCancelMessage,
    BusDataMessage,
    BusMessage,
    BusStatistics,
    BusWorkerErrorMessage,
    MemoryBus,
    OverflowPolicy,
    SubscriptionStatistics,
)
from anybus.testing import RecordingSubscriber

pytestmark = pytest.mark.anyio


async def test_statistics_count_what_happened() -> None:
    async def fail_on_cancel(message: BusMessage) -> None:
        if isinstance(message, BusCancelMessage):
            raise ValueError("cannot cancel")

    bus = MemoryBus()
    recorder = await bus.subscribe(
        RecordingSubscriber("r", handler=fail_on_cancel, accepts=lambda m: m.target != "skip")
    )
    await bus.subscribe(RecordingSubscriber("late-filter"), max_buffer=10)
    async with bus:
        await bus.stop()  # queue everything before anything is handled
        for _ in range(5):
            await bus.send(BusDataMessage(source="t"))
        await bus.send(BusDataMessage(source="t", target="skip"))
        await bus.send(cancel := BusCancelMessage(source="t"))

        stats = bus.statistics()
        assert isinstance(stats, BusStatistics)
        assert (stats.running, stats.sent, stats.queued, stats.delivered) == (False, 7, 14, 0)
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
        stats = bus.statistics()
        assert stats.running
    r, other = stats.subscriptions
    assert isinstance(r, SubscriptionStatistics)
    assert r == SubscriptionStatistics(
        name="r",
        queued_system=0,
        queued_data=0,
        delivered=6,  # 5 data + the cancel; the message for "skip" was filtered out
        dropped=0,
        refused=0,
        undelivered=0,
        handler_failures=1,
        last_failure=f"ValueError: cannot cancel (on {cancel.name})",
        high_water_mark=6,
        max_buffer=None,
        overflow=OverflowPolicy.BLOCK,
    )
    assert (other.delivered, other.high_water_mark, other.max_buffer) == (7, 6, 10)
    assert (stats.delivered, stats.handler_failures, stats.dropped, stats.queued) == (13, 1, 0, 0)
    assert len(recorder.messages) == 6


async def test_the_high_water_mark_of_an_unbounded_inbox_is_sampled() -> None:
    bus = MemoryBus()
    await bus.subscribe(RecordingSubscriber("r"))
    async with bus:
        await bus.wait_idle()
        for _ in range(1000):
            await bus.send(BusDataMessage(source="t"))
        await bus.wait_idle()
    # send() yields every 128 messages, and the worker drains what is there each time.
    mark = bus.statistics().subscriptions[0].high_water_mark
    assert 1 <= mark <= 1000


async def test_the_error_hook_can_forward_failures_as_messages(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus: MemoryBus

    async def forward(name: str, message: BusMessage, exc: Exception) -> None:
        await bus.send(BusWorkerErrorMessage(source=name, error=f"{message.name}: {exc}"))

    async def explode(message: BusMessage) -> None:
        if isinstance(message, BusDataMessage):
            raise RuntimeError("exploded")

    bus = MemoryBus(on_handler_error=forward)
    runner = await bus.subscribe(RecordingSubscriber("runner"))
    await bus.subscribe(RecordingSubscriber("worker", handler=explode))
    async with bus:
        await bus.send(failing := BusDataMessage(source="t"))
        with anyio.fail_after(5):
            await runner.wait_for(
                lambda seen: any(isinstance(m, BusWorkerErrorMessage) for m in seen)
            )
    errors = [m for m in runner.messages if isinstance(m, BusWorkerErrorMessage)]
    assert [(m.source, m.error) for m in errors] == [("worker", f"{failing.name}: exploded")]
    record = next(r for r in caplog.records if r.name == "anybus.dispatch")
    assert record.levelno == logging.ERROR
    assert "subscriber 'worker' failed on" in record.getMessage()


async def test_a_failing_error_hook_is_logged_and_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_hook(name: str, message: BusMessage, exc: Exception) -> None:
        raise LookupError("hook broke")

    async def explode(message: BusMessage) -> None:
        raise RuntimeError("exploded")

    bus = MemoryBus(on_handler_error=broken_hook)
    recorder = await bus.subscribe(RecordingSubscriber("w", handler=explode))
    async with bus:
        for _ in range(3):
            await bus.send(BusDataMessage(source="t"))
        await bus.wait_idle()
    assert len(recorder.messages) == 3
    hook_failures = [r for r in caplog.records if "hook failed" in r.getMessage()]
    assert len(hook_failures) == 3
    assert all(r.exc_info and isinstance(r.exc_info[1], LookupError) for r in hook_failures)


async def test_lifecycle_events_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anybus")
    async with MemoryBus() as bus:
        recorder = await bus.subscribe(RecordingSubscriber("r"))
        await bus.unsubscribe(recorder)
    messages = [r.getMessage() for r in caplog.records if r.name == "anybus.bus"]
    assert any("dispatch started" in m for m in messages)
    assert any("subscribed 'r'" in m for m in messages)
    assert any("unsubscribed 'r'" in m for m in messages)
    assert any("dispatch stopped" in m for m in messages)
