"""Subscribing without subclassing: listeners (receive streams) and handler functions."""

from __future__ import annotations

import anyio
import pytest
from anyio import EndOfStream, wait_all_tasks_blocked

from anybus import (
    BusCancelMessage,
    BusDataMessage,
    BusJobRequestMessage,
    BusMessage,
    BusSystemMessage,
    FunctionSubscriber,
    MemoryBus,
    MessageStream,
)

pytestmark = pytest.mark.anyio


async def test_a_listener_receives_system_messages_first() -> None:
    async with MemoryBus() as bus, bus.listen(name="watcher") as messages:
        assert isinstance(messages, MessageStream)
        assert [s.name for s in bus.statistics().subscriptions] == ["watcher"]
        data = [BusDataMessage(source="t") for _ in range(3)]
        cancel = BusCancelMessage(source="t")
        for message in [*data, cancel]:
            await bus.send(message)
        assert repr(messages) == "<MessageStream 'watcher' 4 queued>"
        received = [await messages.receive() for _ in range(4)]
        assert received == [cancel, *data]
    assert bus.subscribers == []


async def test_a_listener_iterates_and_filters_by_type() -> None:
    async with (
        MemoryBus() as bus,
        bus.listen(types=[BusJobRequestMessage, BusSystemMessage]) as messages,
    ):
        assert messages.name.startswith("listener-")
        wanted = [
            BusJobRequestMessage(source="t", job_id="1"),
            BusCancelMessage(source="t"),
        ]
        await bus.send(BusDataMessage(source="t"))
        await bus.send(wanted[0])
        await bus.send(BusDataMessage(source="t"))
        await bus.send(wanted[1])
        received: list[BusMessage] = []
        async for message in messages:
            received.append(message)
            if len(received) == 2:
                break
        assert sorted(m.id for m in received) == sorted(m.id for m in wanted)
        stats = bus.statistics().subscriptions[0]
        assert (stats.delivered, stats.queued) == (2, 1)  # the last data message is left


async def test_a_cancelled_receive_loses_nothing() -> None:
    async with MemoryBus() as bus, bus.listen() as messages:
        with anyio.move_on_after(0.01) as scope:
            await messages.receive()
        assert scope.cancelled_caught
        sent = BusDataMessage(source="t")
        await bus.send(sent)
        with anyio.fail_after(5):
            assert await messages.receive() is sent


async def test_a_waiting_listener_wakes_for_a_message() -> None:
    async with MemoryBus() as bus, bus.listen() as messages:
        received: list[BusMessage] = []

        async def receive_one() -> None:
            received.append(await messages.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive_one)
            await wait_all_tasks_blocked()
            await bus.send(BusDataMessage(source="t"))
        assert len(received) == 1


async def test_a_listener_ends_when_unsubscribed_elsewhere() -> None:
    async with MemoryBus() as bus, bus.listen(name="l") as messages:
        received: list[BusMessage] = []

        async def drain() -> None:
            async for message in messages:
                received.append(message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            await bus.send(BusDataMessage(source="t"))
            await wait_all_tasks_blocked()
            await bus.unsubscribe("l")  # the loop above ends
        assert len(received) == 1
        with pytest.raises(EndOfStream):
            await messages.receive()


async def test_a_closed_listener_refuses_to_receive() -> None:
    async with MemoryBus() as bus, bus.listen() as messages:
        await messages.aclose()
        await messages.aclose()  # idempotent
        assert repr(messages).endswith("closed>")
        with pytest.raises(anyio.ClosedResourceError):
            await messages.receive()
        assert bus.subscribers == []


async def test_a_listener_name_must_be_free() -> None:
    async with MemoryBus() as bus, bus.listen(name="same"):
        with pytest.raises(ValueError, match="a subscriber named 'same' is already subscribed"):
            async with bus.listen(name="same"):
                pass  # pragma: no cover


async def test_wait_idle_waits_for_listeners_to_receive() -> None:
    async with MemoryBus() as bus, bus.listen() as messages:
        await bus.send(BusDataMessage(source="t"))
        async with anyio.create_task_group() as tg:
            idle = anyio.Event()

            async def wait_idle() -> None:
                await bus.wait_idle()
                idle.set()

            tg.start_soon(wait_idle)
            await wait_all_tasks_blocked()
            assert not idle.is_set()
            await messages.receive()
            with anyio.fail_after(5):
                await idle.wait()


async def test_a_bounded_listener_applies_its_policy() -> None:
    async with (
        MemoryBus() as bus,
        bus.listen(max_buffer=2, overflow="drop_oldest") as messages,
    ):
        sent = [BusDataMessage(source="t") for _ in range(5)]
        for message in sent:
            await bus.send(message)
        assert [await messages.receive() for _ in range(2)] == sent[3:]
        assert bus.statistics().subscriptions[0].dropped == 3


async def test_a_plain_function_can_subscribe() -> None:
    seen: list[BusMessage] = []

    async def on_cancel(message: BusMessage) -> None:
        seen.append(message)

    async with MemoryBus() as bus:
        subscriber = await bus.subscribe(on_cancel, types=[BusCancelMessage])
        assert isinstance(subscriber, FunctionSubscriber)
        assert subscriber.name == "on_cancel"
        assert "on_cancel" in repr(subscriber)
        await bus.send(BusDataMessage(source="t"))
        await bus.send(cancel := BusCancelMessage(source="t"))
        await bus.wait_idle()
        assert seen == [cancel]
        await bus.unsubscribe(subscriber)
        named = await bus.subscribe(on_cancel, name="second")
        assert bus.subscribers == [named]
        await bus.unsubscribe("second")
        assert bus.subscribers == []
