"""Bounded inboxes and their overflow policies, on the memory bus."""

from __future__ import annotations

import logging
import re

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from anybus import (
    BusCancelMessage,
    BusDataMessage,
    BusMessage,
    BusOverflowError,
    MemoryBus,
    OverflowPolicy,
)
from anybus.testing import RecordingSubscriber

pytestmark = pytest.mark.anyio


def data(count: int) -> list[BusMessage]:
    return [BusDataMessage(source="t") for _ in range(count)]


async def test_drop_newest_keeps_the_first_messages() -> None:
    bus = MemoryBus(max_buffer=3, overflow="drop_newest")
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    sent = data(5)
    async with bus:
        await bus.stop()  # nothing is handled: the inbox fills up
        for message in sent:
            await bus.send(message)
        stats = bus.statistics().subscriptions[0]
        assert (stats.queued_data, stats.dropped, stats.high_water_mark) == (3, 2, 3)
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert recorder.messages == sent[:3]


async def test_drop_oldest_keeps_the_latest_messages(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anybus")
    bus = MemoryBus(max_buffer=3, overflow=OverflowPolicy.DROP_OLDEST)
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    sent = data(6)
    async with bus:
        await bus.stop()
        for message in sent:
            await bus.send(message)
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert recorder.messages == sent[3:]
    drops = [r for r in caplog.records if "dropped" in r.getMessage()]
    # One warning when the subscriber starts dropping, then debug lines only.
    assert [r.levelno for r in drops] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "inbox of 'r' full" in drops[0].getMessage()
    assert bus.statistics().subscriptions[0].dropped == 3


@pytest.mark.parametrize("overflow", ["drop_oldest", "drop_newest", "error", "block"])
async def test_system_messages_are_never_bounded(overflow: str) -> None:
    bus = MemoryBus(max_buffer=1, overflow=overflow)
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    cancels = [BusCancelMessage(source="t") for _ in range(10)]
    async with bus:
        await bus.stop()
        for message in cancels:
            await bus.send(message)  # never blocks, drops or refuses, whatever the policy
        assert bus.statistics().subscriptions[0].queued_system == 10
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert recorder.messages == cancels


async def test_error_policy_refuses_and_names_the_full_subscriber() -> None:
    bus = MemoryBus()
    strict = await bus.subscribe(RecordingSubscriber("strict"), max_buffer=2, overflow="error")
    relaxed = await bus.subscribe(RecordingSubscriber("relaxed"))
    sent = data(3)
    async with bus:
        await bus.stop()
        await bus.send(sent[0])
        await bus.send(sent[1])
        with pytest.raises(BusOverflowError) as info:
            await bus.send(sent[2])
        assert info.value.subscribers == ("strict",)
        assert str(info.value) == (
            f"inbox full for subscriber(s) 'strict': {sent[2].name} was not queued for them; "
            "raise their max_buffer, or choose another overflow policy"
        )
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert strict.messages == sent[:2]
    assert relaxed.messages == sent  # the others still got it
    assert bus.statistics().subscriptions[0].refused == 1


async def test_block_makes_the_sender_wait_for_room() -> None:
    release = anyio.Event()

    async def slow(message: BusMessage) -> None:
        await release.wait()

    async with MemoryBus(max_buffer=2) as bus:
        recorder = await bus.subscribe(RecordingSubscriber("r", handler=slow))
        sent = data(4)
        await bus.send(sent[0])
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)  # its handler holds sent[0]
        await bus.send(sent[1])
        await bus.send(sent[2])  # the inbox is full now
        finished = anyio.Event()

        async def blocked_send() -> None:
            await bus.send(sent[3])
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_send)
            await wait_all_tasks_blocked()
            assert not finished.is_set()
            release.set()
            with anyio.fail_after(5):
                await finished.wait()
        await bus.wait_idle()
    assert recorder.messages == sent
    assert bus.statistics().subscriptions[0].high_water_mark == 2


async def test_a_cancelled_blocked_send_queues_the_message_nowhere() -> None:
    release = anyio.Event()

    async def slow(message: BusMessage) -> None:
        await release.wait()

    async with MemoryBus() as bus:
        full = await bus.subscribe(RecordingSubscriber("full", handler=slow), max_buffer=1)
        other = await bus.subscribe(RecordingSubscriber("other"))
        sent = data(3)
        await bus.send(sent[0])
        with anyio.fail_after(5):
            await full.wait_for_count(1)
        await bus.send(sent[1])  # full's inbox is now full
        with anyio.CancelScope() as scope:
            scope.cancel()
            await bus.send(sent[2])
        assert scope.cancelled_caught
        release.set()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert full.messages == sent[:2]
    assert other.messages == sent[:2]  # not half-sent: nobody got sent[2]


async def test_a_blocked_send_waits_for_a_stopped_bus_to_start() -> None:
    bus = MemoryBus(max_buffer=1)
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    sent = data(2)
    async with bus:
        await bus.stop()
        await bus.send(sent[0])
        async with anyio.create_task_group() as tg:
            tg.start_soon(bus.send, sent[1])
            await wait_all_tasks_blocked()
            assert recorder.messages == []
            await bus.start()
        await bus.wait_idle()
    assert recorder.messages == sent


async def test_unsubscribing_wakes_a_sender_blocked_on_that_inbox() -> None:
    bus = MemoryBus(max_buffer=1)
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    finished = anyio.Event()

    async def blocked_send() -> None:
        await bus.send(BusDataMessage(source="t"))
        finished.set()

    async with bus:
        await bus.stop()
        await bus.send(BusDataMessage(source="t"))  # bus stopped: stays queued, inbox full
        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_send)
            await wait_all_tasks_blocked()
            assert not finished.is_set()
            with anyio.fail_after(5):
                await bus.unsubscribe(recorder)
                await finished.wait()
        assert bus.subscribers == []
    assert recorder.messages == []


async def test_handlers_sending_on_a_full_bus_do_not_deadlock() -> None:
    # Two workers answer each other through inboxes bounded at 1 under "block": if sends
    # from handlers waited for room, the first exchange would deadlock.
    bus = MemoryBus(max_buffer=1)
    rounds = 50

    async def ping(message: BusMessage) -> None:
        if message.source == "pong" or message.source == "start":
            for _ in range(3):
                await bus.send(BusDataMessage(source="ping", target="pong"))

    async def pong(message: BusMessage) -> None:
        if message.source == "ping" and len(pong_recorder.messages) <= rounds:
            await bus.send(BusDataMessage(source="pong", target="ping"))

    ping_recorder = await bus.subscribe(
        RecordingSubscriber("ping", handler=ping, accepts=lambda m: m.target == "ping")
    )
    pong_recorder = await bus.subscribe(
        RecordingSubscriber("pong", handler=pong, accepts=lambda m: m.target == "pong")
    )
    async with bus:
        await bus.send(BusDataMessage(source="start", target="ping"))
        with anyio.fail_after(10):
            await bus.wait_idle()
    assert len(pong_recorder.messages) > rounds
    assert len(ping_recorder.messages) > rounds // 2
    highest = max(s.high_water_mark for s in bus.statistics().subscriptions)
    assert highest > 1  # admitted over the bound instead of blocking


async def test_a_subscriber_can_override_the_bus_defaults() -> None:
    bus = MemoryBus(max_buffer=1, overflow="drop_newest")
    bounded = await bus.subscribe(RecordingSubscriber("bounded"))
    unbounded = await bus.subscribe(RecordingSubscriber("unbounded"), max_buffer=None)
    sent = data(5)
    async with bus:
        await bus.stop()
        for message in sent:
            await bus.send(message)
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert bounded.messages == sent[:1]
    assert unbounded.messages == sent
    stats = {s.name: s for s in bus.statistics().subscriptions}
    assert stats["bounded"].max_buffer == 1
    assert stats["unbounded"].max_buffer is None
    assert stats["unbounded"].overflow is OverflowPolicy.DROP_NEWEST


async def test_bad_settings_are_refused_clearly() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            "max_buffer must be a whole number of at least 1 (or None for unbounded), got 0"
        ),
    ):
        MemoryBus(max_buffer=0)
    with pytest.raises(
        ValueError,
        match=re.escape("exit_drain must be a number of seconds >= 0 (or None), got -1"),
    ):
        MemoryBus(exit_drain=-1)
    bus = MemoryBus()
    with pytest.raises(
        ValueError,
        match=re.escape(
            "max_buffer must be a whole number of at least 1 (or None for unbounded), got -5"
        ),
    ):
        await bus.subscribe(RecordingSubscriber("r"), max_buffer=-5)
    assert bus.subscribers == []


BAD_OVERFLOW = "overflow must be one of 'block', 'drop_oldest', 'drop_newest', 'error', got 'drop'"


async def test_an_unknown_overflow_policy_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(BAD_OVERFLOW)}$") as info:
        MemoryBus(overflow="drop")
    # Not chained to the enum's own "'drop' is not a valid OverflowPolicy".
    assert info.value.__suppress_context__
    bus = MemoryBus()
    with pytest.raises(ValueError, match=f"^{re.escape(BAD_OVERFLOW)}$"):
        await bus.subscribe(RecordingSubscriber("r"), overflow="drop")
    assert bus.subscribers == []
