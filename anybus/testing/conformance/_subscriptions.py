"""Who gets a message: subscribing, unsubscribing and a subscriber's filter."""

from __future__ import annotations

import logging

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from ..._messages import (
    BusCancelMessage,
    BusDataMessage,
    BusMessage,
)
from .._recording import RecordingSubscriber
from ._common import TIMEOUT, BusFactory, ids


class SubscriptionTests:
    """``subscribe()``, ``unsubscribe()`` and ``accepts_bus_message()``."""

    async def test_subscribe_is_idempotent_per_name(self, bus_factory: BusFactory) -> None:
        """Subscribing the same subscriber twice is a no-op; another subscriber under a taken name
        is refused with a ValueError naming it; each message is handled once.
        """
        bus = bus_factory()
        first = RecordingSubscriber("same")
        assert await bus.subscribe(first) is first
        assert await bus.subscribe(first) is first
        with pytest.raises(ValueError, match="a subscriber named 'same' is already subscribed"):
            await bus.subscribe(RecordingSubscriber("same"))
        assert bus.subscribers == [first]
        async with bus:
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await first.wait_for_count(1)
            await wait_all_tasks_blocked()
        assert len(first.messages) == 1

    async def test_unsubscribe_cancels_only_that_subscribers_workers(
        self, bus_factory: BusFactory
    ) -> None:
        """``unsubscribe()`` cancels that subscriber's running handler, discards its queue, and
        leaves the other subscribers alone; unsubscribing again is a no-op.
        """
        cancelled = anyio.Event()
        started = anyio.Event()

        async def hang(message: BusMessage) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                cancelled.set()

        bus = bus_factory()
        leaving = RecordingSubscriber("leaving", handler=hang)
        staying = RecordingSubscriber("staying")
        async with bus:
            await bus.subscribe(leaving)
            await bus.subscribe(staying)
            await bus.send(BusDataMessage(source="t"))
            # Queue more for the leaving subscriber: unsubscribing discards it.
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await started.wait()
                await bus.unsubscribe(leaving)
            assert cancelled.is_set()
            assert bus.subscribers == [staying]
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await staying.wait_for_count(3)
            await bus.unsubscribe(leaving)  # no-op
        assert len(leaving.messages) == 1

    async def test_unsubscribe_from_inside_own_handler(self, bus_factory: BusFactory) -> None:
        """A handler may unsubscribe its own subscriber; it receives nothing more."""
        bus = bus_factory()

        async def leave(message: BusMessage) -> None:
            await bus.unsubscribe(recorder)

        recorder = RecordingSubscriber("r", handler=leave)
        other = RecordingSubscriber("other")
        async with bus:
            await bus.subscribe(recorder)
            await bus.subscribe(other)
            await bus.send(BusDataMessage(source="t"))
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await other.wait_for_count(2)
                await wait_all_tasks_blocked()
        assert len(recorder.messages) == 1
        assert bus.subscribers == [other]

    async def test_cancelled_unsubscribe_still_removes_the_subscriber(
        self, bus_factory: BusFactory
    ) -> None:
        """An ``unsubscribe()`` whose wait is cancelled has removed the subscriber all the same."""
        release = anyio.Event()

        async def stubborn(message: BusMessage) -> None:
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await release.wait()

        bus = bus_factory()
        recorder = RecordingSubscriber("r", handler=stubborn)
        async with bus:
            await bus.subscribe(recorder)
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await recorder.wait_for_count(1)
            with anyio.move_on_after(0) as scope:
                await bus.unsubscribe(recorder)
            assert scope.cancelled_caught
            assert bus.subscribers == []
            release.set()

    async def test_accepts_bus_message_drops_for_that_subscriber_only(
        self, bus_factory: BusFactory
    ) -> None:
        """``accepts_bus_message()`` returning ``False`` drops the message for that subscriber
        only.
        """
        picky = RecordingSubscriber("picky", accepts=lambda m: m.target == "picky")
        everyone = RecordingSubscriber("everyone")
        sent = [
            BusDataMessage(source="t", target="picky"),
            BusDataMessage(source="t", target="other"),
            BusCancelMessage(source="t", target="other"),
            BusCancelMessage(source="t", target="picky"),
            BusDataMessage(source="t"),
            BusDataMessage(source="t", target="picky"),
        ]
        async with bus_factory() as bus:
            await bus.subscribe(picky)
            await bus.subscribe(everyone)
            for message in sent:
                await bus.send(message)
            with anyio.fail_after(TIMEOUT):
                await everyone.wait_for_count(len(sent))
                await picky.wait_for_count(3)
        assert sorted(ids(picky.messages)) == sorted(ids([sent[0], sent[3], sent[5]]))

    async def test_a_failing_filter_is_logged_and_drops_the_message(
        self, bus_factory: BusFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A filter that raises is logged and the message is dropped for that subscriber; delivery
        goes on.
        """

        def explode(message: BusMessage) -> bool:
            if message.target == "boom":
                raise RuntimeError("filter exploded")
            return True

        recorder = RecordingSubscriber("r", accepts=explode)
        sent = [
            BusDataMessage(source="t", target="boom"),
            BusDataMessage(source="t"),
            BusCancelMessage(source="t", target="boom"),
            BusCancelMessage(source="t"),
        ]
        caplog.set_level(logging.ERROR, logger="anybus")
        async with bus_factory() as bus:
            await bus.subscribe(recorder)
            for message in sent:
                await bus.send(message)
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(2)
        assert sorted(ids(recorder.messages)) == sorted(ids([sent[1], sent[3]]))
        errors = [r for r in caplog.records if r.name.startswith("anybus")]
        assert len(errors) == 2
        assert all("filter exploded" in str(r.exc_info[1]) for r in errors if r.exc_info)
