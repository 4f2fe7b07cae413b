"""MemoryBus: the conformance suite, plus what only an in-process bus can promise."""

from __future__ import annotations

import gc

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from anybus import (
    BusCancelMessage,
    BusDataMessage,
    BusLocalMessage,
    BusMessage,
    BusWorkerLocalErrorMessage,
    MemoryBus,
    WorkerBus,
)
from anybus._bus import SEND_YIELD_INTERVAL
from anybus.testing import RecordingSubscriber
from anybus.testing.conformance import BusConformance, BusFactory

pytestmark = pytest.mark.anyio


class TestMemoryBus(BusConformance):
    @pytest.fixture
    def bus_factory(self) -> BusFactory:
        return MemoryBus


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


async def test_messages_sent_before_the_first_run_are_dispatched_system_first() -> None:
    bus = MemoryBus()
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    data = [BusDataMessage(source="t") for _ in range(3)]
    cancel = BusCancelMessage(source="t")
    for message in [data[0], cancel, *data[1:]]:
        await bus.send(message)
    assert "4 queued" in repr(bus)
    async with bus:
        await bus.wait_idle()
    assert recorder.messages == [cancel, *data]


async def test_back_to_back_system_message_overtakes_data_not_yet_started() -> None:
    recorder = RecordingSubscriber("r")
    data = [BusDataMessage(source="t") for _ in range(3)]
    cancel = BusCancelMessage(source="t")
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        await wait_all_tasks_blocked()
        for message in data:
            await bus.send(message)  # no handler has started any of them yet
        await bus.send(cancel)
        with anyio.fail_after(5):
            await recorder.wait_for_count(4)
    assert recorder.messages == [cancel, *data]


async def test_the_filter_is_asked_when_the_message_is_handed_over() -> None:
    accepting = True
    recorder = RecordingSubscriber("r", accepts=lambda message: accepting)
    bus = MemoryBus()
    await bus.subscribe(recorder)
    await bus.send(BusDataMessage(source="t"))  # queued while the filter still accepts
    accepting = False
    async with bus:
        await wait_all_tasks_blocked()
    assert recorder.messages == []


class RecordingBus(WorkerBus):
    """A transport that records what reaches publish() and delivers nothing itself."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[BusMessage] = []

    async def publish(self, message: BusMessage) -> None:
        self.published.append(message)


async def test_local_messages_skip_publish_and_others_go_through_it() -> None:
    recorder = RecordingSubscriber("r")
    local = BusWorkerLocalErrorMessage(source="t", error="child failed")
    remote = BusDataMessage(source="t")
    async with RecordingBus() as bus:
        await bus.subscribe(recorder)
        await bus.send(local)
        await bus.send(remote)
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        await wait_all_tasks_blocked()
        assert bus.published == [remote]
        assert recorder.messages == [local]
        # What the transport hands back reaches the subscribers through deliver().
        await bus.deliver(remote)
        with anyio.fail_after(5):
            await recorder.wait_for_count(2)
    assert recorder.messages == [local, remote]


async def test_a_user_defined_local_message_stays_local() -> None:
    class Note(BusDataMessage, BusLocalMessage):
        pass

    async with RecordingBus() as bus:
        await bus.subscribe(recorder := RecordingSubscriber("r"))
        await bus.send(note := Note(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        assert bus.published == []
        assert recorder.messages == [note]


async def test_a_loop_of_sends_lets_the_workers_run() -> None:
    recorder = RecordingSubscriber("r")
    async with MemoryBus() as bus:
        await bus.subscribe(recorder)
        await wait_all_tasks_blocked()
        count = 3 * SEND_YIELD_INTERVAL
        for _ in range(count):
            await bus.send(BusDataMessage(source="t"))
        # send() yielded three times on the way, so the worker has run and drained what was
        # queued; how far it got depends on the scheduler's order.
        assert len(recorder.messages) >= SEND_YIELD_INTERVAL
        with anyio.fail_after(5):
            await recorder.wait_for_count(count)


async def test_a_subscriber_without_a_name_gets_a_clear_error() -> None:
    from anybus import BusSubscriber

    class Nameless(BusSubscriber):
        pass

    with pytest.raises(AttributeError, match=r"has no name: assign 'self\.name'"):
        await MemoryBus().subscribe(Nameless())


async def test_a_dropped_bus_closes_its_inboxes_quietly() -> None:
    # A subscriber holding its bus makes a reference cycle that only the garbage collector
    # breaks; the inboxes must not warn about unclosed streams then (warnings are errors).
    class Holder(RecordingSubscriber):
        bus: MemoryBus | None = None

    for _ in range(3):
        bus = MemoryBus()
        holder = Holder("holder")
        holder.bus = bus
        await bus.subscribe(holder)
        await bus.send(BusDataMessage(source="t"))
        async with bus:
            with anyio.fail_after(5):
                await holder.wait_for_count(1)
        del bus, holder
        gc.collect()
