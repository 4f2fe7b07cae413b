"""MemoryBus: the conformance suite, plus what only an in-process bus can promise."""

from __future__ import annotations

import gc

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import TaskStatus
from anyio.lowlevel import checkpoint

from anybus import (
    BusCancelMessage,
    BusDataMessage,
    BusLocalMessage,
    BusMessage,
    BusStateError,
    BusWorkerLocalErrorMessage,
    MemoryBus,
    TransportHost,
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


async def test_send_outside_the_running_bus_is_refused_and_says_what_to_do() -> None:
    bus = MemoryBus()
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    expected = (
        "<MemoryBus stopped, 1 subscriber, 0 queued> is not running: send inside "
        "'async with bus:' or after 'await task_group.start(bus.run)'"
    )
    with pytest.raises(BusStateError) as before:
        await bus.send(BusDataMessage(source="t"))
    assert str(before.value) == expected
    async with bus:
        await bus.send(sent := BusDataMessage(source="t"))
    with pytest.raises(BusStateError) as after:
        await bus.send(BusCancelMessage(source="t"))
    assert str(after.value) == expected
    async with anyio.create_task_group() as tg:
        await tg.start(bus.run)
        await bus.stop()
    with pytest.raises(BusStateError, match=r"is not running: send inside"):
        await bus.send(BusDataMessage(source="t"))
    # The refused sends were counted nowhere and queued nowhere.
    assert recorder.messages == [sent]
    assert (bus.statistics().sent, bus.statistics().queued) == (1, 0)


async def test_unsubscribe_while_stopped_discards_the_queue() -> None:
    bus = MemoryBus()
    recorder = RecordingSubscriber("r")
    await bus.subscribe(recorder)
    async with bus:
        await bus.stop()
        await bus.send(BusDataMessage(source="t"))
        assert "1 queued" in repr(bus)
        await bus.unsubscribe(recorder)
        assert repr(bus) == "<MemoryBus stopped, 0 subscribers, 0 queued>"
        await bus.subscribe(recorder)
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert recorder.messages == []


async def test_repr_tells_the_state() -> None:
    bus = MemoryBus()
    assert repr(bus) == "<MemoryBus stopped, 0 subscribers, 0 queued>"
    await bus.subscribe(RecordingSubscriber("a"))
    async with bus:
        await bus.stop()
        await bus.send(BusDataMessage(source="t"))
        await bus.send(BusCancelMessage(source="t"))
        assert repr(bus) == "<MemoryBus stopped, 1 subscriber, 2 queued>"
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
        assert repr(bus) == "<MemoryBus running, 1 subscriber, 0 queued>"
    assert repr(bus) == "<MemoryBus stopped, 1 subscriber, 0 queued>"


async def test_messages_queued_while_stopped_are_dispatched_system_first() -> None:
    bus = MemoryBus()
    recorder = await bus.subscribe(RecordingSubscriber("r"))
    data = [BusDataMessage(source="t") for _ in range(3)]
    cancel = BusCancelMessage(source="t")
    async with bus:
        await bus.stop()
        for message in [data[0], cancel, *data[1:]]:
            await bus.send(message)
        assert "4 queued" in repr(bus)
        await bus.start()
        with anyio.fail_after(5):
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
    async with bus:
        await bus.stop()
        await bus.send(BusDataMessage(source="t"))  # queued while the filter still accepts
        assert bus.statistics().queued == 1
        accepting = False
        await bus.start()
        with anyio.fail_after(5):
            await bus.wait_idle()
    assert recorder.messages == []


class RecordingTransport:
    """A transport that records what reaches publish() and delivers nothing itself.

    While it serves, ``host`` is the bus it serves: a test hands messages to
    ``host.deliver()`` as a network transport's reader would.
    """

    def __init__(self) -> None:
        self.published: list[BusMessage] = []
        self.host: TransportHost | None = None

    async def serve(
        self, host: TransportHost, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        self.host = host
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            self.host = None

    async def publish(self, message: BusMessage) -> None:
        self.published.append(message)
        await checkpoint()

    async def stop_intake(self) -> None:
        await checkpoint()

    def __str__(self) -> str:
        return "recording"


async def test_local_messages_skip_the_transport_and_others_go_through_it() -> None:
    recorder = RecordingSubscriber("r")
    local = BusWorkerLocalErrorMessage(source="t", error="child failed")
    remote = BusDataMessage(source="t")
    transport = RecordingTransport()
    bus = WorkerBus(transport=transport)
    assert bus.transport is transport
    assert transport.host is None  # served only while the bus runs
    async with bus:
        assert transport.host is bus
        assert repr(bus) == "<WorkerBus running, 0 subscribers, 0 queued, recording>"
        await bus.subscribe(recorder)
        await bus.send(local)
        await bus.send(remote)
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        await wait_all_tasks_blocked()
        assert transport.published == [remote]
        assert recorder.messages == [local]
        # What the transport hands to its host reaches the subscribers.
        await transport.host.deliver(remote)
        with anyio.fail_after(5):
            await recorder.wait_for_count(2)
    assert transport.host is None
    assert recorder.messages == [local, remote]
    assert transport.published == [remote]


async def test_a_user_defined_local_message_stays_local() -> None:
    class Note(BusDataMessage, BusLocalMessage):
        pass

    transport = RecordingTransport()
    async with WorkerBus(transport=transport) as bus:
        await bus.subscribe(recorder := RecordingSubscriber("r"))
        await bus.send(note := Note(source="t"))
        with anyio.fail_after(5):
            await recorder.wait_for_count(1)
        assert transport.published == []
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
        async with bus:
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await holder.wait_for_count(1)
        del bus, holder
        gc.collect()
