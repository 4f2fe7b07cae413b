"""Misuse of the API is refused at once, the same way on every bus, and nothing is delivered."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from ..._exceptions import BusStateError
from ..._messages import BusDataMessage, BusMessage
from ..._subscriber import BusSubscriber
from .._recording import RecordingSubscriber
from ._common import TIMEOUT, BusFactory


class _SyncHandler(BusSubscriber):
    name = "sync"

    def on_bus_message(self, message: BusMessage) -> None:  # type: ignore[override]
        """Not a coroutine function: refused."""


class MisuseTests:
    """What every bus refuses, and how it says so."""

    @pytest.mark.parametrize(
        "not_a_message",
        [{"source": "x"}, "hello", None, BusDataMessage],
        ids=["dict", "str", "None", "the-class"],
    )
    async def test_send_refuses_what_is_not_a_message(
        self, bus_factory: BusFactory, not_a_message: Any
    ) -> None:
        """``send()`` raises :class:`TypeError` for a non-message (the class included) and
        delivers nothing."""
        recorder = RecordingSubscriber("r")
        async with bus_factory() as bus:
            await bus.subscribe(recorder)
            with pytest.raises(TypeError, match="send\\(\\) takes a"):
                await bus.send(not_a_message)
            await bus.send(BusDataMessage(source="t"))
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(1)
            await wait_all_tasks_blocked()
        assert [type(m) for m in recorder.messages] == [BusDataMessage]

    async def test_send_outside_the_running_bus_raises(self, bus_factory: BusFactory) -> None:
        """Before ``async with bus:`` and after it, ``send()`` raises :class:`BusStateError`
        saying how to run the bus; inside it, after ``stop()``, a send queues."""
        bus = bus_factory()
        recorder = RecordingSubscriber("r")
        await bus.subscribe(recorder)
        with pytest.raises(BusStateError, match="is not running: send inside 'async with bus:'"):
            await bus.send(BusDataMessage(source="t"))
        async with bus:
            await bus.stop()
            await bus.send(queued := BusDataMessage(source="t"))
            await bus.start()
            with anyio.fail_after(TIMEOUT):
                await recorder.wait_for_count(1)
        with pytest.raises(BusStateError, match="is not running"):
            await bus.send(BusDataMessage(source="t"))
        assert recorder.messages == [queued]

    async def test_subscribe_refuses_a_handler_that_is_not_async(
        self, bus_factory: BusFactory
    ) -> None:
        """A plain function, a subscriber whose ``on_bus_message`` is not ``async def``, or
        something that is not callable is refused at ``subscribe()``, naming it."""

        def plain(message: BusMessage) -> None:
            pass

        bus = bus_factory()
        with pytest.raises(TypeError, match="is not a coroutine function: handlers must be"):
            await bus.subscribe(plain)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"_SyncHandler\.on_bus_message is not a coroutine"):
            await bus.subscribe(_SyncHandler())
        with pytest.raises(TypeError, match="takes a BusSubscriber or an 'async def handler"):
            await bus.subscribe(42)  # type: ignore[call-overload]
        assert bus.subscribers == []

    async def test_a_targets_filter_keeps_other_targets_out_of_the_inbox(
        self, bus_factory: BusFactory
    ) -> None:
        """A subscriber with ``targets`` never queues a message addressed to another name (so
        its full inbox holds nobody up); messages without a target still reach it."""
        gate = anyio.Event()

        async def wait_for_gate(message: BusMessage) -> None:
            await gate.wait()

        fast = RecordingSubscriber("fast")
        async with bus_factory() as bus:
            slow = await bus.subscribe(
                wait_for_gate, name="slow", targets=["slow"], max_buffer=1, overflow="block"
            )
            await bus.subscribe(fast, targets=["fast"])
            await bus.send(BusDataMessage(source="t", target="slow"))  # taken by the handler
            await bus.send(BusDataMessage(source="t", target="slow"))  # fills its inbox
            with anyio.fail_after(TIMEOUT):
                # Not addressed to "slow": these never wait for room in its inbox.
                for _ in range(5):
                    await bus.send(BusDataMessage(source="t", target="fast"))
                await fast.wait_for_count(5)
            gate.set()
            await bus.send(broadcast := BusDataMessage(source="t"))
            with anyio.fail_after(TIMEOUT):
                await fast.wait_for_count(6)
                await bus.wait_idle()
            stats = {s.name: s for s in bus.statistics().subscriptions}
        assert fast.messages[-1] == broadcast
        assert all(m.target in (None, "fast") for m in fast.messages)
        assert stats[slow.name].delivered == 3
        assert stats[slow.name].high_water_mark == 1
