"""A stateful property test: random interleavings of everything a bus does, on both backends.

Hypothesis drives subscribe, unsubscribe, send (data, system, local), stop, start and drain,
with fast, slow (yielding) and failing handlers. The bus runs in an anyio blocking portal, so
the same machine runs on asyncio and on trio. After every step the invariants are checked:

* exactly once: once the bus is idle, every subscriber has handled every message sent while
  it was subscribed, once;
* FIFO per lane: data in send order, system in send order;
* priority: a system message starts before every data message that had not started when the
  system message was sent;
* nothing is handled after unsubscribe, and a stopped bus keeps what is queued;
* a name holds one subscriber: the same one again is a no-op, another is refused;
* no task is left behind after a stop.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from anyio.lowlevel import checkpoint
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from anybus import (
    BusDataMessage,
    BusLocalMessage,
    BusMessage,
    BusSubscriber,
    BusSystemMessage,
    MemoryBus,
)

EXAMPLES = int(os.environ.get("ANYBUS_PROPERTY_EXAMPLES", "200"))
NAMES = ("a", "b", "c", "d")
TIMEOUT = 10


@dataclass(kw_only=True)
class LocalData(BusDataMessage, BusLocalMessage):
    """A data message that stays in the process."""


@dataclass(kw_only=True)
class LocalSystem(BusSystemMessage, BusLocalMessage):
    """A system message that stays in the process."""


class Worker(BusSubscriber):
    """Logs each handler start to the shared log; may yield or fail."""

    def __init__(self, name: str, key: str, kind: str, log: list[tuple[str, str, str]]) -> None:
        self.name = name
        self.key = key  # tells apart two subscriptions under the same name, one after the other
        self.kind = kind
        self.log = log

    async def on_bus_message(self, message: BusMessage) -> None:
        self.log.append(("start", self.key, message.id))
        if self.kind == "slow":
            for _ in range(2):
                await checkpoint()
        elif self.kind == "failing":
            raise ValueError("this worker always fails")


@dataclass
class Expected:
    """What one subscription should see: the messages sent while it was subscribed."""

    key: str
    worker: Worker
    sent: list[BusMessage]
    active: bool = True
    handled_at_unsubscribe: int = 0


def is_system(message: BusMessage) -> bool:
    return isinstance(message, BusSystemMessage)


class BusMachine(RuleBasedStateMachine):
    backend: ClassVar[str] = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self.stack = ExitStack()
        self.portal: BlockingPortal = self.stack.enter_context(start_blocking_portal(self.backend))
        self.bus = MemoryBus(exit_drain=None)
        self.log: list[tuple[str, str, str]] = []
        self.current: dict[str, Expected] = {}  # by subscriber name
        self.history: list[Expected] = []  # every subscription so far, gone ones too
        self.running = False

    @initialize()
    def run_bus(self) -> None:
        bus_cm: AbstractContextManager[MemoryBus] = self.portal.wrap_async_context_manager(
            self.bus
        )
        self.stack.enter_context(bus_cm)
        self.running = True
        self.portal.call(self.bus.stop)
        self.stopped_tasks = self.portal.call(self._task_count)
        self.portal.call(self.bus.start)

    def teardown(self) -> None:
        self.stack.close()

    @staticmethod
    async def _task_count() -> int:
        return len(anyio.get_running_tasks())

    # --- rules ------------------------------------------------------------------------------

    @rule(
        name=st.sampled_from(NAMES),
        kind=st.sampled_from(["fast", "slow", "failing"]),
        same=st.booleans(),
    )
    def subscribe(self, name: str, kind: str, same: bool) -> None:
        """Subscribe a new worker; under a taken name, subscribe the same worker again (a
        no-op) or another one (refused), and check that either changes nothing."""
        current = self.current.get(name)
        if current is None or not current.active:
            key = f"{name}#{len(self.history)}"
            worker = Worker(name, key, kind, self.log)
            current = Expected(key=key, worker=worker, sent=[])
            self.current[name] = current
            self.history.append(current)
            assert self.portal.call(self.bus.subscribe, worker) is worker
            return
        before = self.portal.call(self._subscribers)
        if same:
            assert self.portal.call(self.bus.subscribe, current.worker) is current.worker
        else:
            # Logging under the same key: were it subscribed, it would handle messages twice.
            other = Worker(name, current.key, kind, self.log)
            with pytest.raises(ValueError, match=f"a subscriber named {name!r} is already"):
                self.portal.call(self.bus.subscribe, other)
        assert self.portal.call(self._subscribers) == before

    @rule(name=st.sampled_from(NAMES))
    def unsubscribe(self, name: str) -> None:
        self.portal.call(self.bus.unsubscribe, name)
        self.left(name)

    def left(self, name: str) -> None:
        current = self.current.get(name)
        if current is not None and current.active:
            current.active = False
            current.handled_at_unsubscribe = len(
                handled(self.portal.call(self._snapshot), current.key)
            )

    @rule(
        kinds=st.lists(
            st.sampled_from(["data", "system", "local-data", "local-system"]),
            min_size=1,
            max_size=8,
        ),
        then=st.sampled_from(["nothing", "stop", "unsubscribe"]),
        name=st.sampled_from(NAMES),
    )
    def send(self, kinds: list[str], then: str, name: str) -> None:
        """Send back to back; then, in the same breath (nothing handled yet), maybe stop the
        bus or unsubscribe someone, so that they meet a queue that is not empty."""
        factories = {
            "data": BusDataMessage,
            "system": BusSystemMessage,
            "local-data": LocalData,
            "local-system": LocalSystem,
        }
        messages = [factories[kind](source="machine") for kind in kinds]
        for expected in self.current.values():
            if expected.active:
                expected.sent.extend(messages)
        if then == "stop" and self.running:
            self.portal.call(self._send_all, messages, self.bus.stop)
            self.running = False
        elif then == "unsubscribe":
            self.portal.call(self._send_all, messages, partial(self.bus.unsubscribe, name))
            self.left(name)
        else:
            self.portal.call(self._send_all, messages)

    async def _send_all(
        self, messages: list[BusMessage], then: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        # Back to back, in the loop's thread, so the log orders sends and starts truly.
        for message in messages:
            self.log.append(("send", "", message.id))
            await self.bus.send(message)
        if then is not None:
            await then()

    @precondition(lambda self: self.running)
    @rule()
    def stop(self) -> None:
        self.portal.call(self.bus.stop)
        self.running = False
        assert self.portal.call(self._task_count) == self.stopped_tasks

    @precondition(lambda self: not self.running)
    @rule()
    def start(self) -> None:
        self.portal.call(self.bus.start)
        self.running = True

    @precondition(lambda self: self.running)
    @rule()
    def drain(self) -> None:
        left = self.portal.call(self._drain)
        assert left == []  # no handler here hangs, so a drain delivers everything
        self.running = False
        assert self.portal.call(self._task_count) == self.stopped_tasks

    async def _drain(self) -> list[object]:
        return list(await self.bus.stop(drain=TIMEOUT))

    # --- invariants -------------------------------------------------------------------------

    @precondition(lambda self: self.running)
    @rule()
    def settle(self) -> None:
        """Wait until the bus is idle: then every active subscriber has seen everything."""
        self.portal.call(self._wait_idle)
        log = self.portal.call(self._snapshot)
        for expected in self.history:
            if expected.active:
                seen = handled(log, expected.key)
                assert sorted(seen) == sorted(m.id for m in expected.sent), (
                    f"{expected.key}: not every message was handled exactly once"
                )

    async def _wait_idle(self) -> None:
        with anyio.fail_after(TIMEOUT):
            await self.bus.wait_idle()

    async def _snapshot(self) -> list[tuple[str, str, str]]:
        return list(self.log)

    async def _subscribers(self) -> list[BusSubscriber]:
        return self.bus.subscribers

    @invariant()
    def delivery_is_at_most_once_in_lane_order_with_priority(self) -> None:
        if not hasattr(self, "stopped_tasks"):
            return  # before initialize
        log = self.portal.call(self._snapshot)  # taken in the loop's thread: consistent
        for expected in self.history:
            key = expected.key
            seen = handled(log, key)
            assert len(seen) == len(set(seen)), f"{key} handled a message twice"
            if not expected.active:
                assert len(seen) == expected.handled_at_unsubscribe, "handled after leaving"
            assert set(seen) <= {m.id for m in expected.sent}
            for system in (False, True):
                lane = [m.id for m in expected.sent if is_system(m) == system]
                lane_ids = set(lane)
                got = [i for i in seen if i in lane_ids]
                assert got == lane[: len(got)], f"{key}: lane {system=} skipped or reordered"
            check_priority(log, expected)


def handled(log: list[tuple[str, str, str]], key: str) -> list[str]:
    """The ids of the messages the subscription ``key`` started, in order."""
    return [message_id for kind, who, message_id in log if kind == "start" and who == key]


def check_priority(log: list[tuple[str, str, str]], expected: Expected) -> None:
    """Every system message starts before each data message not started when it was sent."""
    sent_at: dict[str, int] = {}
    started_at: dict[str, int] = {}
    for index, (kind, who, message_id) in enumerate(log):
        if kind == "send":
            sent_at.setdefault(message_id, index)
        elif who == expected.key:
            started_at[message_id] = index
    data = [m.id for m in expected.sent if not is_system(m)]
    for system in (m.id for m in expected.sent if is_system(m)):
        if system not in started_at:
            continue
        for message_id in data:
            started = started_at.get(message_id)
            if started is not None and started < sent_at[system]:
                continue  # had already started: not overtaken
            assert started is None or started > started_at[system], (
                f"{expected.key}: data {message_id} started before system {system}"
            )


def machine_settings() -> settings:
    return settings(
        max_examples=EXAMPLES,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


class AsyncioMachine(BusMachine):
    backend = "asyncio"


class TrioMachine(BusMachine):
    backend = "trio"


TestBusOnAsyncio = AsyncioMachine.TestCase
TestBusOnAsyncio.settings = machine_settings()
TestBusOnTrio = TrioMachine.TestCase
TestBusOnTrio.settings = machine_settings()
