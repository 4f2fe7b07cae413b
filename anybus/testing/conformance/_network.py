"""What happens between two buses on one channel."""

from __future__ import annotations

import anyio

from ..._messages import (
    BusCancelMessage,
    BusDataMessage,
    BusMessage,
    BusWorkerLocalErrorMessage,
)
from .._recording import RecordingSubscriber
from ._common import TIMEOUT, BusFactory, ids, lane


class NetworkTests:
    """Two buses made by one ``bus_factory`` talk to each other over their channel."""

    async def test_messages_reach_the_other_bus_once_in_lane_order(
        self, bus_factory: BusFactory
    ) -> None:
        """Every message reaches the sending bus's subscribers and the other bus's, once each, each
        lane in send order.
        """
        near, far = RecordingSubscriber("near"), RecordingSubscriber("far")
        sent: list[BusMessage] = [
            BusCancelMessage(source="t") if i % 4 == 3 else BusDataMessage(source="t")
            for i in range(40)
        ]
        async with bus_factory() as sender, bus_factory() as receiver:
            await sender.subscribe(near)
            await receiver.subscribe(far)
            for message in sent:
                await sender.send(message)
            with anyio.fail_after(TIMEOUT):
                await far.wait_for_count(len(sent))
                await near.wait_for_count(len(sent))
            # A last message behind the others: once it is in, nothing more is on its way.
            await sender.send(last := BusDataMessage(source="t"))
            with anyio.fail_after(TIMEOUT):
                await far.wait_for(lambda seen: last in seen)
                await receiver.wait_idle()
        for recorder in (near, far):
            assert sorted(ids(recorder.messages)) == sorted(ids([*sent, last]))
            for system in (False, True):
                assert ids(lane(recorder.messages, system)) == ids(lane([*sent, last], system))

    async def test_local_messages_never_leave_the_process(self, bus_factory: BusFactory) -> None:
        """A :class:`~anybus.BusLocalMessage` reaches the sending bus's subscribers only."""
        near, far = RecordingSubscriber("near"), RecordingSubscriber("far")
        local = BusWorkerLocalErrorMessage(source="t", error="stays here")
        async with bus_factory() as sender, bus_factory() as receiver:
            await sender.subscribe(near)
            await receiver.subscribe(far)
            await sender.send(local)
            await sender.send(marker := BusDataMessage(source="t"))
            with anyio.fail_after(TIMEOUT):
                await far.wait_for(lambda seen: marker in seen)
                await near.wait_for_count(2)
                await receiver.wait_idle()
        assert ids(far.messages) == [marker.id]
        assert ids(near.messages) == [local.id, marker.id]

    async def test_a_system_message_overtakes_queued_data_in_the_receiver(
        self, bus_factory: BusFactory
    ) -> None:
        """In the receiver, a system message overtakes data queued behind a busy data handler."""
        release = anyio.Event()

        async def block_first(message: BusMessage) -> None:
            if message.id == first.id:
                await release.wait()

        first = BusDataMessage(source="t")
        queued = [BusDataMessage(source="t") for _ in range(3)]
        cancel = BusCancelMessage(source="t")
        far = RecordingSubscriber("far", handler=block_first)
        async with bus_factory() as sender, bus_factory() as receiver:
            await receiver.subscribe(far)
            await sender.send(first)
            with anyio.fail_after(TIMEOUT):
                await far.wait_for_count(1)
            for message in [*queued, cancel]:
                await sender.send(message)
            with anyio.fail_after(TIMEOUT):
                await far.wait_for_count(2)  # the cancel, while `first` still blocks
            assert ids(far.messages) == [first.id, cancel.id]
            release.set()
            with anyio.fail_after(TIMEOUT):
                await far.wait_for_count(5)
        assert ids(far.messages) == ids([first, cancel, *queued])
