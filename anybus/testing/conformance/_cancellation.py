"""What ``stop()`` does to a handler that is running, and a ``stop()`` that is cancelled."""

from __future__ import annotations

import anyio

from ..._messages import (
    BusCancelMessage,
    BusDataMessage,
    BusMessage,
)
from .._recording import RecordingSubscriber
from ._common import TIMEOUT, BusFactory


class CancellationTests:
    """``stop()`` cancels running handlers, from any task, and shuts down even when cancelled."""

    async def test_stop_cancels_a_handler_that_never_returns(
        self, bus_factory: BusFactory
    ) -> None:
        """``stop()`` cancels a handler that never returns and returns once it has unwound."""
        started = anyio.Event()
        finished: list[str] = []

        async def hang(message: BusMessage) -> None:
            started.set()
            try:
                await anyio.sleep_forever()
            finally:
                finished.append(message.name)

        bus = bus_factory()
        await bus.subscribe(RecordingSubscriber("hang", handler=hang))
        async with bus:
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await started.wait()
                await bus.stop()
            # stop() returned only after the handler had unwound.
            assert len(finished) == 1

    async def test_stop_from_another_task_and_inside_a_timeout(
        self, bus_factory: BusFactory
    ) -> None:
        """``stop()`` works when called from another task, inside ``fail_after``."""
        started = anyio.Event()
        bus = bus_factory()

        async def hang(message: BusMessage) -> None:
            started.set()
            await anyio.sleep_forever()

        await bus.subscribe(RecordingSubscriber("hang", handler=hang))
        async with bus, anyio.create_task_group() as tg:
            await bus.send(BusDataMessage(source="t"))
            await started.wait()

            async def stopper() -> None:
                with anyio.fail_after(5):
                    await bus.stop()

            tg.start_soon(stopper)
        assert not bus.running

    async def test_cancelled_stop_still_shuts_dispatch_down(self, bus_factory: BusFactory) -> None:
        """A ``stop()`` whose wait is cancelled still stops dispatch; a later ``stop()`` waits for
        the rest of the shutdown, and the bus can start again.
        """
        release = anyio.Event()

        async def stubborn(message: BusMessage) -> None:
            # A handler that takes a moment to unwind after it is cancelled.
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await release.wait()

        bus = bus_factory()
        recorder = RecordingSubscriber("stubborn", handler=stubborn)
        await bus.subscribe(recorder)
        async with bus:
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await recorder.wait_for_count(1)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await bus.stop()  # the wait is cancelled, the shutdown is not
            assert scope.cancelled_caught
            assert not bus.running
            release.set()
            with anyio.fail_after(5):
                await bus.stop()  # waits for the rest of the shutdown
            assert recorder.messages  # the handler did run, and has now unwound
            await bus.start()
            assert bus.running

    async def test_stop_called_by_a_handler_cancels_that_handler_too(
        self, bus_factory: BusFactory
    ) -> None:
        """A handler may call ``stop()`` on its own bus: that handler is cancelled too, and the bus
        stops.
        """
        bus = bus_factory()
        unwound = anyio.Event()

        async def stop_the_bus(message: BusMessage) -> None:
            try:
                await bus.stop()
            finally:
                unwound.set()

        await bus.subscribe(RecordingSubscriber("r", handler=stop_the_bus))
        async with bus:
            await bus.send(BusCancelMessage(source="t"))
            with anyio.fail_after(5):
                await unwound.wait()
            assert not bus.running

    async def test_stopping_cancels_a_handler_and_nothing_more_is_handled(
        self, bus_factory: BusFactory
    ) -> None:
        """``stop()`` cancels the running handler with the backend's cancellation exception, and
        the queued message is not handled.
        """
        seen_cancellation: list[type[BaseException]] = []

        async def hang(message: BusMessage) -> None:
            try:
                await anyio.sleep_forever()
            except BaseException as exc:
                seen_cancellation.append(type(exc))
                raise

        recorder = RecordingSubscriber("r", handler=hang)
        async with bus_factory() as bus:
            await bus.subscribe(recorder)
            await bus.send(BusDataMessage(source="t"))
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(1)
                await bus.stop()
        assert seen_cancellation == [anyio.get_cancelled_exc_class()]
        assert len(recorder.messages) == 1
