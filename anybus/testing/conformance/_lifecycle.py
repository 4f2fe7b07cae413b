"""How a bus runs: ``async with``, ``task_group.start(bus.run)``, ``stop()`` and ``start()``."""

from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from ..._exceptions import BusStateError
from ..._messages import (
    BusCancelMessage,
    BusDataMessage,
)
from .._recording import RecordingSubscriber
from ._common import TIMEOUT, BusFactory, task_count


class LifecycleTests:
    """Both ways to run a bus, pausing and resuming it, and that no task outlives it."""

    async def test_async_with_runs_and_leaves_no_task_behind(
        self, bus_factory: BusFactory
    ) -> None:
        """``async with bus:`` dispatches; leaving the block ends every task the bus started."""
        before = task_count()
        bus = bus_factory()
        recorder = RecordingSubscriber("r")
        async with bus:
            assert bus.running
            await bus.subscribe(recorder)
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await recorder.wait_for_count(1)
            assert task_count() > before
        assert not bus.running
        assert task_count() == before

    async def test_run_in_callers_task_group_until_stop(self, bus_factory: BusFactory) -> None:
        """``task_group.start(bus.run)`` dispatches until ``stop()``; then no task is left and
        ``start()`` raises :class:`~anybus.BusStateError` (the run form has ended).
        """
        before = task_count()
        bus = bus_factory()
        recorder = RecordingSubscriber("r")
        await bus.subscribe(recorder)
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            assert bus.running
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(5):
                await recorder.wait_for_count(1)
            await bus.stop()
            assert not bus.running
        assert task_count() == before
        # After stop() the run form has ended: there is no scope left to start in.
        with pytest.raises(BusStateError):
            await bus.start()

    async def test_run_ends_when_the_callers_scope_is_cancelled(
        self, bus_factory: BusFactory
    ) -> None:
        """Cancelling the caller's task group ends ``bus.run`` and every task of the bus; the bus
        can run again afterwards.
        """
        before = task_count()
        bus = bus_factory()
        await bus.subscribe(RecordingSubscriber("r"))
        async with anyio.create_task_group() as tg:
            await tg.start(bus.run)
            tg.cancel_scope.cancel()
        assert not bus.running
        assert task_count() == before
        # ... and the bus can run again.
        async with bus:
            assert bus.running

    async def test_start_without_a_running_scope_names_both_forms(
        self, bus_factory: BusFactory
    ) -> None:
        """``start()`` with no running scope raises :class:`~anybus.BusStateError` naming both ways
        to run a bus.
        """
        bus = bus_factory()
        with pytest.raises(BusStateError) as info:
            await bus.start()
        assert "async with bus:" in str(info.value)
        assert "task_group.start(bus.run)" in str(info.value)

    async def test_running_twice_is_an_error(self, bus_factory: BusFactory) -> None:
        """Entering ``async with bus:`` or calling ``bus.run`` on a running bus raises
        :class:`~anybus.BusStateError`.
        """
        bus = bus_factory()
        async with bus:
            with pytest.raises(BusStateError, match="already running"):
                await bus.__aenter__()
            with pytest.raises(BusStateError, match="already running"):
                await bus.run()

    async def test_stop_and_start_inside_async_with(self, bus_factory: BusFactory) -> None:
        """Inside ``async with bus:``, ``stop()`` pauses dispatch (messages wait in the inbox) and
        ``start()`` resumes it; both are idempotent.
        """
        bus = bus_factory()
        recorder = RecordingSubscriber("r")
        async with bus:
            await bus.subscribe(recorder)
            await bus.stop()
            await bus.stop()  # idempotent
            assert not bus.running
            await bus.send(BusDataMessage(source="t"))
            await wait_all_tasks_blocked()
            assert recorder.messages == []
            await bus.start()
            await bus.start()  # idempotent
            with anyio.fail_after(5):
                await recorder.wait_for_count(1)

    async def test_messages_sent_while_stopped_are_dispatched_system_first(
        self, bus_factory: BusFactory
    ) -> None:
        """Messages queued while the bus is stopped are handled on ``start()``, system messages
        first, each lane in send order.
        """
        recorder = RecordingSubscriber("r")
        data = [BusDataMessage(source="t") for _ in range(5)]
        cancels = [BusCancelMessage(source="t") for _ in range(2)]
        async with bus_factory() as bus:
            await bus.subscribe(recorder)
            await bus.stop()
            for message in [*data[:3], cancels[0], *data[3:], cancels[1]]:
                await bus.send(message)
            assert bus.statistics().queued == 7
            await bus.start()
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(7)
        assert recorder.messages == [*cancels, *data]

    async def test_many_start_stop_cycles_leave_no_task_behind(
        self, bus_factory: BusFactory
    ) -> None:
        """Fifty ``stop()``/``start()`` cycles deliver every message and leak no task."""
        before = task_count()
        bus = bus_factory()
        recorders = [RecordingSubscriber(f"r{i}") for i in range(3)]
        for recorder in recorders:
            await bus.subscribe(recorder)
        async with bus:
            baseline = -1
            for cycle in range(51):
                await bus.stop()
                await bus.send(BusDataMessage(source="t"))
                await bus.start()
                with anyio.fail_after(5):
                    for recorder in recorders:
                        await recorder.wait_for_count(cycle + 1)
                # Workers start with their first message: count once every one has.
                if cycle == 0:
                    baseline = task_count()
                assert task_count() == baseline
        assert task_count() == before
