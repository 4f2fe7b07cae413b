"""Fan-out: every subscriber gets every message once, whatever the others do."""

from __future__ import annotations

import logging

import anyio
import pytest

from ..._messages import (
    BusCancelMessage,
    BusDataMessage,
    BusMessage,
    BusWorkerLocalErrorMessage,
)
from .._recording import RecordingSubscriber
from ._common import TIMEOUT, BusFactory, ids, lane


class DeliveryTests:
    """Every message reaches every subscriber once, past slow and failing handlers."""

    async def test_every_subscriber_gets_every_message_exactly_once_in_lane_order(
        self, bus_factory: BusFactory
    ) -> None:
        """Every subscriber gets every message exactly once, each lane (data, system) in send
        order.
        """
        recorders = [RecordingSubscriber(f"r{i}") for i in range(3)]
        sent: list[BusMessage] = []
        for i in range(60):
            sent.append(BusCancelMessage(source="t") if i % 6 == 5 else BusDataMessage(source="t"))
        sent.append(BusWorkerLocalErrorMessage(source="t", error="local"))
        async with bus_factory() as bus:
            for recorder in recorders:
                await bus.subscribe(recorder)
            for message in sent:
                await bus.send(message)
            with anyio.fail_after(TIMEOUT):
                for recorder in recorders:
                    await recorder.wait_for_count(len(sent))
        for recorder in recorders:
            assert sorted(ids(recorder.messages)) == sorted(ids(sent))
            for system in (False, True):
                assert ids(lane(recorder.messages, system)) == ids(lane(sent, system))

    async def test_a_slow_subscriber_does_not_delay_the_others(
        self, bus_factory: BusFactory
    ) -> None:
        """A subscriber blocked in its handler does not delay delivery to the others."""
        release = anyio.Event()

        async def blocked(message: BusMessage) -> None:
            await release.wait()

        slow = RecordingSubscriber("slow", handler=blocked)
        fast = RecordingSubscriber("fast")
        async with bus_factory() as bus:
            await bus.subscribe(slow)
            await bus.subscribe(fast)
            for _ in range(100):
                await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(TIMEOUT):
                await fast.wait_for_count(100)
                await slow.wait_for_count(1)
            assert len(slow.messages) == 1
            release.set()
            with anyio.fail_after(TIMEOUT):
                await slow.wait_for_count(100)

    async def test_a_failing_handler_is_logged_and_delivery_goes_on(
        self, bus_factory: BusFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A handler that raises is logged at ERROR on ``anybus.*``, with the exception and the
        subscriber's name, and delivery goes on for it and for the others.
        """

        async def fail_on_odd(message: BusMessage) -> None:
            if int(message.name.rsplit("#", 1)[1]) % 2:
                raise ValueError(f"cannot handle {message.name}")

        failing = RecordingSubscriber("failing", handler=fail_on_odd)
        other = RecordingSubscriber("other")
        sent: list[BusMessage] = [BusDataMessage(source="t") for _ in range(10)]
        sent += [BusCancelMessage(source="t") for _ in range(4)]
        caplog.set_level(logging.ERROR, logger="anybus")
        async with bus_factory() as bus:
            await bus.subscribe(failing)
            await bus.subscribe(other)
            for message in sent:
                await bus.send(message)
            with anyio.fail_after(TIMEOUT):
                await failing.wait_for_count(len(sent))
                await other.wait_for_count(len(sent))
        failures = [r for r in caplog.records if r.name.startswith("anybus")]
        assert len(failures) == 7
        for record in failures:
            assert record.exc_info is not None
            assert isinstance(record.exc_info[1], ValueError)
            assert "'failing'" in record.getMessage()
            assert str(record.exc_info[1]).split()[-1] in record.getMessage()
