"""The behavioural test suite that every bus passes.

Subclass :class:`BusConformance` in a test module and give it a ``bus_factory`` fixture that
returns a callable making a fresh, unstarted bus::

    from anybus.testing.conformance import BusConformance

    class TestMyBus(BusConformance):
        @pytest.fixture
        def bus_factory(self) -> Callable[[], WorkerBus]:
            return lambda: MyBus(url="...")

The tests are anyio tests: they run on every backend your ``anyio_backend`` fixture names
(parametrize it with ``"asyncio"`` and ``"trio"`` in your ``conftest.py``). Every wait is
bounded by ``anyio.fail_after``; nothing sleeps.

This module imports pytest; import it from tests only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from .._bus import WorkerBus
from .._exceptions import BusStateError
from .._messages import (
    BusCancelMessage,
    BusCancelWorkerMessage,
    BusDataMessage,
    BusMessage,
    BusSystemMessage,
    BusWorkerLocalErrorMessage,
)
from ._recording import RecordingSubscriber

__all__ = ["BusConformance", "BusFactory"]

#: Makes a fresh, unstarted bus.
BusFactory = Callable[[], WorkerBus]

#: The bound on every wait in the suite, in seconds.
TIMEOUT = 10


def task_count() -> int:
    """The tasks anybus runs now (every one of them is named ``anybus ...``).

    Tasks of other libraries are left out: a client library may keep a task of its own for
    the life of the event loop (valkey-glide does, on trio).
    """
    return sum((task.name or "").startswith("anybus") for task in anyio.get_running_tasks())


def ids(messages: list[BusMessage]) -> list[str]:
    return [message.id for message in messages]


def lane(messages: list[BusMessage], system: bool) -> list[BusMessage]:
    return [m for m in messages if isinstance(m, BusSystemMessage) == system]


class BusConformance:
    """What every bus does, whatever its transport: lifecycle and delivery semantics."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def bus_factory(self) -> BusFactory:
        """Return a callable that makes a fresh, unstarted bus; override it."""
        raise NotImplementedError("override the bus_factory fixture")

    # --- lifecycle ----------------------------------------------------------------------

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

    async def test_subscribe_is_idempotent_per_name(
        self, bus_factory: BusFactory, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Subscribing the same subscriber twice is a no-op; another subscriber under a taken name
        is logged and ignored; each message is handled once.
        """
        bus = bus_factory()
        first = RecordingSubscriber("same")
        await bus.subscribe(first)
        await bus.subscribe(first)
        await bus.subscribe(RecordingSubscriber("same"))
        assert bus.subscribers == [first]
        assert "already subscribed" in caplog.text
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
            await wait_all_tasks_blocked()
            baseline = task_count()
            for cycle in range(50):
                await bus.stop()
                await bus.send(BusDataMessage(source="t"))
                await bus.start()
                with anyio.fail_after(5):
                    for recorder in recorders:
                        await recorder.wait_for_count(cycle + 1)
                assert task_count() == baseline
        assert task_count() == before

    # --- delivery -----------------------------------------------------------------------

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


class NetworkBusConformance(BusConformance):
    """What every network bus does, plus what happens between two buses on one channel.

    Here ``bus_factory`` makes buses that share one channel (a fresh one for each test), so
    that two buses made by it in one test talk to each other.
    """

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
