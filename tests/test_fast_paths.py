"""The fast paths keep the guarantees of the slow ones.

* ``WorkerBus.deliver_nowait`` (what a transport calls from a callback) delivers at once or
  not at all: it queues nothing when a full ``block`` inbox wants the message.
* ``RedisBus`` delivers in glide's callback while nothing is queued for its reader, and falls
  back to the reader when an inbox is full: the order per sender holds across the switch,
  and nothing read after intake stopped is delivered.
* The inbox lanes (plain deques): a closed inbox ends its workers and refuses its listener.
"""

from __future__ import annotations

import anyio
import pytest
from anyio import fail_after, wait_all_tasks_blocked

from anybus import BusDataMessage, BusMessage, BusSystemMessage, MemoryBus
from anybus.redis import RedisBus
from anybus.testing import RecordingSubscriber

from .redis_support import unique_name, wait_until

pytestmark = pytest.mark.anyio

TIMEOUT = 15


async def test_deliver_nowait_queues_nothing_when_a_block_inbox_is_full() -> None:
    gate = anyio.Event()

    async def hold(message: BusMessage) -> None:
        await gate.wait()

    slow = RecordingSubscriber("slow", handler=hold)
    other = RecordingSubscriber("other")
    async with MemoryBus() as bus:
        await bus.subscribe(slow, max_buffer=1)
        await bus.subscribe(other)
        assert bus.deliver_nowait(first := BusDataMessage(source="t"))  # being handled
        await wait_all_tasks_blocked()
        assert bus.deliver_nowait(BusDataMessage(source="t"))  # queued: the inbox is full
        refused = BusDataMessage(source="t")
        assert not bus.deliver_nowait(refused)
        stats = bus.statistics().subscriptions[1]
        assert stats.delivered + stats.queued_data == 2  # "other" did not get it either
        # System messages are never bounded.
        assert bus.deliver_nowait(BusSystemMessage(source="t"))
        gate.set()
        with fail_after(5):
            await bus.wait_idle()
    assert refused not in slow.messages
    assert refused not in other.messages
    assert slow.messages[0] is first
    assert len(slow.messages) == 3


async def test_deliver_nowait_is_not_admitted_over_the_bound_from_a_handler() -> None:
    gate = anyio.Event()
    answers: list[bool] = []

    async def hold(message: BusMessage) -> None:
        await gate.wait()

    async with MemoryBus(max_buffer=1) as bus:
        await bus.subscribe(hold, name="slow")

        async def relay(message: BusMessage) -> None:
            if message.source == "go":
                answers.append(bus.deliver_nowait(BusDataMessage(source="from a handler")))

        await bus.subscribe(relay, name="relay", max_buffer=None)
        await bus.send(BusDataMessage(source="t"))  # taken by "slow", which holds it
        await wait_all_tasks_blocked()
        await bus.send(BusDataMessage(source="t"))  # fills "slow"'s inbox
        await bus.send(BusSystemMessage(source="go"))
        with fail_after(5):
            while not answers:
                await wait_all_tasks_blocked()
        gate.set()
    assert answers == [False]


async def test_a_closed_inbox_ends_its_workers_and_refuses_its_listener() -> None:
    async with MemoryBus() as bus:
        recorder = await bus.subscribe(RecordingSubscriber("r"))
        await bus.send(BusDataMessage(source="t"))
        with fail_after(5):
            await recorder.wait_for_count(1)
        await bus.unsubscribe(recorder)
        async with bus.listen(name="l") as messages:
            await bus.send(BusDataMessage(source="queued"))
            assert messages.receive_nowait().source == "queued"
        with pytest.raises(anyio.ClosedResourceError):
            messages.receive_nowait()
        assert bus.subscribers == []
        assert len(anyio.get_running_tasks()) >= 1


async def test_redis_order_holds_when_delivery_falls_back_to_the_reader(redis_url: str) -> None:
    """A receiver whose bounded inbox fills up: what the callback cannot deliver goes through
    the reader, and everything after it too, in the order it was sent."""
    channel = unique_name()
    release = anyio.Event()
    count = 1000

    async def slow_start(message: BusMessage) -> None:
        await release.wait()

    far = RecordingSubscriber("far", handler=slow_start)
    async with (
        RedisBus(redis_url, channel=channel, max_buffer=3) as receiver,
        RedisBus(redis_url, channel=channel) as sender,
    ):
        await receiver.subscribe(far)
        sent = [BusDataMessage(source=str(i)) for i in range(count)]
        for message in sent:
            await sender.send(message)
        with fail_after(TIMEOUT):
            await wait_until(lambda: receiver.statistics().subscriptions[0].high_water_mark >= 3)
        release.set()
        with fail_after(TIMEOUT):
            await far.wait_for_count(count)
    assert [m.id for m in far.messages] == [m.id for m in sent]
    assert receiver.transport_statistics().inbound_overflow == 0


async def test_redis_delivers_nothing_after_intake_stopped(redis_url: str) -> None:
    """What the receiver's subscription still reads after ``stop_intake()`` reaches nobody.

    An observer on the channel shows when the late messages have been published and read;
    a few more round trips through it give the receiver's copies time to arrive too."""
    channel = unique_name()
    far = RecordingSubscriber("far")
    seen = RecordingSubscriber("seen")
    async with (
        RedisBus(redis_url, channel=channel) as sender,
        RedisBus(redis_url, channel=channel) as observer,
    ):
        await observer.subscribe(seen)
        async with RedisBus(redis_url, channel=channel) as receiver:
            await receiver.subscribe(far)
            await sender.send(first := BusDataMessage(source="before"))
            with fail_after(TIMEOUT):
                await far.wait_for(lambda got: first in got)
            await receiver.transport.stop_intake()
            late = [BusDataMessage(source="after") for _ in range(3)]
            for message in late:
                await sender.send(message)
                with fail_after(TIMEOUT):
                    await seen.wait_for(lambda got, m=message: m in got)  # type: ignore[misc]
            await wait_all_tasks_blocked()
        assert not any(message in far.messages for message in late)
        assert far.messages == [first]
