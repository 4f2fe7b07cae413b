"""The two lanes of a subscriber: system messages overtake queued data."""

from __future__ import annotations

import anyio

from ..._messages import (
    BusCancelMessage,
    BusCancelWorkerMessage,
    BusDataMessage,
    BusMessage,
    BusSystemMessage,
)
from .._recording import RecordingSubscriber
from ._common import TIMEOUT, BusFactory, ids


class PriorityTests:
    """One handler at a time per lane; system messages are not held up behind data."""

    async def test_each_lane_is_handled_one_at_a_time(self, bus_factory: BusFactory) -> None:
        """A subscriber handles at most one data message and one system message at a time."""
        active = {True: 0, False: 0}
        peak = {True: 0, False: 0}

        async def busy(message: BusMessage) -> None:
            system = isinstance(message, BusSystemMessage)
            active[system] += 1
            peak[system] = max(peak[system], active[system])
            for _ in range(3):
                await anyio.lowlevel.checkpoint()
            active[system] -= 1

        recorder = RecordingSubscriber("r", handler=busy)
        sent = [
            BusCancelMessage(source="t") if i % 3 else BusDataMessage(source="t")
            for i in range(30)
        ]
        async with bus_factory() as bus:
            await bus.subscribe(recorder)
            for message in sent:
                await bus.send(message)
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(len(sent))
        assert peak == {True: 1, False: 1}

    async def test_a_system_message_overtakes_queued_data_while_data_handler_is_busy(
        self, bus_factory: BusFactory
    ) -> None:
        """System messages are handled while the data handler is busy, and before the data messages
        queued behind it.
        """
        release = anyio.Event()

        async def block_first(message: BusMessage) -> None:
            if message is first:
                await release.wait()

        first = BusDataMessage(source="t")
        queued = [BusDataMessage(source="t") for _ in range(3)]
        systems: list[BusMessage] = [BusCancelMessage(source="t"), BusSystemMessage(source="t")]
        recorder = RecordingSubscriber("r", handler=block_first)
        async with bus_factory() as bus:
            await bus.subscribe(recorder)
            await bus.send(first)
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(1)
            for message in [*queued, *systems]:
                await bus.send(message)
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(3)  # both handled while `first` still blocks
            assert recorder.messages == [first, *systems]
            release.set()
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(6)
        assert ids(recorder.messages) == ids([first, *systems, *queued])

    async def test_a_cancel_reaches_a_worker_blocked_in_its_data_handler(
        self, bus_factory: BusFactory
    ) -> None:
        """A :class:`~anybus.BusCancelWorkerMessage` reaches a worker blocked in its data handler,
        which can then cancel its own work.
        """

        class Worker(RecordingSubscriber):
            def __init__(self, name: str) -> None:
                super().__init__(name)
                self.work_scope: anyio.CancelScope | None = None
                self.cancelled_work: list[str] = []

            async def on_bus_message(self, message: BusMessage) -> None:
                await super().on_bus_message(message)
                if isinstance(message, BusCancelWorkerMessage):
                    if self.work_scope is not None:
                        self.work_scope.cancel()
                    return
                with anyio.CancelScope() as self.work_scope:
                    await anyio.sleep_forever()
                if self.work_scope.cancelled_caught:
                    self.cancelled_work.append(message.name)

        worker = Worker("worker")
        work = [BusDataMessage(source="runner") for _ in range(2)]
        async with bus_factory() as bus:
            await bus.subscribe(worker)
            await bus.send(work[0])
            with anyio.fail_after(TIMEOUT):
                await worker.wait_for_count(1)
            await bus.send(BusCancelWorkerMessage(source="runner", target="worker"))
            await bus.send(work[1])
            with anyio.fail_after(TIMEOUT):
                await worker.wait_for(lambda seen: len(worker.cancelled_work) == 1)
                await worker.wait_for_count(3)
            assert worker.cancelled_work == [work[0].name]
            assert ids(worker.messages)[2] == work[1].id
            await bus.stop()  # work[1] never ends by itself
